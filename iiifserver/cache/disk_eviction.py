"""Size accounting and LRU eviction of the disk tier, shared by the worker processes of one host.

Owns: the shared byte estimate (``.usage``, updated under flock), the exclusive lock of scans and
evictions (``.evict.lock``), surveying the tree (and removing the debris of crashed writers and
interrupted purges on the way), choosing and removing the least recently used entries, and the
background eviction thread of one ``DiskCache``.
Must not know: the entry format, reading and writing entries, how purges and the purge generation
work (it only empties ``.trash``, where a purge leaves what it has not deleted yet), the event loop.

Why an estimate: a walk of the tree takes time in proportion to its size, so a put only adds its
bytes to a shared 8-byte counter, and only a survey (a scan, an eviction) reads the tree itself.

Why whole blocks: an entry takes at least a filesystem block (and an inode) whatever its length,
so each counts as its length rounded up to ``BLOCK`` (``charged``). The limit is then what the
disk really gives, and it bounds the number of files too (``max_bytes / BLOCK``): a flood of tiny
entries (attack case E11) cannot use up a small filesystem's inodes under a limit in bytes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from iiifserver.cache.disk_files import lstat, open_creating, remove_tree, rmdir_quietly, scandir, unlink_quietly
from iiifserver.cache.disk_layout import EVICT_LOCK, TEMP_SUFFIX, TRASH, USAGE, identifier_dirs, is_entry_name

log = logging.getLogger(__name__)

BLOCK = 4096  # the common filesystem block (ext4, XFS): the least an entry occupies


def charged(size: int) -> int:
    """What an entry of ``size`` bytes counts against the limit: whole blocks, at least one."""
    return max(1, -(-size // BLOCK)) * BLOCK


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: int
    bytes: int
    removed_temp: int  # stale temp files of crashed writers
    skipped: bool  # another process or thread was scanning or evicting; its result stands


@dataclass(slots=True)
class _Survey:
    entries: int = 0
    bytes: int = 0
    removed_temp: int = 0


class Eviction:
    """Keeps the tree under ``base`` within ``max_bytes``; every method blocks.

    ``estimate`` and ``evicted`` are read under ``counters``, the lock of the ``DiskCache`` that
    holds this, so its stats are one consistent snapshot.
    """

    def __init__(
        self,
        base: str,
        max_bytes: int,
        low_water: float,
        *,
        touch_interval: float,
        temp_max_age: float,
        background: bool,
        counters: threading.Lock,
    ) -> None:
        self._base = base
        self.max_bytes = max_bytes
        self.low_water = low_water
        # Entries are aged in buckets of the width of the touch interval, which is all the precision
        # their mtimes carry (a hit refreshes one at most that often).
        self._bucket_ns = max(1, int(touch_interval * 1e9))
        self.temp_max_age = temp_max_age
        self.background = background
        self._counters = counters
        self._evicting = threading.Lock()
        self._evictor: threading.Thread | None = None
        self._eviction_wanted = False
        self.estimate = 0  # the shared estimate as last seen, or this process's own if it is unusable
        self.evicted = 0

    # --- the shared estimate -----------------------------------------------------------------

    def added(self, size: int) -> None:
        """Count an entry of ``size`` bytes written (``charged``); past ``max_bytes``, start an eviction."""
        if self._update_usage(lambda current: current + charged(size)) > self.max_bytes:
            self._request_eviction()

    def removed(self, size: int) -> None:
        """Count ``size`` bytes removed (a purge: the sum of the removed entries' ``charged`` sizes)."""
        self._update_usage(lambda current: current - size)

    def _set_usage(self, surveyed: int, before: int) -> None:
        # Bytes other processes added while the survey ran are not in it; keep them.
        self._update_usage(lambda current: surveyed + max(0, current - before))

    def _read_usage(self) -> int:
        return self._update_usage(lambda current: current)

    def _update_usage(self, change: Callable[[int], int]) -> int:
        """Apply ``change`` to the shared estimate under flock; falls back to this process's own."""
        path = os.path.join(self._base, USAGE)
        try:
            fd = open_creating(path, self._base, os.O_RDWR)
        except OSError:
            fd = -1
        if fd < 0:
            with self._counters:
                self.estimate = max(0, change(self.estimate))
                return self.estimate
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 8, 0)
            current = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            value = max(0, change(current))
            if value != current:
                os.pwrite(fd, value.to_bytes(8, "little"), 0)
        except OSError:
            with self._counters:
                self.estimate = max(0, change(self.estimate))
                return self.estimate
        finally:
            os.close(fd)  # releases the lock
        with self._counters:
            self.estimate = value
        return value

    # --- scan and evict ------------------------------------------------------------------------

    def scan(self) -> ScanResult:
        """Remove stale temp files and purged folders, and recompute the size from the tree (see
        ``DiskCache.scan``)."""
        with self._exclusive() as got:
            if not got:
                return ScanResult(0, 0, 0, skipped=True)
            before = self._read_usage()
            survey = self._survey(None)
            self._set_usage(survey.bytes, before)
            return ScanResult(survey.entries, survey.bytes, survey.removed_temp, skipped=False)

    def evict(self) -> int:
        """Remove the least recently used entries if the tree is too large (see ``DiskCache.evict``)."""
        evicted = 0
        # A put that found the lock busy relies on the holder: after releasing it, the holder looks
        # at the shared estimate again and goes round once more if writes pushed it over meanwhile.
        for _ in range(4):  # bounded: a tree that cannot be shrunk must not pin a thread forever
            with self._exclusive() as got:
                if not got:
                    break
                evicted += self._evict_locked()
            if self._read_usage() <= self.max_bytes:
                break
        return evicted

    def _evict_locked(self) -> int:
        """Two passes over the tree with memory independent of its size: the first sums bytes per
        mtime bucket, the second deletes every entry older than the cutoff bucket and, within it,
        just enough. Entries of one bucket are equally recent as far as the mtimes tell (hits
        refresh them once per ``touch_interval``)."""
        before = self._read_usage()
        histogram: defaultdict[int, int] = defaultdict(int)
        survey = self._survey(histogram)
        if survey.bytes <= self.max_bytes:
            # The estimate ran ahead of the tree (overwrites, files removed by hand): correct it.
            self._set_usage(survey.bytes, before)
            return 0
        excess = survey.bytes - round(self.max_bytes * self.low_water)
        cutoff_bucket, partial = cutoff(histogram, excess)
        evicted, freed = self._remove_oldest(cutoff_bucket, partial)
        self._set_usage(survey.bytes - freed, before)
        with self._counters:
            self.evicted += evicted
        log.info("disk cache evicted %d entries (%d bytes)", evicted, freed)
        return evicted

    def _survey(self, histogram: defaultdict[int, int] | None) -> _Survey:
        survey = _Survey()
        self._empty_trash()
        stale_before = time.time() - self.temp_max_age
        for directory in (self._base, *identifier_dirs(self._base)):
            for item in scandir(directory):
                st = lstat(item)
                if st is None:
                    continue
                if item.name.endswith(TEMP_SUFFIX):
                    # A writer that died mid-write (E01); a live one touched its file moments ago.
                    if st.st_mtime < stale_before and unlink_quietly(item.path):
                        survey.removed_temp += 1
                elif is_entry_name(item.name):
                    size = charged(st.st_size)
                    survey.entries += 1
                    survey.bytes += size
                    if histogram is not None:
                        histogram[st.st_mtime_ns // self._bucket_ns] += size
        return survey

    def _remove_oldest(self, cutoff_bucket: int, partial: int) -> tuple[int, int]:
        """Remove the entries of buckets older than ``cutoff_bucket``, and of that bucket entries of
        ``partial`` bytes or a little more; returns (entries, bytes) removed."""
        evicted = freed = 0
        for directory in identifier_dirs(self._base):
            removed_here = kept_here = 0
            for item in scandir(directory):
                st = lstat(item)
                if st is None:
                    continue
                if not is_entry_name(item.name):
                    kept_here += 1
                    continue
                bucket = st.st_mtime_ns // self._bucket_ns
                if bucket > cutoff_bucket or (bucket == cutoff_bucket and partial <= 0):
                    kept_here += 1
                    continue
                if not unlink_quietly(item.path):
                    continue  # another process removed it first
                evicted += 1
                removed_here += 1
                size = charged(st.st_size)
                freed += size
                if bucket == cutoff_bucket:
                    partial -= size
            if removed_here and not kept_here:
                # Safe against a concurrent put: rmdir fails on a folder holding its temp file, and a
                # put that finds the folder gone recreates it.
                rmdir_quietly(directory)
        return evicted, freed

    def _empty_trash(self) -> None:
        """Delete leftovers of purges that were interrupted (a crash between rename and delete)."""
        for item in scandir(os.path.join(self._base, TRASH)):
            remove_tree(item.path, is_entry_name, charged)

    @contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """Non-blocking exclusion of scans and evictions, across threads and processes."""
        if not self._evicting.acquire(blocking=False):
            yield False
            return
        try:
            try:
                fd = open_creating(os.path.join(self._base, EVICT_LOCK), self._base, os.O_RDWR)
            except OSError:
                yield False  # unreadable or read-only tree: nothing to scan or evict there
                return
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    yield False
                    return
                yield True
            finally:
                os.close(fd)
        finally:
            self._evicting.release()

    # --- the background thread -----------------------------------------------------------------

    def _request_eviction(self) -> None:
        if not self.background:
            self.evict()
            return
        # One eviction thread per instance; requests arriving while it runs make it go round again.
        with self._counters:
            self._eviction_wanted = True
            if self._evictor is not None:
                return
            self._evictor = threading.Thread(target=self._eviction_loop, name="disk-cache-eviction", daemon=True)
            self._evictor.start()

    def _eviction_loop(self) -> None:
        while True:
            with self._counters:
                if not self._eviction_wanted:
                    self._evictor = None
                    return
                self._eviction_wanted = False
            try:
                self.evict()
            except Exception:  # a thread must not die silently, nor take the cache down with it
                log.exception("disk cache eviction failed")

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background eviction in progress (if any) has finished."""
        with self._counters:
            evictor = self._evictor
        if evictor is not None:
            evictor.join(timeout)


def cutoff(histogram: dict[int, int], excess: int) -> tuple[int, int]:
    """The oldest bucket whose inclusion frees ``excess`` bytes, and the bytes still to free in it."""
    freed = 0
    bucket = 0
    for bucket in sorted(histogram):
        if freed + histogram[bucket] >= excess:
            return bucket, excess - freed
        freed += histogram[bucket]
    return bucket, 0
