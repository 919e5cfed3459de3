"""JPEG splicing: a stored JPEG-in-TIFF tile made into a complete JPEG file, after checking it.

Owns: the JPEG markers; reading a level's JPEGTables (which segments it may hold, the IJG
quality its luminance table matches) into the header its tiles are spliced onto; checking a
stored tile's marker segments and entropy-coded data against its grid; the splice itself.
Must not know: TIFF (the tables and tile bytes are handed in), files, pyvips, plans, HTTP.

A JPEG-in-TIFF tile (TIFF Technical Note 2) is an "abbreviated" JPEG stream: SOI, SOF, SOS,
entropy-coded data, EOI, with the quantisation and Huffman tables held once per level in the
JPEGTables tag (itself SOI, DQT..., DHT..., EOI). A complete JPEG is
``SOI [APP14 Adobe] <tables without SOI/EOI> <tile without SOI>``.
"""

from __future__ import annotations

import re

from iiifserver.image.tile_grid import TileGrid

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# APP14 "Adobe", version 100, flags 0/0, transform 0: "the components are RGB, do not convert".
# libjpeg-family decoders would also take component ids 'R','G','B' as RGB, but a decoder that
# does not check ids (or a writer that numbers RGB components 0,1,2 or 1,2,3) assumes YCbCr
# without it. libjpeg honours it over the ids; JFIF APP0 would override it (JFIF means YCbCr).
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"

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


def tables_header(tables: bytes, *, rgb: bool) -> tuple[bytes, int] | None:
    """The header a level's tiles are spliced onto, and the IJG quality of its tables.

    ``tables`` is the level's JPEGTables tag; ``rgb``: the TIFF says its tiles are RGB (not
    YCbCr), which the header then states with an Adobe marker. None: the tables hold more than
    tables (a JFIF marker, a frame header...), so its tiles cannot be spliced.
    """
    body, luminance = _table_segments(tables)
    if body is None:
        return None
    return SOI + (ADOBE_RGB if rgb else b"") + body, _ijg_quality(luminance)


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


def may_be_quality(tables_quality: int, quality: int) -> bool:
    """Whether tables whose closest IJG quality is ``tables_quality`` (``tables_header``'s; 0:
    unknown) can be libjpeg's at ``quality``: their luminance sums agree. A cheap first test; the
    tables themselves decide."""
    if not 1 <= tables_quality <= 100 or not 1 <= quality <= 100:
        return tables_quality == 0
    return _LUMINANCE_SUMS[tables_quality - 1] == _LUMINANCE_SUMS[quality - 1]


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
