"""The stored JPEG tiles of a pyramidal TIFF, and whether its image data ends inside the file.

Owns: deciding per pyramid level whether its stored tiles qualify for passthrough and mosaics (a
``TileGrid``: tiled JPEG, 8-bit, chunky, grey, RGB or YCbCr, with JPEGTables) or not (None), for
the ``Level`` list the probe found (``read_tile_index``); and whether every tile or strip of those
levels ends inside the file (``truncation``: a truncated copy is refused when it is opened).
Reads through ``tiff_reader`` (one parse per file version and thread).
Must not know: pyvips (nothing here decodes pixels), plans, HTTP, caching. Which levels exist is
the probe's business.
"""

from __future__ import annotations

import array
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iiifserver.image.jpeg_splice import tables_header
from iiifserver.image.source_info import Level
from iiifserver.image.tiff_reader import (
    BITS,
    COMPRESSION,
    COMPRESSION_JPEG,
    HEIGHT,
    JPEG_TABLES,
    PHOTOMETRIC,
    PHOTOMETRIC_RGB,
    PLANAR,
    SAMPLE_FORMAT,
    SAMPLES,
    STRIP_COUNTS,
    STRIP_OFFSETS,
    SUBIFDS,
    TILE_COUNTS,
    TILE_H,
    TILE_OFFSETS,
    TILE_W,
    WIDTH,
    Entry,
    Malformed,
    Reader,
    ReadFn,
    file_reader,
)
from iiifserver.image.tile_grid import StoredTiles, TileGrid

_PHOTOMETRIC_COMPONENTS = {1: 1, 2: 3, 6: 3}  # MinIsBlack grey, RGB, YCbCr -> JPEG components
_MAX_TABLES = 1 << 16


def read_tile_index(path: Path, levels: Sequence[Level]) -> StoredTiles:
    """The passthrough grid of each level in ``levels``; reads IFDs and tag arrays only.

    A level that is not tiled JPEG in a supported layout (8-bit, chunky, grey/RGB/YCbCr, with
    JPEGTables), or that the file does not describe as ``levels`` says, is ``None``. A file
    that is not a readable TIFF gives all ``None``. ``OSError`` (file gone, unreadable) propagates.
    """
    with file_reader(path) as reader:
        return _tile_index(reader, levels)


def read_tile_index_from(read: ReadFn, size: int, levels: Sequence[Level]) -> StoredTiles:
    """``read_tile_index`` of ``size`` bytes read through ``read(n, offset)`` (``os.pread``'s order)."""
    try:
        reader = Reader(read, size)
    except Malformed:
        return StoredTiles((None,) * len(levels))
    return _tile_index(reader, levels)


def _tile_index(reader: Reader | None, levels: Sequence[Level]) -> StoredTiles:
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
    with file_reader(path) as reader:
        if reader is None:
            return "the file ends inside its directories (truncated)"
        return _truncation(reader, levels)


def truncation_from(read: ReadFn, size: int, levels: Sequence[Level]) -> str | None:
    """``truncation`` of ``size`` bytes read through ``read(n, offset)``."""
    try:
        reader = Reader(read, size)
    except Malformed:
        return "the file ends inside its directories (truncated)"
    return _truncation(reader, levels)


def _truncation(reader: Reader, levels: Sequence[Level]) -> str | None:
    try:
        for level in levels:
            offset = reader.page_offset(level.page)
            if offset is None:
                return "the file ends before its last pyramid level (truncated)"
            ifd = reader.ifd(offset)
            if level.subifd >= 0:
                subifds = reader.ints(ifd, SUBIFDS)
                if subifds is None or level.subifd >= len(subifds):
                    return "the file ends before its last pyramid level (truncated)"
                ifd = reader.ifd(subifds[level.subifd])
            offsets = reader.int_array(ifd, TILE_OFFSETS) or reader.int_array(ifd, STRIP_OFFSETS)
            counts = reader.int_array(ifd, TILE_COUNTS) or reader.int_array(ifd, STRIP_COUNTS)
            if not offsets or not counts or len(offsets) != len(counts):
                return "a pyramid level lists no image data"
            if _data_end(offsets, counts) > reader.size:
                return "the file ends before its image data (truncated)"
        page = 0
        while reader.page_offset(page) is not None:  # the chain's next link must be in the file too
            page += 1
    except Malformed:
        return "the file ends inside its directories (truncated)"
    return None


def _data_end(offsets: array.array[int], counts: array.array[int]) -> int:
    """Where the last chunk ends (numpy: a Python loop over a big level's tiles costs ~0.2 ms)."""
    starts, lengths = np.asarray(offsets, dtype=np.uint64), np.asarray(counts, dtype=np.uint64)
    # Either past 2**63 would wrap the sum: the file is far shorter, so say where it starts.
    return int(max(starts.max(), lengths.max(), (starts + lengths).max())) if len(starts) else 0


def _level_grid(reader: Reader, level: Level) -> TileGrid | None:
    try:
        offset = reader.page_offset(level.page)
        if offset is None:
            return None
        if level.subifd >= 0:
            subifds = reader.ints(reader.ifd(offset), SUBIFDS)
            if subifds is None or level.subifd >= len(subifds):
                return None
            offset = subifds[level.subifd]
        return _grid(reader, reader.ifd(offset), level)
    except Malformed:
        return None


def _grid(reader: Reader, ifd: dict[int, Entry], level: Level) -> TileGrid | None:
    def scalar(tag: int, default: int | None = None) -> int | None:
        values = reader.ints(ifd, tag)
        return default if values is None or len(values) != 1 else values[0]

    width, height = scalar(WIDTH), scalar(HEIGHT)
    if (width, height) != (level.width, level.height):
        return None  # not the image the probe saw there: never serve from it
    photometric = scalar(PHOTOMETRIC)
    components = _PHOTOMETRIC_COMPONENTS.get(photometric or -1)
    tile_w, tile_h = scalar(TILE_W), scalar(TILE_H)
    bits = reader.ints(ifd, BITS) or (1,)
    sample_format = reader.ints(ifd, SAMPLE_FORMAT) or (1,)
    if (
        scalar(COMPRESSION) != COMPRESSION_JPEG
        or components is None
        or scalar(SAMPLES, 1) != components  # extra samples (alpha) or CMYK
        or scalar(PLANAR, 1) != 1  # planar: one JPEG stream per component
        or any(b != 8 for b in bits)
        or any(f != 1 for f in sample_format)
        or not tile_w
        or not tile_h
    ):
        return None
    across = -(-level.width // tile_w)
    down = -(-level.height // tile_h)
    offsets = reader.int_array(ifd, TILE_OFFSETS)
    counts = reader.int_array(ifd, TILE_COUNTS)
    tables = reader.raw(ifd, JPEG_TABLES, _MAX_TABLES)
    if offsets is None or counts is None or len(offsets) != across * down or len(counts) != len(offsets):
        return None
    if tables is None:
        return None  # tiles might carry their own tables; no writer we serve does that
    adobe_rgb = photometric == PHOTOMETRIC_RGB
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
