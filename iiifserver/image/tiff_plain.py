"""Plain TIFFs: a file's page facts without libvips, when libvips is known to read it the same way.

Owns: ``plain_tiff``: the facts (``PageFacts``) of every page of the IFD chain and of page 0's
SubIFDs when every directory lists only tags libtiff knows, of the type and count it expects, in
ascending order, each value inside the file; 8 or 16-bit grey or RGB (YCbCr only as JPEG),
chunky, with a codec every libtiff has; tiles libvips accepts. Any doubt is None: libvips opens
the file, and remains the reference (``tests/image/test_probe_plain.py``). Reads through
``tiff_reader``.
Must not know: pyvips, stored tiles, plans, HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iiifserver.image.tiff_reader import (
    ASCII,
    BITS,
    BYTE,
    COMPRESSION,
    COMPRESSION_JPEG,
    EXTRA_SAMPLES,
    HEIGHT,
    ICC,
    IFD,
    IFD8,
    LONG,
    LONG8,
    PHOTOMETRIC,
    PHOTOMETRIC_RGB,
    RATIONAL,
    ROWS_PER_STRIP,
    SAMPLES,
    SHORT,
    STRIP_COUNTS,
    STRIP_OFFSETS,
    SUBIFDS,
    TILE_COUNTS,
    TILE_H,
    TILE_OFFSETS,
    TILE_W,
    TYPE_SIZE,
    UNDEFINED,
    WIDTH,
    Entry,
    Malformed,
    Reader,
    ReadFn,
    file_reader,
)

_MAX_SUBIFDS = 64  # a plain pyramid's SubIFDs; more are left to libvips

# The tags a plain TIFF may hold, each as libtiff reads it without a warning or an error (a message
# means libtiff ignored or guessed something, and libvips then reports what libtiff made of it, or
# fails: fail_on="warning"): tag -> (types, count, values).
# count: n exactly, _PER_SAMPLE (SamplesPerPixel), _ANY (one or more); values: allowed values of
# each item, None: any. Any other tag, type, count or value: not plain, libvips decides.
_PER_SAMPLE, _ANY = -1, 0
_INTS = frozenset({SHORT, LONG})
_CHUNKS = frozenset({SHORT, LONG, LONG8})
# LZW, JPEG, deflate (both codes), PackBits: every libtiff has them. Uncompressed data is not plain:
# libtiff second-guesses its byte counts ("bogus StripByteCounts") by heuristics not repeated here.
_PLAIN_COMPRESSIONS = frozenset({5, COMPRESSION_JPEG, 8, 32946, 32773})
_TEXT: tuple[frozenset[int], int, frozenset[int] | None] = (frozenset({ASCII}), _ANY, None)
_PLAIN_TAGS: dict[int, tuple[frozenset[int], int, frozenset[int] | None]] = {
    254: (_INTS, 1, None),  # NewSubfileType
    255: (frozenset({SHORT}), 1, frozenset({1, 2, 3})),  # SubfileType
    256: (_INTS, 1, None),  # ImageWidth
    257: (_INTS, 1, None),  # ImageLength
    258: (frozenset({SHORT}), _PER_SAMPLE, frozenset({8, 16})),  # BitsPerSample
    259: (frozenset({SHORT}), 1, _PLAIN_COMPRESSIONS),  # Compression
    262: (frozenset({SHORT}), 1, frozenset({1, 2, 6})),  # Photometric: grey, RGB, YCbCr
    269: _TEXT,  # DocumentName
    270: _TEXT,  # ImageDescription
    271: _TEXT,  # Make
    272: _TEXT,  # Model
    273: (_CHUNKS, _ANY, None),  # StripOffsets
    274: (frozenset({SHORT}), 1, frozenset(range(1, 9))),  # Orientation
    277: (frozenset({SHORT}), 1, frozenset({1, 2, 3, 4})),  # SamplesPerPixel
    278: (_INTS, 1, None),  # RowsPerStrip
    279: (_CHUNKS, _ANY, None),  # StripByteCounts
    282: (frozenset({RATIONAL}), 1, None),  # XResolution
    283: (frozenset({RATIONAL}), 1, None),  # YResolution
    284: (frozenset({SHORT}), 1, frozenset({1})),  # PlanarConfiguration: chunky
    285: _TEXT,  # PageName
    286: (frozenset({RATIONAL}), 1, None),  # XPosition
    287: (frozenset({RATIONAL}), 1, None),  # YPosition
    296: (frozenset({SHORT}), 1, frozenset({1, 2, 3})),  # ResolutionUnit
    297: (frozenset({SHORT}), 2, None),  # PageNumber
    305: _TEXT,  # Software
    306: _TEXT,  # DateTime
    315: _TEXT,  # Artist
    316: _TEXT,  # HostComputer
    317: (frozenset({SHORT}), 1, frozenset({1, 2})),  # Predictor: none, horizontal
    322: (_INTS, 1, None),  # TileWidth
    323: (_INTS, 1, None),  # TileLength
    324: (_CHUNKS, _ANY, None),  # TileOffsets
    325: (_CHUNKS, _ANY, None),  # TileByteCounts
    330: (frozenset({LONG, IFD, LONG8, IFD8}), _ANY, None),  # SubIFDs
    338: (frozenset({SHORT}), _ANY, frozenset({0, 1, 2})),  # ExtraSamples
    339: (frozenset({SHORT}), _PER_SAMPLE, frozenset({1})),  # SampleFormat: unsigned
    347: (frozenset({UNDEFINED}), _ANY, None),  # JPEGTables
    530: (frozenset({SHORT}), 2, frozenset({1, 2, 4})),  # YCbCrSubSampling
    531: (frozenset({SHORT}), 1, frozenset({1, 2})),  # YCbCrPositioning
    532: (frozenset({RATIONAL}), 6, None),  # ReferenceBlackWhite
    700: (frozenset({BYTE, UNDEFINED}), _ANY, None),  # XMP
    33432: _TEXT,  # Copyright
    33723: (frozenset({UNDEFINED, LONG, BYTE}), _ANY, None),  # IPTC
    34377: (frozenset({BYTE, UNDEFINED}), _ANY, None),  # Photoshop
    34665: (frozenset({LONG, IFD, IFD8}), 1, None),  # Exif IFD (libvips does not read it)
    34675: (frozenset({UNDEFINED}), _ANY, None),  # ICC profile
}
_MAX_TEXT = 1 << 20  # a longer text tag is read by libvips, not checked here
_MAX_COORD = 10_000_000  # libvips' VIPS_MAX_COORD before 8.16 (100 million since)
_PHOTOMETRIC_GREY, _PHOTOMETRIC_YCBCR = 1, 6
_PLAIN_TYPE_SIZE = TYPE_SIZE | {RATIONAL: 8}


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
    with file_reader(path) as reader:
        return None if reader is None else _plain(reader)


def plain_tiff_from(read: ReadFn, size: int) -> PlainTiff | None:
    """``plain_tiff`` of ``size`` bytes read through ``read(n, offset)``."""
    try:
        return _plain(Reader(read, size))
    except Malformed:
        return None


def _plain(reader: Reader) -> PlainTiff | None:
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
            for sub_offset in reader.ints(reader.ifd(reader.pages[0]), SUBIFDS) or ():
                sub = _plain_page(reader, sub_offset)
                if sub is None:
                    return None
                subifds.append(sub)
        return PlainTiff(tuple(pages), tuple(subifds))
    except Malformed:
        return None


def _plain_page(reader: Reader, offset: int) -> PageFacts | None:
    """One directory's facts when ``plain_ifd`` accepts it and its layout is one libvips reads
    as ``PageFacts`` says; else None. Tag values are already within ``_PLAIN_TAGS``' bounds."""
    ifd = plain_ifd(reader, offset)
    if ifd is None:
        return None

    def scalar(tag: int, default: int) -> int:
        values = reader.ints(ifd, tag)
        return default if values is None else values[0]  # one value: plain_ifd checked the count

    width, height, samples = scalar(WIDTH, 0), scalar(HEIGHT, 0), scalar(SAMPLES, 1)
    photometric, compression = scalar(PHOTOMETRIC, 0), scalar(COMPRESSION, 1)
    bits = reader.ints(ifd, BITS) or (1,)
    extra = reader.ints(ifd, EXTRA_SAMPLES) or ()
    base = 1 if photometric == _PHOTOMETRIC_GREY else 3
    if (
        not width
        or not height
        or photometric not in (_PHOTOMETRIC_GREY, PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR)
        or compression not in _PLAIN_COMPRESSIONS
        or (photometric == _PHOTOMETRIC_YCBCR and (compression != COMPRESSION_JPEG or samples != 3))
        or samples not in (base, base + 1)
        or len(extra) not in (0, samples - base)
        or len(set(bits)) != 1
        or bits[0] not in (8, 16)
        or (compression == COMPRESSION_JPEG and bits[0] != 8)
    ):
        return None
    if max(width, height) >= _MAX_COORD:
        return None
    tile_w, tile_h = scalar(TILE_W, 0), scalar(TILE_H, 0)
    if TILE_W in ifd or TILE_H in ifd:
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
        offsets, counts = TILE_OFFSETS, TILE_COUNTS
        if STRIP_OFFSETS in ifd or STRIP_COUNTS in ifd:
            return None
    else:
        rows = scalar(ROWS_PER_STRIP, 0xFFFFFFFF)
        if not rows:
            return None
        chunks = -(-height // min(rows, height))
        offsets, counts = STRIP_OFFSETS, STRIP_COUNTS
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
        has_icc=ICC in ifd,
        subifds=ifd[SUBIFDS].n if SUBIFDS in ifd else 0,
    )


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
_JPEG_HEAD = 2048  # the first chunk's bytes looked at for its frame header


