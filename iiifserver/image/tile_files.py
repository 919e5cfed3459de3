"""Reading stored tiles: from an open descriptor, without blocking when the page cache has them.

Owns: a stored tile's byte range; reading it (blocking, in a worker thread, or from the page
cache only with ``RWF_NOWAIT`` on the event loop); opening a source checked against the version
its index was built for; ``TileFiles``, the bounded set of descriptors the event loop reads through.
A stored tile of an object (``ObjectPath``) is one ranged read with ``If-Match`` its ETag, straight
from the store (not through the block cache: a tile is read once, then the tile cache has it).
Must not know: TIFF structure (``tiff_reader``, ``tiff_directory``), JPEG syntax (``jpeg_splice``), plans, pyvips, HTTP.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from pathlib import Path

from iiifserver.errors import SourceChanged
from iiifserver.image.jpeg_splice import splice_tile
from iiifserver.image.object_store import ObjectPath
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.tile_grid import TileGrid

# Linux >= 4.14; elsewhere 0 makes preadv an ordinary (possibly blocking) read, so it is not used.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


def read_stored_tile(fd: int, grid: TileGrid, index: int) -> bytes:
    """Stored tile ``index`` of ``grid`` as a complete JPEG file.

    Raises ``ValueError`` when the stored bytes are not a baseline JPEG stream of this grid's
    tile size and component count (truncated, replaced or corrupted file): the caller then
    decodes instead. Corruption that keeps the stream's syntax intact (changed entropy-coded
    bits without a stray marker) cannot be seen without decoding and is not detected.
    """
    offset, count = tile_range(grid, index)
    return splice_tile(os.pread(fd, count, offset), grid, index)


def read_stored_tile_if_cached(fd: int, grid: TileGrid, index: int) -> bytes | None:
    """``read_stored_tile`` from the page cache only: None when the read would wait for the disk.

    ``preadv`` with ``RWF_NOWAIT`` never blocks, so this may run on the event loop; a tile whose
    bytes are not (all) cached is left to a worker thread.
    """
    if not _RWF_NOWAIT:
        return None
    offset, count = tile_range(grid, index)
    buffer = bytearray(count)
    try:
        got = os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # no RWF_NOWAIT here
            return None
        raise
    if got != count:  # partly cached, or the file is shorter: the blocking path decides
        return None
    return splice_tile(bytes(buffer), grid, index)


def tile_range(grid: TileGrid, index: int) -> tuple[int, int]:
    """(offset, byte count) of stored tile ``index``; ``ValueError`` when implausible."""
    if not 0 <= index < len(grid.offsets):
        raise ValueError(f"tile {index} is not in the grid ({len(grid.offsets)} tiles)")
    offset, count = grid.offsets[index], grid.bytecounts[index]
    if not 4 <= count <= grid.max_tile_bytes:
        raise ValueError(f"tile {index}: implausible byte count {count}")
    return offset, count


def open_and_read(path: Path | ObjectPath, version: SourceVersion, grid: TileGrid, index: int) -> tuple[bytes, int]:
    """Open ``path`` (which must still be ``version``) and read stored tile ``index``. Blocking.

    Returns the tile and the open descriptor, for ``TileFiles.adopt`` (the caller owns it); an
    object has none (-1). An object replaced since its version was named is ``SourceChanged``.
    """
    if isinstance(path, ObjectPath):
        offset, count = tile_range(grid, index)
        return splice_tile(path.store.read(path, offset, count), grid, index), -1
    fd = open_checked(path, version)
    try:
        return read_stored_tile(fd, grid, index), fd
    except BaseException:
        os.close(fd)
        raise


def open_checked(path: Path, version: SourceVersion) -> int:
    """A descriptor of ``path``, which must still be ``version``. Blocking.

    The check is on the descriptor (fstat): a file replaced since the index was built raises
    ``SourceChanged`` instead of serving new bytes under the old version's key.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if SourceVersion.of(st) != version:
            raise SourceChanged(str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


class TileFiles:
    """Open descriptors of tile sources, keyed by source version, read without blocking.

    Event loop only: descriptors are opened (and checked) by worker threads in
    ``open_and_read`` and handed over with ``adopt``; only the loop reads through them or closes
    them, so a descriptor is never closed under a reader. A descriptor keeps the inode it was
    opened on, so a replaced file's old version stays consistent until its entry is evicted.
    """

    def __init__(self, max_open: int = 256) -> None:
        self.max_open = max_open
        self._fds: OrderedDict[tuple[str, SourceVersion], int] = OrderedDict()

    def read_if_cached(
        self, path: Path | ObjectPath, version: SourceVersion, grid: TileGrid, index: int
    ) -> bytes | None:
        """Stored tile ``index``, if a descriptor of this version is held and the page cache has
        its bytes; None: a worker thread must read it (``open_and_read``)."""
        fd = self._fds.get((str(path), version))
        if fd is None:
            return None
        self._fds.move_to_end((str(path), version))
        return read_stored_tile_if_cached(fd, grid, index)

    def adopt(self, path: Path | ObjectPath, version: SourceVersion, fd: int) -> None:
        if fd < 0:
            return  # an object: read from its store each time
        key = (str(path), version)
        if key in self._fds:  # a concurrent first read got there before us
            os.close(fd)
            return
        self._fds[key] = fd
        while len(self._fds) > self.max_open:
            _, old = self._fds.popitem(last=False)
            os.close(old)

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])
