"""A minimal TIFF directory reader: the facts of plain pyramidal TIFFs, and their stored JPEG tiles.

Owns: reading the TIFF structure (the IFD chain, SubIFDs, tile layout, tile offsets and byte
counts, the JPEGTables tag) with a reader of its own over a ``read(offset, n)`` function
(``os.pread`` of a file, or ranged reads of an object through the block cache); deciding per
pyramid level whether its tiles qualify (a ``TileGrid``) or not (None); whether a file's data
ends inside it (``truncation``); and ``plain_tiff``: a file's page facts when it is a TIFF that
libvips is known to read the same way (every tag known, every value inside the file, 8 or 16-bit
grey or RGB, a codec every libtiff has), so that its first open needs no libvips. One parse of a
file serves all three: the last file read is kept per thread, keyed by its ``stat`` version, so
the probe, the truncation check and the stored-tile index of a new source read its directories once.
Must not know: pyvips (nothing here decodes pixels), plans, HTTP, caching. Which levels exist is
the probe's business: the index is built for the ``Level`` list it found.
"""

from __future__ import annotations

import array
import functools
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from iiifserver.image.jpeg_splice import tables_header
from iiifserver.image.source_info import Level
from iiifserver.image.tile_grid import StoredTiles, TileGrid

_COMPRESSION_JPEG = 7  # new-style JPEG; 6 (old-style) is not a self-describing stream
_PHOTOMETRIC_COMPONENTS = {1: 1, 2: 3, 6: 3}  # MinIsBlack grey, RGB, YCbCr -> JPEG components
_PHOTOMETRIC_RGB = 2
_MAX_PAGES = 4096  # a longer IFD chain is not a pyramid; also stops a looping chain
_MAX_IFD_ENTRIES = 4096
_MAX_SUBIFDS = 64  # a plain pyramid's SubIFDs; more are left to libvips
_MAX_TABLES = 1 << 16
_NATIVE = "<" if sys.byteorder == "little" else ">"

# TIFF tags read here
_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_SAMPLES, _PLANAR, _TILE_W, _TILE_H, _TILE_OFFSETS, _TILE_COUNTS = 277, 284, 322, 323, 324, 325
_SUBIFDS, _SAMPLE_FORMAT, _JPEG_TABLES = 330, 339, 347
_STRIP_OFFSETS, _STRIP_COUNTS = 273, 279
_ROWS_PER_STRIP, _PREDICTOR, _EXTRA_SAMPLES, _ICC = 278, 317, 338, 34675

