"""Memory tier: a per-process LRU of entries, bounded in bytes.

Owns: the hot-tile map of one worker process, its byte bound and its counters.
Must not know: the disk tier, files, threads. It is used only from the event loop, so it takes no
locks; calling it from worker threads would need one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cachetools

from iiifserver.cache.entry import Entry

# Rough cost of one entry besides its payload: the Entry and bytes objects, the 40-character key
# (stored twice: data and order maps) and the dict and OrderedDict slots. It keeps a flood of tiny
# entries from overshooting the bound by more than a few percent.
ENTRY_OVERHEAD = 400


def entry_size(entry: Entry) -> int:
    return len(entry.body) + len(entry.media_type) + len(entry.identifier) + ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class MemoryStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int
    evictions: int


class _CountingLRU(cachetools.LRUCache[str, Entry]):
    """cachetools calls ``popitem`` only to make room, so counting there counts evictions."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, getsizeof=entry_size)
        self.evictions = 0

    def popitem(self) -> tuple[str, Entry]:
        item = super().popitem()
        self.evictions += 1
        return item


class MemoryCache:
    """LRU of entries bounded in bytes (payload plus a fixed per-entry overhead).

    Not thread-safe by design: only the event loop touches it, so a hit is one dict lookup and one
    ``move_to_end`` with no lock and no thread hop. An entry larger than an eighth of the bound is
    not stored, so that one big render cannot flush the hot tiles.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 8
        self._lru = _CountingLRU(max_bytes)
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> Entry | None:
        try:
            entry = self._lru[key]  # refreshes the LRU position
        except KeyError:
            self._misses += 1
            return None
        self._hits += 1
        return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Store ``entry``; False when it is too large for this tier."""
        if entry_size(entry) > self.max_entry_bytes:
            return False
        self._lru[key] = entry
        return True

    def purge(self, identifier: str | None) -> int:
        """Remove the entries of ``identifier`` (all entries for None); returns how many.

        A linear scan: purges are rare, and an index by identifier would cost every put and
        eviction. ``Cache.__getitem__`` reads a value without touching the LRU order.
        """
        if identifier is None:
            return self.clear()
        peek = cachetools.Cache.__getitem__
        doomed = [key for key in self._lru if peek(self._lru, key).identifier == identifier]
        for key in doomed:
            del self._lru[key]
        return len(doomed)

    def clear(self) -> int:
        count = len(self._lru)
        self._lru.clear()
        return count

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: str) -> bool:
        return key in self._lru  # does not refresh the LRU position

    @property
    def stats(self) -> MemoryStats:
        return MemoryStats(
            hits=self._hits,
            misses=self._misses,
            entries=len(self._lru),
            bytes=int(self._lru.currsize),
            max_bytes=self.max_bytes,
            evictions=self._lru.evictions,
        )
