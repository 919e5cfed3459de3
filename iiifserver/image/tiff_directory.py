"""A minimal TIFF directory reader: which pyramid levels hold JPEG tiles that can be sent as stored.

Owns: reading the TIFF structure a passthrough needs (the IFD chain, SubIFDs, tile layout, tile
offsets and byte counts, the JPEGTables tag) with a reader of its own over a ``read(offset, n)``
function (``os.pread`` of a file, or ranged reads of an object through the block cache); and
deciding per pyramid level whether its tiles qualify (a ``TileGrid``) or not (None).
Must not know: pyvips (nothing here decodes pixels), plans, HTTP, caching. Which levels exist is
the probe's business: the index is built for the ``Level`` list it found.
"""

from __future__ import annotations

import array
import functools
import os
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from iiifserver.image.jpeg_splice import tables_header
from iiifserver.image.source_info import Level
from iiifserver.image.tile_grid import StoredTiles, TileGrid

_COMPRESSION_JPEG = 7  # new-style JPEG; 6 (old-style) is not a self-describing stream
_PHOTOMETRIC_COMPONENTS = {1: 1, 2: 3, 6: 3}  # MinIsBlack grey, RGB, YCbCr -> JPEG components
_PHOTOMETRIC_RGB = 2
_MAX_PAGES = 4096  # a longer IFD chain is not a pyramid; also stops a looping chain
_MAX_IFD_ENTRIES = 4096
_MAX_TABLES = 1 << 16
_NATIVE = "<" if sys.byteorder == "little" else ">"

# TIFF tags read here
_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_SAMPLES, _PLANAR, _TILE_W, _TILE_H, _TILE_OFFSETS, _TILE_COUNTS = 277, 284, 322, 323, 324, 325
_SUBIFDS, _SAMPLE_FORMAT, _JPEG_TABLES = 330, 339, 347
_STRIP_OFFSETS, _STRIP_COUNTS = 273, 279

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 6: 1, 7: 1, 8: 2, 9: 4, 13: 4, 16: 8, 17: 8, 18: 8}
_UNSIGNED = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}  # BYTE SHORT LONG IFD LONG8 IFD8
# array typecodes with the TIFF widths (C 'unsigned int' is 4 bytes on every supported platform)
_ARRAY_CODE = {"B": "B", "H": "H", "I": "I" if array.array("I").itemsize == 4 else "L", "Q": "Q"}


ReadFn = Callable[[int, int], bytes]  # (n, offset) -> bytes, as os.pread(fd, n, offset)


class _Malformed(ValueError):
    """The file's structure is not what the TIFF specification allows."""