# The tags a plain TIFF may hold, each as libtiff reads it without a warning or an error (a message
# means libtiff ignored or guessed something, and libvips then reports what libtiff made of it, or
# fails: fail_on="warning"): tag -> (types, count, values).
# count: n exactly, _PER_SAMPLE (SamplesPerPixel), _ANY (one or more); values: allowed values of
# each item, None: any. Any other tag, type, count or value: not plain, libvips decides.
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _UNDEFINED, _IFD, _LONG8, _IFD8 = 1, 2, 3, 4, 5, 7, 13, 16, 18
_PER_SAMPLE, _ANY = -1, 0
_INTS = frozenset({_SHORT, _LONG})
_CHUNKS = frozenset({_SHORT, _LONG, _LONG8})
# LZW, JPEG, deflate (both codes), PackBits: every libtiff has them. Uncompressed data is not plain:
# libtiff second-guesses its byte counts ("bogus StripByteCounts") by heuristics not repeated here.
_PLAIN_COMPRESSIONS = frozenset({5, _COMPRESSION_JPEG, 8, 32946, 32773})
_TEXT: tuple[frozenset[int], int, frozenset[int] | None] = (frozenset({_ASCII}), _ANY, None)
_PLAIN_TAGS: dict[int, tuple[frozenset[int], int, frozenset[int] | None]] = {
    254: (_INTS, 1, None),  # NewSubfileType
    255: (frozenset({_SHORT}), 1, frozenset({1, 2, 3})),  # SubfileType
    256: (_INTS, 1, None),  # ImageWidth
    257: (_INTS, 1, None),  # ImageLength
    258: (frozenset({_SHORT}), _PER_SAMPLE, frozenset({8, 16})),  # BitsPerSample
    259: (frozenset({_SHORT}), 1, _PLAIN_COMPRESSIONS),  # Compression
    262: (frozenset({_SHORT}), 1, frozenset({1, 2, 6})),  # Photometric: grey, RGB, YCbCr
    269: _TEXT,  # DocumentName
    270: _TEXT,  # ImageDescription
    271: _TEXT,  # Make
    272: _TEXT,  # Model
    273: (_CHUNKS, _ANY, None),  # StripOffsets
    274: (frozenset({_SHORT}), 1, frozenset(range(1, 9))),  # Orientation
    277: (frozenset({_SHORT}), 1, frozenset({1, 2, 3, 4})),  # SamplesPerPixel
    278: (_INTS, 1, None),  # RowsPerStrip
    279: (_CHUNKS, _ANY, None),  # StripByteCounts
    282: (frozenset({_RATIONAL}), 1, None),  # XResolution
    283: (frozenset({_RATIONAL}), 1, None),  # YResolution
    284: (frozenset({_SHORT}), 1, frozenset({1})),  # PlanarConfiguration: chunky
    285: _TEXT,  # PageName
    286: (frozenset({_RATIONAL}), 1, None),  # XPosition
    287: (frozenset({_RATIONAL}), 1, None),  # YPosition
    296: (frozenset({_SHORT}), 1, frozenset({1, 2, 3})),  # ResolutionUnit
    297: (frozenset({_SHORT}), 2, None),  # PageNumber
    305: _TEXT,  # Software
    306: _TEXT,  # DateTime
    315: _TEXT,  # Artist
    316: _TEXT,  # HostComputer
    317: (frozenset({_SHORT}), 1, frozenset({1, 2})),  # Predictor: none, horizontal
    322: (_INTS, 1, None),  # TileWidth
    323: (_INTS, 1, None),  # TileLength
    324: (_CHUNKS, _ANY, None),  # TileOffsets
    325: (_CHUNKS, _ANY, None),  # TileByteCounts
    330: (frozenset({_LONG, _IFD, _LONG8, _IFD8}), _ANY, None),  # SubIFDs
    338: (frozenset({_SHORT}), _ANY, frozenset({0, 1, 2})),  # ExtraSamples
    339: (frozenset({_SHORT}), _PER_SAMPLE, frozenset({1})),  # SampleFormat: unsigned
    347: (frozenset({_UNDEFINED}), _ANY, None),  # JPEGTables
    530: (frozenset({_SHORT}), 2, frozenset({1, 2, 4})),  # YCbCrSubSampling
    531: (frozenset({_SHORT}), 1, frozenset({1, 2})),  # YCbCrPositioning
    532: (frozenset({_RATIONAL}), 6, None),  # ReferenceBlackWhite
    700: (frozenset({_BYTE, _UNDEFINED}), _ANY, None),  # XMP
    33432: _TEXT,  # Copyright
    33723: (frozenset({_UNDEFINED, _LONG, _BYTE}), _ANY, None),  # IPTC
    34377: (frozenset({_BYTE, _UNDEFINED}), _ANY, None),  # Photoshop
    34665: (frozenset({_LONG, _IFD, _IFD8}), 1, None),  # Exif IFD (libvips does not read it)
    34675: (frozenset({_UNDEFINED}), _ANY, None),  # ICC profile
}
_MAX_TEXT = 1 << 20  # a longer text tag is read by libvips, not checked here
_KEPT_INTS = 64  # integer tags up to this many values are kept decoded (not the tile offsets)
_MAX_COORD = 10_000_000  # libvips' VIPS_MAX_COORD before 8.16 (100 million since)
_PHOTOMETRIC_GREY, _PHOTOMETRIC_YCBCR = 1, 6

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 6: 1, 7: 1, 8: 2, 9: 4, 13: 4, 16: 8, 17: 8, 18: 8}
_UNSIGNED = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}  # BYTE SHORT LONG IFD LONG8 IFD8
_PLAIN_TYPE_SIZE = _TYPE_SIZE | {_RATIONAL: 8}
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
    with _file_reader(path) as reader:
        return _tile_index(reader, levels)


def read_tile_index_from(read: ReadFn, size: int, levels: Sequence[Level]) -> StoredTiles:
    """``read_tile_index`` of ``size`` bytes read through ``read(n, offset)`` (``os.pread``'s order)."""
    try:
        reader = _Reader(read, size)
    except _Malformed:
        return StoredTiles((None,) * len(levels))
    return _tile_index(reader, levels)


