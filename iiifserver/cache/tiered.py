"""Tiered tile cache: memory first, then disk, then the shared tier, behind one small facade.

Owns: the order of the tiers (memory, disk, shared), promotion of lower-tier hits into the upper
ones, keeping blocking disk and shared-tier calls off the event loop, and noticing purges made by
other worker processes. Users go through this facade, never to a tier directly: the memory tier
without a thread hop (``get_memory``, ``put_memory``), the disk and shared tiers from a worker
thread (``get_lower_blocking``) or through ``run_blocking`` (``get``, ``put``).
Must not know: how keys are built, how entries are rendered, HTTP, which thread pool runs the
blocking calls (it is handed ``run_blocking``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal

from iiifserver.cache.disk import DiskCache
from iiifserver.cache.entry import Entry
from iiifserver.cache.memory import MemoryCache
from iiifserver.cache.shared import SharedCache

log = logging.getLogger(__name__)

RunBlocking = Callable[..., Awaitable[Any]]
# Which lower tier answered ``get_lower_blocking``.
LowerTier = Literal["disk", "shared"]


class TileCache:
    """Memory tier (this process) over an optional disk tier (shared by the worker processes).

    Event-loop only. ``run_blocking(fn, *args)`` must run ``fn`` in a worker thread and return its
    result, e.g. ``Lane.run`` of an I/O lane.
    """

    def __init__(
        self,
        memory: MemoryCache,
        disk: DiskCache | None,
        run_blocking: RunBlocking,
        *,
        generation_interval: float = 1.0,
        shared: SharedCache | None = None,
    ) -> None:
        self.memory = memory
        self.disk = disk
        self.shared = shared
        self._run_blocking = run_blocking
        self._generation_interval = generation_interval
        self._generation: int | None = None  # the disk purge generation the memory tier reflects
        self._next_generation_check = 0.0
        self._checking = False
        # The memory tier's own methods, bound once: no thread hop, no await, and no extra call
        # on the hot path of every tile request.
        self.get_memory: Callable[[str], Entry | None] = memory.get
        self.put_memory: Callable[[str, Entry], bool] = memory.put
        self.in_memory: Callable[[str], bool] = memory.__contains__

    @property
    def has_disk(self) -> bool:
        return self.disk is not None

    @property
    def has_shared(self) -> bool:
        return self.shared is not None

    @property
    def has_lower(self) -> bool:
        """A disk or shared tier: a body may be found below the memory tier."""
        return self.disk is not None or self.shared is not None

    def get_disk_blocking(self, identifier: str, key: str) -> Entry | None:
        """The disk tier only, in the caller's thread (a worker thread: it blocks); never raises.

        For callers that already run in a worker thread (a disk lookup and the render it may save
        in one hop); no promotion: the caller keeps what it returns.
        """
        return self.disk.get(identifier, key) if self.disk is not None else None

    def get_lower_blocking(self, identifier: str, key: str) -> tuple[Entry, LowerTier] | None:
        """The disk tier, then the shared tier, in the caller's (worker) thread; never raises.

        No promotion here: the caller keeps a hit in memory and, for a shared hit, writes it to
        disk in the background (``put(..., to_shared=False)``), off the response's path.
        """
        if self.disk is not None:
            entry = self.disk.get(identifier, key)
            if entry is not None:
                return entry, "disk"
        if self.shared is not None:
            entry = self.shared.get(identifier, key)
            if entry is not None:
                return entry, "shared"
        return None

    def _lower_promoting(self, identifier: str, key: str) -> Entry | None:
        found = self.get_lower_blocking(identifier, key)
        if found is None:
            return None
        entry, tier = found
        if tier == "shared" and self.disk is not None:
            self.disk.put(identifier, key, entry)
        return entry

    async def get(self, identifier: str, key: str) -> Entry | None:
        """Memory, then disk and shared (in one worker thread); a hit is promoted into the upper tiers.

        The disk tier never raises; an exception of ``run_blocking`` itself (a saturated lane
        answering 503) propagates, because turning it into a miss would trade a cheap read for a
        render.
        """
        entry = self.memory.get(key)
        if entry is not None or not self.has_lower:
            return entry
        lookup = self._lower_promoting if self.shared is not None else self.disk.get  # type: ignore[union-attr]
        found: Entry | None = await self._run_blocking(lookup, identifier, key)
        if found is not None:
            self.memory.put(key, found)
        return found

    async def put(
        self, identifier: str, key: str, entry: Entry, *, to_disk: bool = True, to_shared: bool = True
    ) -> None:
        """Store in memory now, then on disk and in the shared tier (one worker thread). Failures
        never propagate: the response is ready and the lower tiers are only a second chance."""
        if entry.identifier != identifier:
            raise ValueError("entry.identifier differs from identifier")
        self.memory.put(key, entry)
        disk = self.disk if to_disk else None
        shared = self.shared if to_shared else None
        if disk is None and shared is None:
            return
        try:
            if shared is None:
                await self._run_blocking(disk.put, identifier, key, entry)  # type: ignore[union-attr]
            else:
                await self._run_blocking(_put_lower, disk, shared, identifier, key, entry)
        except Exception as exc:  # the lane's 503 or anything else: losing a write is harmless
            log.debug("disk or shared cache write skipped: %r", exc)

    async def purge(self, identifier: str | None) -> int:
        """Remove ``identifier``'s entries (all for None) from both tiers. Returns the larger of the
        two tiers' counts: the disk tier normally holds everything the memory tier does."""
        disk_removed = 0
        if self.disk is not None:
            # Disk first: a concurrent disk hit cannot then re-promote a purged entry into memory.
            result = await self._run_blocking(self.disk.purge_result, identifier)
            disk_removed = result.removed
            if self._generation is None or result.generation == self._generation + 1:
                # Our own bump: our memory tier is purged right below, no need to drop it all.
                self._generation = result.generation
        if self.shared is not None:
            # Before memory too; other instances' memory tiers keep their copies (no broadcast).
            disk_removed = max(disk_removed, await self._run_blocking(self.shared.purge, identifier))
        memory_removed = self.memory.purge(identifier)
        return max(memory_removed, disk_removed)

    async def check_generation(self) -> bool:
        """Drop the memory tier when another process purged the disk tier; True if dropped.

        Call it freely (say once per request): it reads the generation file at most once per
        ``generation_interval`` and otherwise returns at once, without a thread hop. Other
        processes' purges thus reach this memory tier within about that interval.
        """
        if self.disk is None or self._checking:
            return False
        now = time.monotonic()
        if now < self._next_generation_check:
            return False
        self._next_generation_check = now + self._generation_interval
        self._checking = True
        try:
            current: int = await self._run_blocking(self.disk.generation)
        except Exception as exc:
            log.debug("purge generation check skipped: %r", exc)
            return False
        finally:
            self._checking = False
        previous, self._generation = self._generation, current
        if previous is None or previous == current:
            return False
        dropped = self.memory.clear()
        log.info("disk cache purged by another process: %d memory entries dropped", dropped)
        return True

    def stats(self) -> dict[str, dict[str, Any]]:
        """Counters per tier (no I/O: the disk figures are this process's view)."""
        stats = {"memory": asdict(self.memory.stats)}
        if self.disk is not None:
            stats["disk"] = asdict(self.disk.stats)
            stats["disk"]["generation"] = self._generation
        if self.shared is not None:
            stats["shared"] = asdict(self.shared.stats)
        return stats


def _put_lower(disk: DiskCache | None, shared: SharedCache | None, identifier: str, key: str, entry: Entry) -> None:
    """In a worker thread: the disk write, then the shared one (each never raises)."""
    if disk is not None:
        disk.put(identifier, key, entry)
    if shared is not None:
        shared.put(identifier, key, entry)