def read_tile_index(path: Path, levels: Sequence[Level]) -> StoredTiles:
    """The passthrough grid of each level in ``levels``; reads IFDs and tag arrays only.

    A level that is not tiled JPEG in a supported layout (8-bit, chunky, grey/RGB/YCbCr, with
    JPEGTables), or that the file does not describe as ``levels`` says, is ``None``. A file
    that is not a readable TIFF gives all ``None``. ``OSError`` (file gone, unreadable) propagates.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_tile_index_from(functools.partial(os.pread, fd), os.fstat(fd).st_size, levels)
    finally:
        os.close(fd)


def read_tile_index_from(read: ReadFn, size: int, levels: Sequence[Level]) -> StoredTiles:
    """``read_tile_index`` of ``size`` bytes read through ``read(n, offset)`` (``os.pread``'s order)."""
    try:
        reader = _Reader(read, size)
    except _Malformed:
        return StoredTiles((None,) * len(levels))
    return StoredTiles(tuple(_level_grid(reader, level) for level in levels))


def truncation(path: Path, levels: Sequence[Level]) -> str | None:
    """Why the image data of ``levels`` is not all inside the file (a truncated copy), or None.

    libvips opens a TIFF cut short as long as its first directory survives, and only fails (or
    renders black) on the missing tiles: checking that every tile or strip of every level ends
    inside the file finds the damage when the source is opened. Reads directories and tag arrays
    only. ``OSError`` propagates.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return truncation_from(functools.partial(os.pread, fd), os.fstat(fd).st_size, levels)
    finally:
        os.close(fd)


def truncation_from(read: ReadFn, size: int, levels: Sequence[Level]) -> str | None:
    """``truncation`` of ``size`` bytes read through ``read(n, offset)``."""
    try:
        reader = _Reader(read, size)
        for level in levels:
            offset = reader.page_offset(level.page)
            if offset is None:
                return "the file ends before its last pyramid level (truncated)"
            ifd = reader.ifd(offset)
            if level.subifd >= 0:
                subifds = reader.ints(ifd, _SUBIFDS)
                if subifds is None or level.subifd >= len(subifds):
                    return "the file ends before its last pyramid level (truncated)"
                ifd = reader.ifd(subifds[level.subifd])
            offsets = reader.int_array(ifd, _TILE_OFFSETS) or reader.int_array(ifd, _STRIP_OFFSETS)
            counts = reader.int_array(ifd, _TILE_COUNTS) or reader.int_array(ifd, _STRIP_COUNTS)
            if not offsets or not counts or len(offsets) != len(counts):
                return "a pyramid level lists no image data"
            if max(map(int.__add__, offsets, counts)) > reader.size:
                return "the file ends before its image data (truncated)"
        page = 0
        while reader.page_offset(page) is not None:  # the chain's next link must be in the file too
            page += 1
    except _Malformed:
        return "the file ends inside its directories (truncated)"
    return None


def _level_grid(reader: _Reader, level: Level) -> TileGrid | None:
    try:
        offset = reader.page_offset(level.page)
        if offset is None:
            return None
        if level.subifd >= 0:
            subifds = reader.ints(reader.ifd(offset), _SUBIFDS)
            if subifds is None or level.subifd >= len(subifds):
                return None
            offset = subifds[level.subifd]
        return _grid(reader, reader.ifd(offset), level)
    except _Malformed:
        return None


def _grid(reader: _Reader, ifd: dict[int, _Entry], level: Level) -> TileGrid | None:
    def scalar(tag: int, default: int | None = None) -> int | None:
        values = reader.ints(ifd, tag)
        return default if values is None or len(values) != 1 else values[0]

    width, height = scalar(_WIDTH), scalar(_HEIGHT)
    if (width, height) != (level.width, level.height):
        return None  # not the image the probe saw there: never serve from it
    photometric = scalar(_PHOTOMETRIC)
    components = _PHOTOMETRIC_COMPONENTS.get(photometric or -1)
    tile_w, tile_h = scalar(_TILE_W), scalar(_TILE_H)
    bits = reader.ints(ifd, _BITS) or (1,)
    sample_format = reader.ints(ifd, _SAMPLE_FORMAT) or (1,)
    if (
        scalar(_COMPRESSION) != _COMPRESSION_JPEG
        or components is None
        or scalar(_SAMPLES, 1) != components  # extra samples (alpha) or CMYK
        or scalar(_PLANAR, 1) != 1  # planar: one JPEG stream per component
        or any(b != 8 for b in bits)
        or any(f != 1 for f in sample_format)
        or not tile_w
        or not tile_h
    ):
        return None
    across = -(-level.width // tile_w)
    down = -(-level.height // tile_h)
    offsets = reader.int_array(ifd, _TILE_OFFSETS)
    counts = reader.int_array(ifd, _TILE_COUNTS)
    tables = reader.raw(ifd, _JPEG_TABLES, _MAX_TABLES)
    if offsets is None or counts is None or len(offsets) != across * down or len(counts) != len(offsets):
        return None
    if tables is None:
        return None  # tiles might carry their own tables; no writer we serve does that
    adobe_rgb = photometric == _PHOTOMETRIC_RGB
    spliced = tables_header(tables, rgb=adobe_rgb)
    if spliced is None:
        return None
    header, quality = spliced
    return TileGrid(
        tile_width=tile_w,
        tile_height=tile_h,
        width=level.width,
        height=level.height,
        across=across,
        offsets=offsets,
        bytecounts=counts,
        header=header,
        components=components,
        adobe_rgb=adobe_rgb,
        quality=quality,
        # A baseline JPEG of noise stays below ~1.5x the raw size; 4x + 64 KiB only stops
        # a corrupt count from making us allocate gigabytes.
        max_tile_bytes=4 * tile_w * tile_h * components + 65536,
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    type: int
    count: int
    field: bytes  # the inline value, or the offset of the value


class _Reader:
    """A minimal TIFF / BigTIFF IFD reader over ``read(n, offset)`` (os.pread's order, no seeks)."""

    def __init__(self, read: ReadFn, size: int) -> None:
        self._pread = read
        self.size = size
        head = read(min(16, size), 0)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8:
            raise _Malformed("not a TIFF")
        self.order = order
        magic = struct.unpack(order + "H", head[2:4])[0]
        if magic == 42:
            self.big = False
            first = struct.unpack(order + "I", head[4:8])[0]
        elif magic == 43 and len(head) == 16:
            self.big = True
            first = struct.unpack(order + "Q", head[8:16])[0]
        else:
            raise _Malformed("not a TIFF")
        self.pages: list[int] = [first] if first else []
        self._done = not first

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise _Malformed("value outside the file")
        data = self._pread(n, offset)
        if len(data) != n:
            raise _Malformed("short read")
        return data

    def page_offset(self, page: int) -> int | None:
        """Offset of the ``page``-th IFD of the main chain (what libtiff/libvips call a page)."""
        while len(self.pages) <= page and not self._done:
            last = self.pages[-1]
            count_size, entry_size, next_size = (8, 20, 8) if self.big else (2, 12, 4)
            (count,) = struct.unpack(self.order + ("Q" if self.big else "H"), self._read(last, count_size))
            if count > _MAX_IFD_ENTRIES:
                raise _Malformed("too many IFD entries")
            raw = self._read(last + count_size + count * entry_size, next_size)
            (nxt,) = struct.unpack(self.order + ("Q" if self.big else "I"), raw)
            if nxt == 0 or nxt in self.pages or len(self.pages) >= _MAX_PAGES:
                self._done = True
            else:
                self.pages.append(nxt)
        return self.pages[page] if page < len(self.pages) else None

    def ifd(self, offset: int) -> dict[int, _Entry]:
        count_size, entry_size = (8, 20) if self.big else (2, 12)
        (count,) = struct.unpack(self.order + ("Q" if self.big else "H"), self._read(offset, count_size))
        if count > _MAX_IFD_ENTRIES:
            raise _Malformed("too many IFD entries")
        raw = self._read(offset + count_size, count * entry_size)
        entry = struct.Struct(self.order + ("HHQ8s" if self.big else "HHI4s"))
        entries: dict[int, _Entry] = {}
        for tag, typ, n, field in entry.iter_unpack(raw):
            entries.setdefault(tag, _Entry(typ, n, field))
        return entries

    def _value_bytes(self, entry: _Entry, limit: int) -> bytes:
        nbytes = _TYPE_SIZE.get(entry.type, 0) * entry.count
        if nbytes == 0 or nbytes > limit:
            raise _Malformed("unsupported or oversized tag value")
        if nbytes <= len(entry.field):
            return entry.field[:nbytes]
        (offset,) = struct.unpack(self.order + ("Q" if self.big else "I"), entry.field)
        return self._read(offset, nbytes)

    def int_array(self, ifd: dict[int, _Entry], tag: int) -> array.array[int] | None:
        """An unsigned-integer tag as a compact array in native byte order."""
        entry = ifd.get(tag)
        if entry is None:
            return None
        code = _UNSIGNED.get(entry.type)
        if code is None:
            raise _Malformed("tag is not an unsigned integer")
        values = array.array(_ARRAY_CODE[code])
        values.frombytes(self._value_bytes(entry, self.size))
        if values.itemsize > 1 and self.order != _NATIVE:
            values.byteswap()
        return values

    def ints(self, ifd: dict[int, _Entry], tag: int) -> tuple[int, ...] | None:
        values = self.int_array(ifd, tag)
        return None if values is None else tuple(values)

    def raw(self, ifd: dict[int, _Entry], tag: int, limit: int) -> bytes | None:
        entry = ifd.get(tag)
        if entry is None:
            return None
        if entry.type not in (1, 7):  # BYTE or UNDEFINED
            raise _Malformed("tag is not a byte string")
        return self._value_bytes(entry, limit)
