"""Stored-tile passthrough: serve one stored JPEG tile of a pyramidal TIFF without decoding it.

Owns: reading the TIFF structure a passthrough needs (the IFD chain, SubIFDs, tile layout, tile
offsets and byte counts, the JPEGTables tag) with a minimal reader of its own; deciding per
pyramid level whether its tiles can be sent as they are (``TileGrid`` or ``None``); mapping a
crop box onto one whole stored tile; and reading that tile, validated, spliced into a complete
JPEG (IIPImage calls this codec passthrough). ``passthrough_tile`` states which plans qualify.
Must not know: pyvips (nothing here decodes pixels), HTTP, caching, URLs (it sees only a ``Plan``).
Which levels exist is the probe's business: the index is built for the ``Level`` list it found.

A JPEG-in-TIFF tile (TIFF Technical Note 2) is an "abbreviated" JPEG stream: SOI, SOF, SOS,
entropy-coded data, EOI, with the quantisation and Huffman tables held once per level in the
JPEGTables tag (itself SOI, DQT..., DHT..., EOI). A complete JPEG is
``SOI [APP14 Adobe] <tables without SOI/EOI> <tile without SOI>``.
"""

from __future__ import annotations

import array
import errno
import os
import re
import struct
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from iiifserver.errors import SourceChanged
from iiifserver.image.planner import Box, Plan
from iiifserver.image.request import Format, Quality
from iiifserver.image.source_info import Colour, Level, SourceVersion

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# APP14 "Adobe", version 100, flags 0/0, transform 0: "the components are RGB, do not convert".
# libjpeg-family decoders would also take component ids 'R','G','B' as RGB, but a decoder that
# does not check ids (or a writer that numbers RGB components 0,1,2 or 1,2,3) assumes YCbCr
# without it. libjpeg honours it over the ids; JFIF APP0 would override it (JFIF means YCbCr).
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"

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

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 6: 1, 7: 1, 8: 2, 9: 4, 13: 4, 16: 8, 17: 8, 18: 8}
_UNSIGNED = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}  # BYTE SHORT LONG IFD LONG8 IFD8
# array typecodes with the TIFF widths (C 'unsigned int' is 4 bytes on every supported platform)
_ARRAY_CODE = {"B": "B", "H": "H", "I": "I" if array.array("I").itemsize == 4 else "L", "Q": "Q"}

# Inside entropy-coded data a 0xFF byte is followed only by 0x00 (stuffing) or RST0-7.
_BAD_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")

# IJG (Annex K) luminance quantisation table; its sum scaled per quality identifies the quality.
# fmt: off
_STD_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
# fmt: on


