"""Disk tier: entries as files under the cache folder, shared by the worker processes of one host.

Owns: the on-disk layout and entry format, atomic writes, validation on read, size accounting,
LRU eviction, purges and the purge generation.
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
import re
import secrets
import struct
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from iiifserver.cache.entry import Entry
from iiifserver.cache.keys import identifier_digest

log = logging.getLogger(__name__)

LAYOUT = "v2"
MAGIC = b"IIIFtile"
FORMAT_VERSION = 2
# magic, format version, media type length, reserved, the entry's key (20 bytes: its 40 hex digits),
# CRC-32 of the body, body length; then the media type (ASCII) and the body. The file size must
# equal header + media type + body exactly.
HEADER = struct.Struct(">8sBBH20sIQ")

_KEY = re.compile(r"[0-9a-f]{40}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_IDENTIFIER_DIR = re.compile(r"[0-9a-f]{32}")
_TEMP_SUFFIX = ".tmp"
_GENERATION = ".purge-generation"
_USAGE = ".usage"
_EVICT_LOCK = ".evict.lock"
_GENERATION_LOCK = ".generation.lock"
_TRASH = ".trash"

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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
class ScanResult:
    entries: int
    bytes: int
    removed_temp: int  # stale temp files of crashed writers
    skipped: bool  # another process or thread was scanning or evicting; its result stands


@dataclass(frozen=True, slots=True)
class PurgeResult:
    removed: int
    generation: int  # the generation this purge wrote


@dataclass(slots=True)
class _Survey:
    entries: int = 0
    bytes: int = 0
    removed_temp: int = 0


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
        self._bucket_ns = max(1, int(touch_interval * 1e9))
        self.temp_max_age = temp_max_age
        # No fsync by default: an entry checks itself on every read (exact length, CRC-32 of the
        # body, its key in the header), so what a crash leaves half-written (a short file, zeros
        # after a rename whose data never reached the disk) is a miss and is deleted, never served.
        # An fsync cost 0.8 ms of a VM disk per rendered response and held an I/O-lane thread
        # that disk-tier reads queue for (the mixed workload of issue 17: a sixth of the lane's time).
        self.fsync = fsync
        # Eviction walks the whole tree: off the caller's thread (a bounded lane's slot) by default.
        self.background_eviction = background_eviction
        self._evictor: threading.Thread | None = None
        self._eviction_wanted = False
        self._base = os.fspath(self.root / LAYOUT)
        self._counters = threading.Lock()
        self._evicting = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._corrupt = 0
        self._writes = 0
        self._write_errors = 0
        self._skipped = 0
        self._evicted = 0
        self._estimate = 0
        self._paused_until = 0.0
        self._failing = False

    # --- reading -------------------------------------------------------------------------------

    def get(self, identifier: str, key: str) -> Entry | None:
        """The entry, or None on a miss, a damaged file (removed) or any OS error; never raises."""
        path = self._entry_path(identifier, key)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW)
        except OSError:
            self._count_miss(corrupt=False)
            return None
        # From here the fd pins the file: an eviction or purge unlinking it cannot cut the read short.
        try:
            st = os.fstat(fd)
            entry = _decode(_read_exactly(fd, st.st_size), identifier, key)
            if entry is not None and time.time() - st.st_mtime >= self.touch_interval:
                _touch(fd)
        except OSError:
            self._count_miss(corrupt=False)
            return None
        finally:
            os.close(fd)
        if entry is None:
            _unlink_if_same(path, st)
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
        prefix = _encode_header(entry, key)
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
        temp = f"{path}.{os.getpid()}.{secrets.token_hex(6)}{_TEMP_SUFFIX}"
        try:
            self._write_file(directory, temp, prefix, entry.body)
            os.replace(temp, path)
        except OSError as exc:
            _unlink_quietly(temp)
            self._write_failed(exc)
            return False
        self._write_succeeded()
        if self._add_usage(size) > self.max_bytes:
            self._request_eviction()
        return True

    def _write_file(self, directory: str, temp: str, prefix: bytes, body: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o644)
        except FileNotFoundError:
            # First entry of this identifier, or the cache folder was deleted under us (E14).
            os.makedirs(directory, exist_ok=True)
            fd = os.open(temp, flags, 0o644)
        try:
            _write_all(fd, prefix)
            _write_all(fd, body)
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

    # --- size accounting and eviction ----------------------------------------------------------

    def scan(self) -> ScanResult:
        """Remove stale temp files and purged folders, and recompute the size from the tree.

        Temp files younger than ``temp_max_age`` belong to live writers (possibly other processes)
        and are kept. When another process is already scanning or evicting, returns at once with
        ``skipped=True``: the shared estimate it leaves behind serves everyone.
        """
        with self._exclusive() as got:
            if not got:
                return ScanResult(0, 0, 0, skipped=True)
            before = self._read_usage()
            survey = self._survey(None)
            self._set_usage(survey.bytes, before)
            return ScanResult(survey.entries, survey.bytes, survey.removed_temp, skipped=False)

    def evict(self) -> int:
        """If the tree holds more than ``max_bytes``, remove the least recently used entries until it
        holds at most ``low_water * max_bytes``. Returns the number of entries removed.

        Only one process evicts at a time (flock); a concurrent call returns 0 at once. A put that
        found the lock busy relies on the holder, so the holder looks at the shared estimate again
        after releasing the lock and goes round once more if writes pushed it over meanwhile.
        """
        evicted = 0
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
        cutoff, partial = _cutoff(histogram, excess)
        evicted, freed = self._remove_oldest(cutoff, partial)
        self._set_usage(survey.bytes - freed, before)
        with self._counters:
            self._evicted += evicted
        log.info("disk cache evicted %d entries (%d bytes)", evicted, freed)
        return evicted

    def _request_eviction(self) -> None:
        if not self.background_eviction:
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

    def wait_for_eviction(self, timeout: float | None = None) -> None:
        """Block until a background eviction in progress (if any) has finished (tests, shutdown)."""
        with self._counters:
            evictor = self._evictor
        if evictor is not None:
            evictor.join(timeout)

    def _survey(self, histogram: defaultdict[int, int] | None) -> _Survey:
        survey = _Survey()
        self._empty_trash()
        stale_before = time.time() - self.temp_max_age
        for directory in (self._base, *self._identifier_dirs()):
            for item in _scandir(directory):
                st = _lstat(item)
                if st is None:
                    continue
                if item.name.endswith(_TEMP_SUFFIX):
                    # A writer that died mid-write (E01); a live one touched its file moments ago.
                    if st.st_mtime < stale_before and _unlink_quietly(item.path):
                        survey.removed_temp += 1
                elif _KEY.fullmatch(item.name):
                    survey.entries += 1
                    survey.bytes += st.st_size
                    if histogram is not None:
                        histogram[st.st_mtime_ns // self._bucket_ns] += st.st_size
        return survey

    def _remove_oldest(self, cutoff: int, partial: int) -> tuple[int, int]:
        evicted = freed = 0
        for directory in self._identifier_dirs():
            removed_here = kept_here = 0
            for item in _scandir(directory):
                st = _lstat(item)
                if st is None:
                    continue
                if not _KEY.fullmatch(item.name):
                    kept_here += 1
                    continue
                bucket = st.st_mtime_ns // self._bucket_ns
                if bucket > cutoff or (bucket == cutoff and partial <= 0):
                    kept_here += 1
                    continue
                if not _unlink_quietly(item.path):
                    continue  # another process removed it first
                evicted += 1
                removed_here += 1
                freed += st.st_size
                if bucket == cutoff:
                    partial -= st.st_size
            if removed_here and not kept_here:
                # Safe against a concurrent put: rmdir fails on a folder holding its temp file, and a
                # put that finds the folder gone recreates it.
                _rmdir_quietly(directory)
        return evicted, freed

    def _identifier_dirs(self) -> Iterator[str]:
        for shard in _scandir(self._base):
            if _SHARD.fullmatch(shard.name) and _is_dir(shard):
                for directory in _scandir(shard.path):
                    if _IDENTIFIER_DIR.fullmatch(directory.name) and _is_dir(directory):
                        yield directory.path

    def _add_usage(self, delta: int) -> int:
        return self._update_usage(lambda current: current + delta)

    def _set_usage(self, surveyed: int, before: int) -> None:
        # Bytes other processes added while the survey ran are not in it; keep them.
        self._update_usage(lambda current: surveyed + max(0, current - before))

    def _read_usage(self) -> int:
        return self._update_usage(lambda current: current)

    def _update_usage(self, change: Callable[[int], int]) -> int:
        """Apply ``change`` to the shared estimate under flock; falls back to this process's own."""
        path = os.path.join(self._base, _USAGE)
        try:
            fd = _open_creating(path, self._base, os.O_RDWR)
        except OSError:
            fd = -1
        if fd < 0:
            with self._counters:
                self._estimate = max(0, change(self._estimate))
                return self._estimate
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 8, 0)
            current = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            value = max(0, change(current))
            if value != current:
                os.pwrite(fd, value.to_bytes(8, "little"), 0)
        except OSError:
            with self._counters:
                self._estimate = max(0, change(self._estimate))
                return self._estimate
        finally:
            os.close(fd)  # releases the lock
        with self._counters:
            self._estimate = value
        return value

    @contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """Non-blocking exclusion of scans and evictions, across threads and processes."""
        if not self._evicting.acquire(blocking=False):
            yield False
            return
        try:
            try:
                fd = _open_creating(os.path.join(self._base, _EVICT_LOCK), self._base, os.O_RDWR)
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
        trash = os.path.join(self._base, _TRASH)
        if identifier is None:
            sources = [shard.path for shard in _scandir(self._base) if _SHARD.fullmatch(shard.name)]
        else:
            sources = [self._identifier_dir(identifier)]
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
            entries, size = _remove_tree(target)
            removed += entries
            freed += size
        if freed:
            self._add_usage(-freed)
        log.info("disk cache purged %d entries (%s)", removed, "all" if identifier is None else "one identifier")
        return PurgeResult(removed, generation)

    def generation(self) -> int:
        """The purge generation: changes whenever any process purges (0 before the first purge)."""
        try:
            with open(os.path.join(self._base, _GENERATION), "rb") as file:
                return int(file.read(32))
        except (OSError, ValueError):
            return 0

    def _bump_generation(self) -> int:
        lock = _open_creating(os.path.join(self._base, _GENERATION_LOCK), self._base, os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a strict counter: two concurrent purges write n+1 and n+2
            value = self.generation() + 1
            path = os.path.join(self._base, _GENERATION)
            temp = f"{path}.{os.getpid()}.{secrets.token_hex(6)}{_TEMP_SUFFIX}"
            try:
                with open(temp, "wb") as file:
                    file.write(str(value).encode())
                os.replace(temp, path)  # readers never see a half-written number
            except OSError:
                _unlink_quietly(temp)
                raise
            return value
        finally:
            os.close(lock)

    def _empty_trash(self) -> None:
        """Delete leftovers of purges that were interrupted (a crash between rename and delete)."""
        for item in _scandir(os.path.join(self._base, _TRASH)):
            _remove_tree(item.path)

    # --- misc ----------------------------------------------------------------------------------

    def _entry_path(self, identifier: str, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError("cache key must be 40 lowercase hex characters")
        return os.path.join(self._identifier_dir(identifier), key)

    def _identifier_dir(self, identifier: str) -> str:
        digest = identifier_digest(identifier)
        return os.path.join(self._base, digest[:2], digest)

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
                evicted=self._evicted,
                bytes=self._estimate,
                max_bytes=self.max_bytes,
                paused=time.monotonic() < self._paused_until,
            )


# --- entry format --------------------------------------------------------------------------------


def _encode_header(entry: Entry, key: str) -> bytes:
    media = entry.media_type.encode("ascii")
    if len(media) > 255:
        raise ValueError("media type longer than 255 bytes")
    body = entry.body
    return HEADER.pack(MAGIC, FORMAT_VERSION, len(media), 0, bytes.fromhex(key), zlib.crc32(body), len(body)) + media


def _decode(data: bytes, identifier: str, key: str) -> Entry | None:
    """The entry in ``data``, or None if it is not a complete, intact entry of ``key`` (E03, E17)."""
    if len(data) < HEADER.size:
        return None
    magic, version, media_length, _reserved, stored_key, crc, body_length = HEADER.unpack_from(data)
    start = HEADER.size + media_length
    if magic != MAGIC or version != FORMAT_VERSION or len(data) != start + body_length:
        return None
    if stored_key != bytes.fromhex(key):
        # Intact, but another key's entry: a file moved or copied under this name. Serving it would
        # answer one request with another's image.
        log.warning("disk cache entry %s holds the entry of key %s; removed", key, stored_key.hex())
        return None
    body = data[start:]
    if zlib.crc32(body) != crc:
        return None
    try:
        media_type = data[HEADER.size : start].decode("ascii")
    except UnicodeDecodeError:
        return None
    return Entry(body, media_type, identifier)


def _cutoff(histogram: dict[int, int], excess: int) -> tuple[int, int]:
    """The oldest bucket whose inclusion frees ``excess`` bytes, and the bytes still to free in it."""
    freed = 0
    bucket = 0
    for bucket in sorted(histogram):
        if freed + histogram[bucket] >= excess:
            return bucket, excess - freed
        freed += histogram[bucket]
    return bucket, 0


# --- small filesystem helpers: every one tolerates the races described in the module docstring ---


def _read_exactly(fd: int, size: int) -> bytes:
    data = os.read(fd, size + 1)  # one byte more: a file that grew is as invalid as a short one
    if len(data) <= size:
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                break
            data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _touch(fd: int) -> None:
    with suppress(OSError):  # read-only cache or another owner: the entry just ages as if never hit
        os.utime(fd)


def _open_creating(path: str, base: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CREAT | _O_CLOEXEC, 0o644)
    except FileNotFoundError:
        os.makedirs(base, exist_ok=True)
        return os.open(path, flags | os.O_CREAT | _O_CLOEXEC, 0o644)


def _unlink_quietly(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _rmdir_quietly(path: str) -> None:
    with suppress(OSError):  # not empty (a writer got in first) or already gone
        os.rmdir(path)


def _unlink_if_same(path: str, st: os.stat_result) -> None:
    """Remove a damaged entry unless a writer has meanwhile replaced it with a good one."""
    try:
        now = os.lstat(path)
    except OSError:
        return
    if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
        _unlink_quietly(path)


def _scandir(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as items:
            return list(items)
    except OSError:
        return []  # missing (deleted, purged, not created yet) or unreadable: nothing there


def _lstat(item: os.DirEntry[str]) -> os.stat_result | None:
    try:
        st = item.stat(follow_symlinks=False)
    except OSError:
        return None
    return st if item.is_file(follow_symlinks=False) else None


def _is_dir(item: os.DirEntry[str]) -> bool:
    try:
        return item.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _remove_tree(path: str) -> tuple[int, int]:
    """Delete a folder of entries (two levels at most); returns (entries, bytes) removed."""
    entries = size = 0
    for item in _scandir(path):
        if _is_dir(item):
            sub_entries, sub_size = _remove_tree(item.path)
            entries += sub_entries
            size += sub_size
            continue
        st = _lstat(item)
        if _unlink_quietly(item.path) and st is not None and _KEY.fullmatch(item.name):
            entries += 1
            size += st.st_size
    _rmdir_quietly(path)
    return entries, size