def _tile_index(reader: _Reader | None, levels: Sequence[Level]) -> StoredTiles:
    if reader is None:
        return StoredTiles((None,) * len(levels))
    return StoredTiles(tuple(_level_grid(reader, level) for level in levels))


def truncation(path: Path, levels: Sequence[Level]) -> str | None:
    """Why the image data of ``levels`` is not all inside the file (a truncated copy), or None.

    libvips opens a TIFF cut short as long as its first directory survives, and only fails (or
    renders black) on the missing tiles: checking that every tile or strip of every level ends
    inside the file finds the damage when the source is opened. Reads directories and tag arrays
    only. ``OSError`` propagates.
    """
    with _file_reader(path) as reader:
        if reader is None:
            return "the file ends inside its directories (truncated)"
        return _truncation(reader, levels)


def truncation_from(read: ReadFn, size: int, levels: Sequence[Level]) -> str | None:
    """``truncation`` of ``size`` bytes read through ``read(n, offset)``."""
    try:
        reader = _Reader(read, size)
    except _Malformed:
        return "the file ends inside its directories (truncated)"
    return _truncation(reader, levels)


def _truncation(reader: _Reader, levels: Sequence[Level]) -> str | None:
    try:
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
            if _data_end(offsets, counts) > reader.size:
                return "the file ends before its image data (truncated)"
        page = 0
        while reader.page_offset(page) is not None:  # the chain's next link must be in the file too
            page += 1
    except _Malformed:
        return "the file ends inside its directories (truncated)"
    return None


def _data_end(offsets: array.array[int], counts: array.array[int]) -> int:
    """Where the last chunk ends (numpy: a Python loop over a big level's tiles costs ~0.2 ms)."""
    starts, lengths = np.asarray(offsets, dtype=np.uint64), np.asarray(counts, dtype=np.uint64)
    # Either past 2**63 would wrap the sum: the file is far shorter, so say where it starts.
    return int(max(starts.max(), lengths.max(), (starts + lengths).max())) if len(starts) else 0


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
    spliced = _tables_header(tables, adobe_rgb)
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


@functools.lru_cache(maxsize=64)
def _tables_header(tables: bytes, rgb: bool) -> tuple[bytes, int] | None:
    """``tables_header``, once per distinct table (a pyramid's levels share theirs; the quality
    estimate costs ~40 us a call)."""
    return tables_header(tables, rgb=rgb)


# -- plain TIFFs: their facts without libvips -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What libvips would say of one directory of a plain TIFF."""

    width: int
    height: int
    tile_width: int  # 0: stored in strips
    tile_height: int
    samples: int  # libvips' bands
    bits: int  # 8 or 16
    photometric: int  # 1 (grey), 2 (RGB) or 6 (YCbCr, JPEG-compressed)
    has_icc: bool
    subifds: int  # how many SubIFDs it lists


@dataclass(frozen=True, slots=True)
class PlainTiff:
    """A plain TIFF's pages (the main IFD chain, in order) and page 0's SubIFDs."""

    pages: tuple[PageFacts, ...]
    subifds: tuple[PageFacts, ...]


def plain_tiff(path: Path) -> PlainTiff | None:
    """The facts of ``path`` when it is a plain TIFF, else None (libvips must read it).

    Plain: every directory of the chain (and page 0's SubIFDs) lists only tags libtiff knows, in
    ascending order, each value inside the file; 8 or 16-bit unsigned samples, chunky, grey (1 or
    2 samples) or RGB (3 or 4; YCbCr only as JPEG), compressed with none, LZW, deflate, PackBits
    or JPEG; tiles a multiple of 16, and a whole offset and byte-count array. Anything else, any
    doubt, is None: this reader vouches only for files libvips reads the same way without a
    warning. Image data past the end of the file is not looked at here (``truncation``).
    ``OSError`` propagates.
    """
    with _file_reader(path) as reader:
        return None if reader is None else _plain(reader)


def plain_tiff_from(read: ReadFn, size: int) -> PlainTiff | None:
    """``plain_tiff`` of ``size`` bytes read through ``read(n, offset)``."""
    try:
        return _plain(_Reader(read, size))
    except _Malformed:
        return None


