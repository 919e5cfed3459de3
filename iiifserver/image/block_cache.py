"""The local block cache of objects: what renders and probes read an object through.

Owns: fixed-size blocks of objects (1 MiB by default) kept as files under one folder, named by a
digest of bucket, key and ETag and the block's number, so a replaced object never mixes blocks of
two versions; fetching a missing block with one ranged read (``If-Match`` its ETag); the folder's
bound in bytes (least recently used blocks go first); ``ObjectReader``, a file-like view
(``read(offset, n)``) of one object version over its blocks; and ``local_copy``, a whole object
as one local file for the decoders that need a path (JPEG 2000).
Must not know: image formats, pyvips, boto3 (reads go through ``ObjectStore``), HTTP.
Blocking: runs in worker threads. Several worker processes may share the folder: each accounts
for the blocks it wrote or saw, and a block evicted by another process is fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from iiifserver.errors import SourceChanged
from iiifserver.image.object_store import ObjectPath

BLOCK_SIZE = 1 << 20
log = logging.getLogger(__name__)


class BlockCache:
    def __init__(self, folder: Path, max_bytes: int, block_size: int = BLOCK_SIZE) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.block_size = block_size
        self.nbytes = 0
        self.fetched = 0  # blocks read from the store (counters for tests and benchmarks)
        self.hits = 0
        self._lock = threading.Lock()
        self._files: OrderedDict[str, int] = OrderedDict()  # file name -> size, least recent first
        self._scanned = False
        self._warned = False

    def block(self, path: ObjectPath, index: int) -> bytes:
        """Block ``index`` of the object version ``path``."""
        size = path.size
        start = index * self.block_size
        if not 0 <= start < size:
            raise ValueError(f"block {index} is outside the object")
        length = min(self.block_size, size - start)
        name = f"{_digest(path)}-{index}"
        file = self._file(name)
        try:
            data = file.read_bytes()
        except OSError:  # not there (never kept, evicted), or the folder is unusable: fetch it
            data = b""
        if len(data) == length:
            self._touch(name, length)
            self.hits += 1
            return data
        data = path.store.read(path, start, length)
        self.fetched += 1
        try:
            self._keep(name, file, data)
        except OSError as exc:  # a full or read-only disk: the block is served, just not kept
            if not self._warned:
                self._warned = True
                log.warning("block cache folder not writable (%s): blocks are read from the store each time", exc)
        return data

    def local_copy(self, path: ObjectPath) -> Path:
        """The whole object version as one local file (counted in the bound like its blocks)."""
        size = path.size
        name = f"{_digest(path)}-whole{path.suffix}"
        file = self._file(name)
        try:
            if file.stat().st_size == size:
                self._touch(name, size)
                return file
        except FileNotFoundError:
            pass
        reader = ObjectReader(path, self)
        chunks = [
            reader.read(offset, min(self.block_size, size - offset)) for offset in range(0, size, self.block_size)
        ]
        self._keep(name, file, b"".join(chunks))
        return file

    def clear(self) -> None:
        with self._lock:
            names = list(self._files)
            self._files.clear()
            self.nbytes = 0
        for name in names:
            self._file(name).unlink(missing_ok=True)

    def _file(self, name: str) -> Path:
        return self.folder / name[:2] / name

    def _touch(self, name: str, size: int) -> None:
        with self._lock:
            if name in self._files:
                self._files.move_to_end(name)
            else:
                self._files[name] = size
                self.nbytes += size
        self._evict()

    def _keep(self, name: str, file: Path, data: bytes) -> None:
        """Write atomically (a reader never sees half a block), then account and evict."""
        self._scan()
        if len(data) > self.max_bytes:
            return  # larger than the whole cache: read, used, not kept
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            old = self._files.pop(name, None)
            self.nbytes += len(data) - (old or 0)
            self._files[name] = len(data)
        self._evict()

    def _evict(self) -> None:
        doomed: list[str] = []
        with self._lock:
            while self.nbytes > self.max_bytes and len(self._files) > 1:
                name, size = self._files.popitem(last=False)
                self.nbytes -= size
                doomed.append(name)
        for name in doomed:
            self._file(name).unlink(missing_ok=True)

    def _scan(self) -> None:
        """Count what earlier runs left (once), so the bound holds across restarts."""
        with self._lock:
            if self._scanned:
                return
            self._scanned = True
        found: list[tuple[float, str, int]] = []
        if self.folder.is_dir():
            for sub in self.folder.iterdir():
                if not sub.is_dir():
                    continue
                for entry in os.scandir(sub):
                    if entry.name.startswith(".tmp-"):
                        Path(entry.path).unlink(missing_ok=True)  # debris of a crashed writer
                    elif entry.is_file():
                        st = entry.stat()
                        found.append((st.st_atime, entry.name, st.st_size))
        with self._lock:
            for _, name, size in sorted(found):
                if name not in self._files:
                    self._files[name] = size
                    self._files.move_to_end(name, last=False)
                    self.nbytes += size
        self._evict()


class ObjectReader:
    """``read(offset, n)`` of one object version through the block cache.

    Keeps the last block it read: libtiff reads a directory a few bytes at a time, and a
    hundred reads of one block must not be a hundred file reads. One reader per thread (it is
    not locked). ``error`` holds the first storage error met, for callers that read through a
    library that cannot carry exceptions (pyvips' custom sources see only a short read).
    """

    def __init__(self, path: ObjectPath, cache: BlockCache) -> None:
        self.path = path
        self.size = path.size
        self.cache = cache
        self.error: BaseException | None = None
        self._index = -1
        self._block = b""

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the object)."""
        n = max(0, min(n, self.size - offset))
        if n == 0 or offset < 0:
            return b""
        bs = self.cache.block_size
        first, last = offset // bs, (offset + n - 1) // bs
        if first == last:
            block = self._get(first)
            start = offset - first * bs
            return block[start : start + n]
        parts = [self._get(i) for i in range(first, last + 1)]
        joined = b"".join(parts)
        start = offset - first * bs
        return joined[start : start + n]

    def release(self) -> None:
        """Forget the block kept in memory (it is read again from the block cache when needed)."""
        self._index, self._block = -1, b""

    def _get(self, index: int) -> bytes:
        if index != self._index:
            block = self.cache.block(self.path, index)
            if len(block) != min(self.cache.block_size, self.size - index * self.cache.block_size):
                raise SourceChanged(str(self.path))
            self._index, self._block = index, block
        return self._block


def reader_of(path: ObjectPath) -> ObjectReader:
    """A reader of ``path`` through its store's block cache."""
    return ObjectReader(path, _cache_of(path))


def local_copy_of(path: ObjectPath) -> Path:
    """``path``'s whole object as a local file in its store's block cache."""
    return _cache_of(path).local_copy(path)


def _cache_of(path: ObjectPath) -> BlockCache:
    cache = path.store.block_cache
    if not isinstance(cache, BlockCache):
        raise TypeError("the object store has no block cache")
    return cache


def _digest(path: ObjectPath) -> str:
    return hashlib.sha256(f"{path.bucket}\x00{path.key}\x00{path.etag}\x00{path.size}".encode()).hexdigest()[:40]