def _scaled_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # libjpeg's jpeg_quality_scaling
    return sum(min(255, max(1, (q * scale + 50) // 100)) for q in _STD_LUMINANCE)


_LUMINANCE_SUMS = tuple(_scaled_sum(quality) for quality in range(1, 101))


# Linux >= 4.14; elsewhere 0 makes preadv an ordinary (possibly blocking) read, so it is not used.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


@dataclass(frozen=True, slots=True)
class TileGrid:
    """One pyramid level whose stored JPEG tiles can be sent as they are.

    Not hashable (the offsets are arrays); compare with ``==``.
    """

    tile_width: int
    tile_height: int
    width: int  # the level's image size; tiles beyond it are padded
    height: int
    across: int  # tiles per row
    offsets: array.array[int]  # per tile, row-major; compact arrays (a gigapixel level has 15k tiles)
    bytecounts: array.array[int]
    header: bytes  # SOI [+ Adobe APP14] + the JPEGTables segments: emitted before the tile's stream
    components: int  # 1 (grey) or 3 (RGB or YCbCr)
    adobe_rgb: bool  # the header carries ADOBE_RGB, so a tile's own APP14 is dropped, not doubled
    quality: int  # IJG quality whose luminance table the tables match best (1..100), 0 if unknown
    max_tile_bytes: int  # larger byte counts are corrupt: never allocate for them

    @property
    def tile_count(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True, slots=True)
class StoredTiles:
    """Per level of ``SourceInfo.levels`` (same index): its passthrough grid, or None."""

    levels: tuple[TileGrid | None, ...]

    @property
    def has_passthrough(self) -> bool:
        return any(grid is not None for grid in self.levels)


class _Malformed(ValueError):
    """The file's structure is not what the TIFF specification allows."""


# -- reading the index -----------------------------------------------------------------------


def read_tile_index(path: Path, levels: Sequence[Level]) -> StoredTiles:
    """The passthrough grid of each level in ``levels``; reads IFDs and tag arrays only.

    A level that is not tiled JPEG in a supported layout (8-bit, chunky, grey/RGB/YCbCr, with
    JPEGTables), or that the file does not describe as ``levels`` says, is ``None``. A file
    that is not a readable TIFF gives all ``None``. ``OSError`` (file gone, unreadable) propagates.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            reader = _Reader(fd)
        except _Malformed:
            return StoredTiles((None,) * len(levels))
        return StoredTiles(tuple(_level_grid(reader, level) for level in levels))
    finally:
        os.close(fd)


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
    body, luminance = _table_segments(tables)
    if body is None:
        return None
    adobe_rgb = photometric == _PHOTOMETRIC_RGB
    header = SOI + (ADOBE_RGB if adobe_rgb else b"") + body
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
        quality=_ijg_quality(luminance),
        # A baseline JPEG of noise stays below ~1.5x the raw size; 4x + 64 KiB only stops
        # a corrupt count from making us allocate gigabytes.
        max_tile_bytes=4 * tile_w * tile_h * components + 65536,
    )


def _table_segments(tables: bytes) -> tuple[bytes | None, tuple[int, ...]]:
    """JPEGTables without its SOI/EOI, if it holds only tables; and the first quant table."""
    if not (tables.startswith(SOI) and tables.endswith(EOI)):
        return None, ()
    end = len(tables) - 2
    pos = 2
    luminance: tuple[int, ...] = ()
    while pos < end:
        if pos + 4 > end or tables[pos] != 0xFF:
            return None, ()
        marker = tables[pos + 1]
        length = int.from_bytes(tables[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > end:
            return None, ()
        # DQT, DHT, DRI, COM: anything else (APP0 JFIF, SOF...) would change how tiles decode
        if marker not in (0xDB, 0xC4, 0xDD, 0xFE):
            return None, ()
        if marker == 0xDB and not luminance and length >= 67 and tables[pos + 4] == 0:
            luminance = tuple(tables[pos + 5 : pos + 69])  # table 0, 8-bit precision
        pos += 2 + length
    return tables[2:end], luminance


def _ijg_quality(table: tuple[int, ...]) -> int:
    """The IJG quality (libjpeg's ``-quality``) whose scaled luminance table is closest."""
    if len(table) != 64:
        return 0
    target = sum(table)  # order-free, so the zigzag order of DQT does not matter
    return min(range(1, 101), key=lambda quality: abs(_LUMINANCE_SUMS[quality - 1] - target))


@dataclass(frozen=True, slots=True)
class _Entry:
    type: int
    count: int
    field: bytes  # the inline value, or the offset of the value


class _Reader:
    """A minimal TIFF / BigTIFF IFD reader over a file descriptor (os.pread, no seeks)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        head = os.pread(fd, 16, 0)
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
        data = os.pread(self.fd, n, offset)
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


# -- serving one tile ------------------------------------------------------------------------


def tile_for(grid: TileGrid, crop: Box) -> int | None:
    """The index of the stored tile that is exactly ``crop``, or None.

    Only whole tiles inside the level qualify: an edge tile's stored data is padded to the
    full tile size, so serving it would return the wrong pixel size (and the padding).
    """
    tw, th = grid.tile_width, grid.tile_height
    if crop.w != tw or crop.h != th or crop.x < 0 or crop.y < 0 or crop.x % tw or crop.y % th:
        return None
    if crop.x + tw > grid.width or crop.y + th > grid.height:
        return None
    return (crop.y // th) * grid.across + crop.x // tw


def read_stored_tile(fd: int, grid: TileGrid, index: int) -> bytes:
    """Stored tile ``index`` of ``grid`` as a complete JPEG file.

    Raises ``ValueError`` when the stored bytes are not a baseline JPEG stream of this grid's
    tile size and component count (truncated, replaced or corrupted file): the caller then
    decodes instead. Corruption that keeps the stream's syntax intact (changed entropy-coded
    bits without a stray marker) cannot be seen without decoding and is not detected.
    """
    offset, count = tile_range(grid, index)
    return splice_tile(os.pread(fd, count, offset), grid, index)


def read_stored_tile_nowait(fd: int, grid: TileGrid, index: int) -> bytes | None:
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


def splice_tile(data: bytes, grid: TileGrid, index: int) -> bytes:
    """The stored bytes of tile ``index`` as a complete JPEG file, after checking them."""
    count = grid.bytecounts[index]
    if len(data) != count:
        raise ValueError(f"tile {index}: short read ({len(data)} of {count} bytes): file truncated")
    if not data.startswith(SOI):
        raise ValueError(f"tile {index}: stored data does not start with a JPEG SOI marker")
    end = len(data) - 2
    if not data.endswith(EOI):
        raise ValueError(f"tile {index}: stored data does not end with a JPEG EOI marker")
    scan, drop = _check_headers(data, grid, index)
    while end > scan and data[end - 1] == 0xFF:  # fill bytes before EOI are legal
        end -= 1
    bad = _BAD_MARKER.search(data, scan, end)
    if bad is not None:
        raise ValueError(f"tile {index}: corrupt entropy-coded data (marker 0xff{data[bad.start() + 1]:02x})")
    view = memoryview(data)
    if drop is None:
        return b"".join((grid.header, view[2:]))
    return b"".join((grid.header, view[2 : drop[0]], view[drop[1] :]))


def _check_headers(data: bytes, grid: TileGrid, index: int) -> tuple[int, tuple[int, int] | None]:
    """Check the marker segments up to SOS; return where the scan data starts and an APP14 to drop."""
    pos, size = 2, len(data)
    sof = False
    drop: tuple[int, int] | None = None
    while True:
        if pos + 4 > size or data[pos] != 0xFF:
            raise ValueError(f"tile {index}: broken JPEG marker structure at byte {pos}")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        seg_end = pos + 2 + length
        if length < 2 or seg_end > size:
            raise ValueError(f"tile {index}: JPEG segment 0xff{marker:02x} overruns the tile")
        seg = data[pos + 4 : seg_end]
        if marker in (0xC0, 0xC1):  # baseline / extended sequential Huffman
            if len(seg) < 6 or seg[0] != 8 or seg[5] != grid.components:
                raise ValueError(f"tile {index}: JPEG frame is not 8-bit with {grid.components} components")
            height, width = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big")
            if (width, height) != (grid.tile_width, grid.tile_height):
                raise ValueError(f"tile {index}: JPEG frame is {width}x{height}, not the tile size")
            sof = True
        elif marker == 0xDA:
            if not sof:
                raise ValueError(f"tile {index}: JPEG scan before a frame header")
            return seg_end, drop
        elif marker == 0xEE and seg.startswith(b"Adobe") and len(seg) >= 12:
            transform = seg[11]
            if grid.components == 3 and transform != (0 if grid.adobe_rgb else 1):
                raise ValueError(f"tile {index}: Adobe colour transform {transform} contradicts the TIFF")
            if grid.adobe_rgb:
                drop = (pos, seg_end)  # the header already has one: a second would be redundant
        elif marker == 0xE0 and seg.startswith(b"JFIF") and grid.adobe_rgb:
            # JFIF means YCbCr to libjpeg, overriding the Adobe marker: RGB would turn to mush.
            raise ValueError(f"tile {index}: JFIF marker in an RGB tile")
        elif marker not in (0xC4, 0xDB, 0xDD, 0xFE) and not 0xE0 <= marker <= 0xEF:
            raise ValueError(f"tile {index}: unsupported JPEG marker 0xff{marker:02x}")
        pos = seg_end


# -- which plans qualify ---------------------------------------------------------------------


def passthrough_tile(stored: StoredTiles, levels: Sequence[Level], plan: Plan) -> tuple[TileGrid, int] | None:
    """The stored tile that is exactly what rendering ``plan`` would show, or None.

    ``levels`` are the ``SourceInfo.levels`` ``stored`` was built for. Requires a JPEG output of
    the crop at its own size, unrotated and unmirrored, in the source's own colour (grey from
    grey, colour from RGB: other qualities change the pixels), with no ICC profile to convert
    and no alpha to flatten.
    """
    grid = _eligible_grid(stored, levels, plan)
    if grid is None:
        return None
    index = tile_for(grid, plan.crop)
    return None if index is None else (grid, index)


@dataclass(frozen=True, slots=True)
class TileRef:
    """A stored tile that answers a request: whole, cut losslessly to its valid area (an edge
    tile), or stretched by the pixel a floor-rounded level lacks (``tile_codec.stretched``)."""

    grid: TileGrid
    index: int
    width: int  # the part of the stored tile shown: the whole tile, or an edge tile's valid area
    height: int
    out_width: int  # the response: that part, or one pixel more each way
    out_height: int

    @property
    def is_edge(self) -> bool:
        return (self.width, self.height) != (self.grid.tile_width, self.grid.tile_height)

    @property
    def stretched(self) -> bool:
        return (self.out_width, self.out_height) != (self.width, self.height)


# Largest stored tile that is stretched rather than rendered: decoding and encoding one of
# 256 x 256 takes about half a millisecond, which is done where a lossless crop is.
STRETCH_MAX_TILE_PIXELS = 256 * 256


def stored_tile_for(
    stored: StoredTiles, levels: Sequence[Level], plan: Plan, *, edges: bool, stretch: bool = False
) -> TileRef | None:
    """``passthrough_tile``, plus (with ``edges``) the padded edge tiles whose valid area is the
    crop, plus (with ``stretch``) those where the output is the crop and one more column or row."""
    grid = _eligible_grid(stored, levels, plan, 1 if stretch else 0)
    if grid is None:
        return None
    out = (plan.width, plan.height)
    index = tile_for(grid, plan.crop)
    if index is not None:
        ref = TileRef(grid, index, grid.tile_width, grid.tile_height, *out)
    elif edges and (index := edge_tile_for(grid, plan.crop)) is not None:
        ref = TileRef(grid, index, plan.crop.w, plan.crop.h, *out)
    else:
        return None
    if ref.stretched and grid.tile_width * grid.tile_height > STRETCH_MAX_TILE_PIXELS:
        return None
    return ref


def edge_tile_for(grid: TileGrid, crop: Box) -> int | None:
    """The tile index when ``crop`` is exactly the valid (unpadded) part of an edge tile."""
    tw, th = grid.tile_width, grid.tile_height
    if crop.x < 0 or crop.y < 0 or crop.x % tw or crop.y % th:
        return None
    col, row = crop.x // tw, crop.y // th
    if col >= grid.across or row * grid.across + col >= len(grid.offsets):
        return None
    valid = (min(tw, grid.width - crop.x), min(th, grid.height - crop.y))
    if valid == (tw, th) or (crop.w, crop.h) != valid:
        return None
    return row * grid.across + col


def _eligible_grid(stored: StoredTiles, levels: Sequence[Level], plan: Plan, stretch: int = 0) -> TileGrid | None:
    """The stored grid of ``plan``'s level, when the plan shows its pixels as stored: at their
    own size (or up to ``stretch`` pixels more each way), unrotated, in their own colour."""
    if (
        plan.format is not Format.JPG
        or plan.degrees != 0
        or plan.mirror
        or not 0 <= plan.width - plan.crop.w <= stretch
        or not 0 <= plan.height - plan.crop.h <= stretch
        or plan.source_has_icc
        or plan.source_has_alpha
    ):
        return None
    try:
        grid = stored.levels[levels.index(plan.level)]
    except (ValueError, IndexError):
        return None
    if grid is None:
        return None
    if grid.components == 3:
        wanted = plan.source_colour is Colour.RGB and plan.quality is Quality.COLOR
    else:
        wanted = plan.source_colour is Colour.GRAY and plan.quality is Quality.GRAY
    return grid if wanted else None


def open_and_read(path: Path, version: SourceVersion, grid: TileGrid, index: int) -> tuple[bytes, int]:
    """Open ``path`` (which must still be ``version``) and read stored tile ``index``. Blocking.

    Returns the tile and the open descriptor, for ``TileFiles.adopt`` (the caller owns it).
    """
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
        if SourceVersion(st.st_ino, st.st_size, st.st_mtime_ns) != version:
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

    def read_nowait(self, path: Path, version: SourceVersion, grid: TileGrid, index: int) -> bytes | None:
        fd = self._fds.get((str(path), version))
        if fd is None:
            return None
        self._fds.move_to_end((str(path), version))
        return read_stored_tile_nowait(fd, grid, index)

    def adopt(self, path: Path, version: SourceVersion, fd: int) -> None:
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