def _plain(reader: _Reader) -> PlainTiff | None:
    try:
        pages: list[PageFacts] = []
        while (offset := reader.page_offset(len(pages))) is not None:
            page = _plain_page(reader, offset)
            if page is None:
                return None
            pages.append(page)
        if not pages or not reader.chain_ends_cleanly:
            return None
        subifds: list[PageFacts] = []
        if pages[0].subifds > _MAX_SUBIFDS:
            return None
        if pages[0].subifds:
            for sub_offset in reader.ints(reader.ifd(reader.pages[0]), _SUBIFDS) or ():
                sub = _plain_page(reader, sub_offset)
                if sub is None:
                    return None
                subifds.append(sub)
        return PlainTiff(tuple(pages), tuple(subifds))
    except _Malformed:
        return None


def _plain_page(reader: _Reader, offset: int) -> PageFacts | None:
    """One directory's facts when ``plain_ifd`` accepts it and its layout is one libvips reads
    as ``PageFacts`` says; else None. Tag values are already within ``_PLAIN_TAGS``' bounds."""
    ifd = reader.plain_ifd(offset)
    if ifd is None:
        return None

    def scalar(tag: int, default: int) -> int:
        values = reader.ints(ifd, tag)
        return default if values is None else values[0]  # one value: plain_ifd checked the count

    width, height, samples = scalar(_WIDTH, 0), scalar(_HEIGHT, 0), scalar(_SAMPLES, 1)
    photometric, compression = scalar(_PHOTOMETRIC, 0), scalar(_COMPRESSION, 1)
    bits = reader.ints(ifd, _BITS) or (1,)
    extra = reader.ints(ifd, _EXTRA_SAMPLES) or ()
    base = 1 if photometric == _PHOTOMETRIC_GREY else 3
    if (
        not width
        or not height
        or photometric not in (_PHOTOMETRIC_GREY, _PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR)
        or compression not in _PLAIN_COMPRESSIONS
        or (photometric == _PHOTOMETRIC_YCBCR and (compression != _COMPRESSION_JPEG or samples != 3))
        or samples not in (base, base + 1)
        or len(extra) not in (0, samples - base)
        or len(set(bits)) != 1
        or bits[0] not in (8, 16)
        or (compression == _COMPRESSION_JPEG and bits[0] != 8)
    ):
        return None
    if max(width, height) >= _MAX_COORD:
        return None
    tile_w, tile_h = scalar(_TILE_W, 0), scalar(_TILE_H, 0)
    if _TILE_W in ifd or _TILE_H in ifd:
        # libtiff refuses tiles not a multiple of 16; libvips, tiles more than twice the image
        # (rounded up to 256) or 8192, or of more than 100 MB (here: before any subsampling)
        most = min(8192, -(-2 * max(width, height) // 256) * 256)
        if (
            not 0 < tile_w <= most
            or not 0 < tile_h <= most
            or tile_w % 16
            or tile_h % 16
            or tile_w * tile_h * samples * bits[0] // 8 > 100_000_000
        ):
            return None
        chunks = -(-width // tile_w) * -(-height // tile_h)
        offsets, counts = _TILE_OFFSETS, _TILE_COUNTS
        if _STRIP_OFFSETS in ifd or _STRIP_COUNTS in ifd:
            return None
    else:
        rows = scalar(_ROWS_PER_STRIP, 0xFFFFFFFF)
        if not rows:
            return None
        chunks = -(-height // min(rows, height))
        offsets, counts = _STRIP_OFFSETS, _STRIP_COUNTS
    if offsets not in ifd or counts not in ifd or ifd[offsets].n != chunks or ifd[counts].n != chunks:
        return None
    if chunks == 1 and reader.ints(ifd, counts) == (0,) and reader.ints(ifd, offsets) != (0,):
        return None  # libtiff: "bogus StripByteCounts", a warning
    if photometric == _PHOTOMETRIC_YCBCR and not _sampling_agrees(reader, ifd, offsets, counts):
        return None
    return PageFacts(
        width=width,
        height=height,
        tile_width=tile_w,
        tile_height=tile_h,
        samples=samples,
        bits=bits[0],
        photometric=photometric,
        has_icc=_ICC in ifd,
        subifds=ifd[_SUBIFDS].n if _SUBIFDS in ifd else 0,
    )


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
_JPEG_HEAD = 2048  # the first chunk's bytes looked at for its frame header


def _sampling_agrees(reader: _Reader, ifd: dict[int, _Entry], offsets_tag: int, counts_tag: int) -> bool:
    """Whether the first chunk's JPEG frame header has the luma sampling YCbCrSubSampling says
    (default 2, 2). libtiff compares the two when it opens a YCbCr JPEG directory and warns,
    "auto-correcting", when they differ."""
    offsets, counts = reader.int_array(ifd, offsets_tag), reader.int_array(ifd, counts_tag)
    if not offsets or not counts or counts[0] < 4:
        return False
    head = reader.read_at(offsets[0], min(counts[0], _JPEG_HEAD))
    if head is None or head[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return False
        marker = head[pos + 1]
        length = int.from_bytes(head[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS:
            if pos + 12 > len(head) or head[pos + 9] < 1:
                return False
            sampling = head[pos + 11]
            return (sampling >> 4, sampling & 15) == (reader.ints(ifd, 530) or (2, 2))
        pos += 2 + length
    return False


# -- one parse per file version and thread ----------------------------------------------------

_last = threading.local()  # .key, .reader: the last file this thread parsed


@contextmanager
def _file_reader(path: Path) -> Iterator[_Reader | None]:
    """A reader of ``path`` (None: not a readable TIFF), reusing this thread's last parse when the
    file is still the same version (inode, size, mtime, ctime of its descriptor): a new source's
    probe, truncation check and stored-tile index come one after the other in one thread."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        read = functools.partial(os.pread, fd)
        reader: _Reader | None
        if getattr(_last, "key", None) == key:
            reader = _last.reader
        else:
            try:
                reader = _Reader(read, st.st_size)
            except _Malformed:
                reader = None
            _last.key, _last.reader = key, reader
        if reader is None:
            yield None
            return
        reader.bind(read)
        try:
            yield reader
        finally:
            reader.bind(None)  # never read through a closed descriptor
    finally:
        os.close(fd)


def forget_last() -> None:
    """Drop this thread's kept parse (tests)."""
    _last.__dict__.clear()


class _Entry(NamedTuple):  # a tuple: a pyramid's first open builds a hundred of them
    type: int
    n: int  # how many values
    field: bytes  # the inline value, or the offset of the value


class _Reader:
    """A minimal TIFF / BigTIFF IFD reader over ``read(n, offset)`` (os.pread's order, no seeks)."""

    def __init__(self, read: ReadFn, size: int) -> None:
        self._pread: ReadFn | None = read
        self.size = size
        # Kept for a parse shared between callers: directories and out-of-line values by offset.
        self._ifds: dict[int, dict[int, _Entry]] = {}
        self._values: dict[tuple[int, int], bytes] = {}
        self._plain_order: dict[int, bool] = {}  # directory offset -> tags ascending, none repeated
        self._next: dict[int, int | None] = {}  # directory offset -> the next one's (None: past the end)
        self._ints: dict[_Entry, tuple[int, ...]] = {}  # short integer tags, decoded
        self.chain_ends_cleanly = True  # False: the chain loops or is longer than _MAX_PAGES
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

    def bind(self, read: ReadFn | None) -> None:
        """Read through ``read`` from now on (a kept parse, reused with a new descriptor)."""
        self._pread = read

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise _Malformed("value outside the file")
        if self._pread is None:
            raise _Malformed("reader not bound to a file")
        data = self._pread(n, offset)
        if len(data) != n:
            raise _Malformed("short read")
        return data

    def page_offset(self, page: int) -> int | None:
        """Offset of the ``page``-th IFD of the main chain (what libtiff/libvips call a page)."""
        while len(self.pages) <= page and not self._done:
            last = self.pages[-1]
            self.ifd(last)
            nxt = self._next[last]
            if nxt is None:
                raise _Malformed("value outside the file")
            if nxt == 0 or nxt in self.pages or len(self.pages) >= _MAX_PAGES:
                self._done = True
                self.chain_ends_cleanly = nxt == 0
            else:
                self.pages.append(nxt)
        return self.pages[page] if page < len(self.pages) else None

    def ifd(self, offset: int) -> dict[int, _Entry]:
        """The entries of the directory at ``offset`` (the first of a repeated tag); parsed once."""
        entries = self._ifds.get(offset)
        if entries is None:
            entries = self._ifds[offset] = self._parse_ifd(offset)
        return entries

    def _parse_ifd(self, offset: int) -> dict[int, _Entry]:
        count_size, entry_size, next_size = (8, 20, 8) if self.big else (2, 12, 4)
        (count,) = struct.unpack(self.order + ("Q" if self.big else "H"), self._read(offset, count_size))
        if count > _MAX_IFD_ENTRIES:
            raise _Malformed("too many IFD entries")
        start, length = offset + count_size, count * entry_size
        # The entries and the next directory's offset in one read, when the file holds both.
        with_next = start + length + next_size <= self.size
        raw = self._read(start, length + next_size if with_next else length)
        self._next[offset] = (
            struct.unpack(self.order + ("Q" if self.big else "I"), raw[length:])[0] if with_next else None
        )
        entry = struct.Struct(self.order + ("HHQ8s" if self.big else "HHI4s"))
        entries: dict[int, _Entry] = {}
        previous, ascending = -1, True
        for tag, typ, n, field in entry.iter_unpack(raw[:length]):
            ascending = ascending and tag > previous
            previous = tag
            entries.setdefault(tag, _Entry(typ, n, field))
        self._plain_order[offset] = ascending
        return entries

    def plain_ifd(self, offset: int) -> dict[int, _Entry] | None:
        """The directory at ``offset`` when every entry is as ``_PLAIN_TAGS`` allows, the tags
        strictly ascending (libtiff warns otherwise), each value inside the file; else None."""
        ifd = self.ifd(offset)
        if not self._plain_order[offset]:
            return None
        samples = self.ints(ifd, 277) or (1,)
        for tag, entry in ifd.items():
            rule = _PLAIN_TAGS.get(tag)
            if rule is None or entry.type not in rule[0]:
                return None
            _, count, values = rule
            if entry.n < 1 or (count > 0 and entry.n != count) or (count == _PER_SAMPLE and (entry.n,) != samples):
                return None
            nbytes = _PLAIN_TYPE_SIZE[entry.type] * entry.n
            if nbytes > len(entry.field):
                (at,) = struct.unpack(self.order + ("Q" if self.big else "I"), entry.field)
                if at + nbytes > self.size:
                    return None
            if values is not None and not values.issuperset(self.ints(ifd, tag) or ()):
                return None
            # libtiff warns unless a text's first NUL is its last byte
            if entry.type == _ASCII and (
                nbytes > _MAX_TEXT or self._value_bytes(entry, _MAX_TEXT).find(0) != nbytes - 1
            ):
                return None
        return ifd

    def read_at(self, offset: int, n: int) -> bytes | None:
        """``n`` bytes at ``offset``; None when they are not all inside the file."""
        try:
            return self._read(offset, n)
        except _Malformed:
            return None

    def _value_bytes(self, entry: _Entry, limit: int) -> bytes:
        nbytes = _TYPE_SIZE.get(entry.type, 0) * entry.n
        if nbytes == 0 or nbytes > limit:
            raise _Malformed("unsupported or oversized tag value")
        if nbytes <= len(entry.field):
            return entry.field[:nbytes]
        (offset,) = struct.unpack(self.order + ("Q" if self.big else "I"), entry.field)
        value = self._values.get((offset, nbytes))
        if value is None:
            value = self._values[(offset, nbytes)] = self._read(offset, nbytes)
        return value

    def int_array(self, ifd: dict[int, _Entry], tag: int) -> array.array[int] | None:
        """An unsigned-integer tag as a compact array in native byte order."""
        entry = ifd.get(tag)
        return None if entry is None else self._array(entry)

    def _array(self, entry: _Entry) -> array.array[int]:
        code = _UNSIGNED.get(entry.type)
        if code is None:
            raise _Malformed("tag is not an unsigned integer")
        values = array.array(_ARRAY_CODE[code])
        values.frombytes(self._value_bytes(entry, self.size))
        if values.itemsize > 1 and self.order != _NATIVE:
            values.byteswap()
        return values

    def ints(self, ifd: dict[int, _Entry], tag: int) -> tuple[int, ...] | None:
        """A short unsigned-integer tag as a tuple; decoded once per entry (a first open asks for
        the same scalars from the plain check, the truncation check and the tile index)."""
        entry = ifd.get(tag)
        if entry is None:
            return None
        values = self._ints.get(entry)
        if values is None:
            values = tuple(self._array(entry))
            if len(values) <= _KEPT_INTS:
                self._ints[entry] = values
        return values

    def raw(self, ifd: dict[int, _Entry], tag: int, limit: int) -> bytes | None:
        entry = ifd.get(tag)
        if entry is None:
            return None
        if entry.type not in (1, 7):  # BYTE or UNDEFINED
            raise _Malformed("tag is not a byte string")
        return self._value_bytes(entry, limit)
