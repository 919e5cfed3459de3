"""Disk tier: entries as files under the cache folder, shared by the worker processes of one host.

Owns: the store: reading and validating entries, atomic writes and their pause after a write
error, purges and the purge generation, and the tier's counters; the rest of the tier lives beside
it (the entry format in ``disk_format``, the tree's names in ``disk_layout``, size accounting and
LRU eviction in ``disk_eviction``, race-tolerant file steps in ``disk_files``).
Must not know: the event loop (every method blocks; the caller runs it in a worker thread), the
memory tier, IIIF.

Layout (``v2`` is the layout version: a new layout gets a new folder, never a migration; ``v1``
entries lacked the key in their header and are ignored)::

    <root>/v2/<digest[:2]>/<identifier digest>/<key>     one entry: header (with its key) + body
    <root>/v2/<digest[:2]>/<identifier digest>/<key>.<pid>.<random>.tmp   a write in progress
    <root>/v2/.purge-generation   decimal counter, bumped by every purge (replaced atomically)
    <root>/v2/.usage              shared byte estimate (8 bytes, updated under flock)
    <root>/v2/.evict.lock         held (flock) by the one process scanning or evicting
    <root>/v2/.generation.lock    held (flock) while the generation is bumped
    <root>/v2/.trash/             purged folders, renamed here and then deleted

An entry is bound to its key: the header holds the key, and a file found under another key's name
(swapped, copied or restored by hand) is a miss and is removed, like a damaged one.

Several processes share the tree safely because every state change is one atomic filesystem
operation: an entry appears by ``os.replace`` of a complete temp file from the same folder
(readers see the old file, the new one or nothing, never a partial one); a purge renames folders
away before deleting them; eviction and readers race only on ``unlink`` versus ``open``, and a
reader that holds the fd keeps the whole file. Every removal tolerates ``ENOENT``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from iiifserver.cache.disk_eviction import Eviction, ScanResult, charged
from iiifserver.cache.disk_files import (
    O_CLOEXEC,
    O_NOFOLLOW,
    open_creating,
    read_exactly,
    remove_tree,
    scandir,
    touch,
    unlink_if_same,
    unlink_quietly,
    write_all,
)
from iiifserver.cache.disk_format import entry_in, header
from iiifserver.cache.disk_layout import (
    GENERATION,
    GENERATION_LOCK,
    KEY,
    LAYOUT,
    SHARD,
    TEMP_SUFFIX,
    TRASH,
    identifier_dir,
    is_entry_name,
)
from iiifserver.cache.entry import Entry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DiskStats:
    hits: int
    misses: int
    corrupt: int  # entries found damaged on read and removed
    writes: int
    write_errors: int
    skipped: int  # writes not attempted while paused after an error
    evicted: int
    bytes: int  # shared estimate of the tree's size
    max_bytes: int
    paused: bool


@dataclass(frozen=True, slots=True)
class PurgeResult:
    removed: int
    generation: int  # the generation this purge wrote


class DiskCache:
    """A byte-bounded, multi-process-safe store of entries; every method blocks.

    ``scan()`` once at startup (in a thread) removes debris of crashed writers and recomputes the size;
    ``put`` keeps a shared byte estimate and, when it passes ``max_bytes``, runs ``evict()`` in this
    instance's own background thread (``background_eviction=False``: in the calling thread).
    """

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        low_water: float = 0.8,
        *,
        backoff_seconds: float = 30.0,
        touch_interval: float = 3600.0,
        temp_max_age: float = 60.0,
        fsync: bool = False,
        max_entry_bytes: int | None = None,
        background_eviction: bool = True,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        if not 0.0 < low_water < 1.0:
            raise ValueError("low_water must be between 0 and 1")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.low_water = low_water
        # By default one entry may not exceed an eighth of the cache: a few huge renders must not
        # churn it.
        self.max_entry_bytes = max_bytes // 8 if max_entry_bytes is None else max_entry_bytes
        self.backoff_seconds = backoff_seconds
        # A hit refreshes the mtime (the LRU clock) at most this often, so hits stay read-only.
        # Eviction ages entries in buckets of this width, which is all the precision mtimes carry.
        self.touch_interval = touch_interval
        self.temp_max_age = temp_max_age
        # No fsync by default: an entry checks itself on every read (exact length, CRC-32 of the
        # body, its key in the header), so what a crash leaves half-written (a short file, zeros
        # after a rename whose data never reached the disk) is a miss and is deleted, never served.
        # An fsync cost 0.8 ms of a VM disk per rendered response and held an I/O-lane thread
        # that disk-tier reads queue for (the mixed workload of issue 17: a sixth of the lane's time).
        self.fsync = fsync
        # Eviction walks the whole tree: off the caller's thread (a bounded lane's slot) by default.
        self.background_eviction = background_eviction
        self._base = os.fspath(self.root / LAYOUT)
        self._counters = threading.Lock()
        self._eviction = Eviction(
            self._base,
            max_bytes,
            low_water,
            touch_interval=touch_interval,
            temp_max_age=temp_max_age,
            background=background_eviction,
            counters=self._counters,  # one lock: stats are one snapshot of both objects' counters
        )
        self._hits = 0
        self._misses = 0
        self._corrupt = 0
        self._writes = 0
        self._write_errors = 0
        self._skipped = 0
        self._paused_until = 0.0
        self._failing = False

    # --- reading -------------------------------------------------------------------------------

    def get(self, identifier: str, key: str) -> Entry | None:
        """The entry, or None on a miss, a damaged file (removed) or any OS error; never raises."""
        path = self._entry_path(identifier, key)
        try:
            fd = os.open(path, os.O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        except OSError:
            self._count_miss(corrupt=False)
            return None
        # From here the fd pins the file: an eviction or purge unlinking it cannot cut the read short.
        try:
            st = os.fstat(fd)
            entry = entry_in(read_exactly(fd, st.st_size), identifier, key)
            if entry is not None and time.time() - st.st_mtime >= self.touch_interval:
                touch(fd)
        except OSError:
            self._count_miss(corrupt=False)
            return None
        finally:
            os.close(fd)
        if entry is None:
            unlink_if_same(path, st)
            self._count_miss(corrupt=True)
            return None
        with self._counters:
            self._hits += 1
        return entry

    # --- writing -------------------------------------------------------------------------------

    def put(self, identifier: str, key: str, entry: Entry) -> bool:
        """Store ``entry`` atomically; False if not stored. Never raises an OSError.

        After a write error (ENOSPC, EROFS, EACCES, EIO...) writes pause for ``backoff_seconds``: one
        warning is logged when the failures start and one line when writes work again.
        """
        path = self._entry_path(identifier, key)
        prefix = header(entry, key)
        size = len(prefix) + len(entry.body)
        if size > self.max_entry_bytes:
            return False
        if time.monotonic() < self._paused_until:
            with self._counters:
                self._skipped += 1
            return False
        directory = os.path.dirname(path)
        # Unique per process and call, in the destination folder: concurrent writers of one key never
        # share a temp file, and os.replace never crosses filesystems (EXDEV).
        temp = f"{path}.{os.getpid()}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            self._write_file(directory, temp, prefix, entry.body)
            os.replace(temp, path)
        except OSError as exc:
            unlink_quietly(temp)
            self._write_failed(exc)
            return False
        self._write_succeeded()
        self._eviction.added(size)
        return True

    def _write_file(self, directory: str, temp: str, prefix: bytes, body: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o644)
        except FileNotFoundError:
            # First entry of this identifier, or the cache folder was deleted under us (E14).
            os.makedirs(directory, exist_ok=True)
            fd = os.open(temp, flags, 0o644)
        try:
            write_all(fd, prefix)
            write_all(fd, body)
            if self.fsync:
                # Data before name: after a power loss the final name never holds a torn body. The
                # folder is not fsynced: losing the rename only loses a cache entry.
                os.fsync(fd)
        finally:
            os.close(fd)

    def _write_failed(self, exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError):
            # The folder vanished between makedirs and replace: a concurrent purge (or a hand-made
            # rmtree). That write is moot; nothing is wrong with the disk, so no pause.
            with self._counters:
                self._write_errors += 1
            log.debug("disk cache write dropped: folder removed concurrently")
            return
        with self._counters:
            self._write_errors += 1
            self._paused_until = time.monotonic() + self.backoff_seconds
            first = not self._failing
            self._failing = True
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if first:
            log.warning(
                "disk cache write failed (%s: %s) under %s; disk writes paused, retried every %.0f s",
                name,
                exc.strerror,
                self.root,
                self.backoff_seconds,
            )
        else:
            log.debug("disk cache write failed again (%s)", name)

    def _write_succeeded(self) -> None:
        with self._counters:
            self._writes += 1
            recovered = self._failing
            self._failing = False
        if recovered:
            log.warning("disk cache writes resumed under %s", self.root)

    # --- size accounting and eviction (disk_eviction) -------------------------------------------

    def scan(self) -> ScanResult:
        """Remove stale temp files and purged folders, and recompute the size from the tree.

        Temp files younger than ``temp_max_age`` belong to live writers (possibly other processes)
        and are kept. When another process is already scanning or evicting, returns at once with
        ``skipped=True``: the shared estimate it leaves behind serves everyone.
        """
        return self._eviction.scan()

    def evict(self) -> int:
        """If the tree holds more than ``max_bytes``, remove the least recently used entries until it
        holds at most ``low_water * max_bytes``. Returns the number of entries removed.

        Only one process evicts at a time (flock); a concurrent call returns 0 at once. A put that
        found the lock busy relies on the holder, so the holder looks at the shared estimate again
        after releasing the lock and goes round once more if writes pushed it over meanwhile.
        """
        return self._eviction.evict()

    def wait_for_eviction(self, timeout: float | None = None) -> None:
        """Block until a background eviction in progress (if any) has finished (tests, shutdown)."""
        self._eviction.wait(timeout)

    # --- purge -----------------------------------------------------------------------------------

    def purge(self, identifier: str | None) -> int:
        """Remove the entries of ``identifier`` (everything for None); returns how many were removed."""
        return self.purge_result(identifier).removed

    def purge_result(self, identifier: str | None) -> PurgeResult:
        """Purge and also report the generation written, so the purging process can tell its own
        bump from another process's.

        Folders are renamed into ``.trash`` first (one atomic step each: readers miss at once, and a
        concurrent writer cannot make the deletion fail with ENOTEMPTY), then the generation is
        bumped (so other processes drop their memory tier only once the entries are gone from disk),
        then the renamed folders are deleted. OS errors other than ENOENT propagate: a purge is an
        administrative action and its caller must hear that it failed.
        """
        trash = os.path.join(self._base, TRASH)
        if identifier is None:
            sources = [shard.path for shard in scandir(self._base) if SHARD.fullmatch(shard.name)]
        else:
            sources = [identifier_dir(self._base, identifier)]
        moved: list[str] = []
        for source in sources:
            if not os.path.isdir(source):
                continue  # nothing cached for it
            os.makedirs(trash, exist_ok=True)
            target = os.path.join(trash, f"{os.path.basename(source)}.{os.getpid()}.{secrets.token_hex(6)}")
            try:
                os.rename(source, target)
            except FileNotFoundError:
                continue  # a concurrent purge took it
            moved.append(target)
        generation = self._bump_generation()
        removed = freed = 0
        for target in moved:
            entries, size = remove_tree(target, is_entry_name, charged)
            removed += entries
            freed += size
        if freed:
            self._eviction.removed(freed)
        log.info("disk cache purged %d entries (%s)", removed, "all" if identifier is None else "one identifier")
        return PurgeResult(removed, generation)

    def generation(self) -> int:
        """The purge generation: changes whenever any process purges (0 before the first purge)."""
        try:
            with open(os.path.join(self._base, GENERATION), "rb") as file:
                return int(file.read(32))
        except (OSError, ValueError):
            return 0

    def _bump_generation(self) -> int:
        lock = open_creating(os.path.join(self._base, GENERATION_LOCK), self._base, os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a strict counter: two concurrent purges write n+1 and n+2
            value = self.generation() + 1
            path = os.path.join(self._base, GENERATION)
            temp = f"{path}.{os.getpid()}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
            try:
                with open(temp, "wb") as file:
                    file.write(str(value).encode())
                os.replace(temp, path)  # readers never see a half-written number
            except OSError:
                unlink_quietly(temp)
                raise
            return value
        finally:
            os.close(lock)

    # --- misc ----------------------------------------------------------------------------------

    def _entry_path(self, identifier: str, key: str) -> str:
        if not KEY.fullmatch(key):
            raise ValueError("cache key must be 40 lowercase hex characters")
        return os.path.join(identifier_dir(self._base, identifier), key)

    def _count_miss(self, *, corrupt: bool) -> None:
        with self._counters:
            self._misses += 1
            if corrupt:
                self._corrupt += 1

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    @property
    def stats(self) -> DiskStats:
        with self._counters:
            return DiskStats(
                hits=self._hits,
                misses=self._misses,
                corrupt=self._corrupt,
                writes=self._writes,
                write_errors=self._write_errors,
                skipped=self._skipped,
                evicted=self._eviction.evicted,
                bytes=self._eviction.estimate,
                max_bytes=self.max_bytes,
                paused=time.monotonic() < self._paused_until,
            )