def _sampling_agrees(reader: Reader, ifd: dict[int, Entry], offsets_tag: int, counts_tag: int) -> bool:
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


def plain_ifd(reader: Reader, offset: int) -> dict[int, Entry] | None:
    """The directory at ``offset`` when every entry is as ``_PLAIN_TAGS`` allows, the tags
    strictly ascending (libtiff warns otherwise), each value inside the file; else None."""
    ifd = reader.ifd(offset)
    if not reader.tags_ascending(offset):
        return None
    samples = reader.ints(ifd, 277) or (1,)
    for tag, entry in ifd.items():
        rule = _PLAIN_TAGS.get(tag)
        if rule is None or entry.type not in rule[0]:
            return None
        _, count, values = rule
        if entry.n < 1 or (count > 0 and entry.n != count) or (count == _PER_SAMPLE and (entry.n,) != samples):
            return None
        nbytes = _PLAIN_TYPE_SIZE[entry.type] * entry.n
        if nbytes > len(entry.field) and reader.value_offset(entry) + nbytes > reader.size:
            return None
        if values is not None and not values.issuperset(reader.ints(ifd, tag) or ()):
            return None
        # libtiff warns unless a text's first NUL is its last byte
        if entry.type == ASCII and (nbytes > _MAX_TEXT or reader.value_bytes(entry, _MAX_TEXT).find(0) != nbytes - 1):
            return None
    return ifd
