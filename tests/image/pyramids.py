"""JPEG pyramids for the stored-tile tests, and the helpers that read them another way.

The pyramids are written by libvips (as production sources are) from the conftest picture;
a few layouts libvips does not write (big-endian, tiles without their own APP14, RGB component
ids 0,1,2, unsupported layouts) are built with tifffile from libvips' tile bytes. The
fixtures (conftest.py) are session-scoped: four test modules share them.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyvips
import tifffile
from PIL import Image

from iiifserver.config import Limits
from iiifserver.image.planner import Box, Plan, plan, resolve
from iiifserver.image.probe import probe
from iiifserver.image.request import parse_image_request
from iiifserver.image.source_info import Level, SourceInfo, SourceVersion
from iiifserver.image.tiff_directory import read_tile_index
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_grid import StoredTiles, TileGrid

LIMITS = Limits(max_width=10_000, max_height=10_000, max_area=25_000_000)


@dataclass(frozen=True, slots=True)
class Pyramid:
    path: Path
    info: SourceInfo
    stored: StoredTiles


def pyramid_of(path: Path) -> Pyramid:
    info = probe(path, plain_max_pixels=40_000_000, max_source_pixels=4_000_000_000)
    return Pyramid(path, info, read_tile_index(path, info.levels))


def jpeg_pyramid(image: pyvips.Image, path: Path, *, tile: int = 256, **options: object) -> Pyramid:
    image.tiffsave(str(path), tile=True, tile_width=tile, tile_height=tile, pyramid=True, compression="jpeg", **options)
    return pyramid_of(path)


@contextmanager
def open_fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def stored_tiles(pyramid: Pyramid, count: int, level: int = 0) -> list[bytes]:
    """The first ``count`` stored tiles of a level, each as a complete JPEG (tables spliced in)."""
    grid = pyramid.stored.levels[level]
    assert grid is not None
    with open_fd(pyramid.path) as fd:
        return [read_stored_tile(fd, grid, i) for i in range(count)]


def damaged_copies(data: bytes, count: int, seed: int, max_changes: int = 20) -> Iterator[bytes]:
    """``count`` copies of ``data`` with 1 to ``max_changes`` random bytes changed past its first two,
    three in ten of them also cut short: what a damaged copy of a file may hold."""
    rng = random.Random(seed)
    for _ in range(count):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, max_changes)):
            damaged[rng.randrange(2, len(damaged))] = rng.randrange(256)
        if rng.random() < 0.3:
            damaged = damaged[: rng.randrange(2, len(damaged))]
        yield bytes(damaged)


def tiffload(path: Path, level: Level) -> pyvips.Image:
    options: dict[str, object] = {"page": level.page, "access": "random", "fail_on": "warning"}
    if level.subifd >= 0:
        options["subifd"] = level.subifd
    return pyvips.Image.tiffload(str(path), **options)


def pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image)


def assert_damage_reported_alike(path: Path, pyramid: Pyramid, plan: Plan, grid: TileGrid | None) -> None:
    """``plan`` rendered from ``path`` with the stored tiles' ``grid`` and without it (libvips'
    decode): both ``SourceDamaged``, or the same pixels. Damaged tiles never show."""
    from iiifserver.errors import SourceDamaged
    from iiifserver.image.render import EncodeOptions, render

    version = SourceVersion.of(path.stat())
    outcomes: list[np.ndarray | None] = []
    for stored in (grid, None):
        try:
            body = render(path, pyramid.info.format, plan, EncodeOptions(jpeg_quality=85), version, stored)
            with Image.open(io.BytesIO(body)) as image:
                outcomes.append(np.asarray(image))
        except SourceDamaged:
            outcomes.append(None)
    if outcomes[1] is None:
        assert outcomes[0] is None
    else:
        assert outcomes[0] is not None
        assert np.array_equal(outcomes[0], outcomes[1])


def decoded16(body: bytes) -> np.ndarray:
    """A response's pixels (rows x columns [x bands]) as int16, ready for differences."""
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image).astype(np.int16)


def level_grid_of(pyramid: Pyramid, plan: Plan) -> TileGrid:
    """The stored-tile grid of ``plan``'s level, as the source registry hands it to the renderer."""
    from iiifserver.image.passthrough import level_grid

    grid = level_grid(pyramid.stored, pyramid.info.levels, plan.level)
    assert grid is not None
    return grid


def noisy_first_tile_copy(pyramid: Pyramid, folder: Path) -> Path:
    """A copy of ``pyramid`` whose first stored tile of level 0 has half its bytes replaced by
    noise from a third of the way in: libjpeg fails or warns on it."""
    path = folder / "damaged.tif"
    shutil.copyfile(pyramid.path, path)
    grid = pyramid.stored.levels[0]
    assert grid is not None
    offset, count = grid.offsets[0], grid.bytecounts[0]
    with path.open("r+b") as fh:
        fh.seek(offset + count // 3)
        fh.write(np.random.default_rng(3).integers(0, 255, count // 2, dtype=np.uint8).tobytes())
    return path


def errors_against_source(new: np.ndarray, old: np.ndarray, source: np.ndarray, slack: float) -> tuple[float, float]:
    """Mean errors of two outputs of one request against the stored picture itself (``source``,
    shaped as ``new``); asserts ``new`` is no further off than ``old`` plus ``slack`` of it (and
    0.01 level: two identical quantisations may round apart)."""
    error_new, error_old = float(np.abs(new - source).mean()), float(np.abs(old - source).mean())
    assert error_new <= error_old * (1 + slack) + 0.01, (error_new, error_old)
    return error_new, error_old


def vips_pixels(data: bytes) -> np.ndarray:
    # fail_on="warning": a stream libjpeg has anything to say about (extraneous bytes, ...) fails
    return np.asarray(pyvips.Image.jpegload_buffer(data, fail_on="warning").numpy())


def layout(path: Path) -> tuple[int, tuple[int, ...]]:
    """Photometric of page 0 and the sampling factors its first tile's SOF declares."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        photometric = int(page.photometric)
    tiles, _ = raw_tiles(path)
    for marker, pos in segments(tiles[0]):
        if marker == 0xC0:
            count = tiles[0][pos + 9]
            return photometric, tuple(tiles[0][pos + 11 + 3 * k] for k in range(count))
    raise AssertionError("no SOF0")


JPEG_PYRAMIDS = ["q90_pages", "q85_pages", "grey_pages", "q85_subifd", "q95_subifd", "odd_512", "odd_256", "bigtiff"]


def raw_tiles(path: Path) -> tuple[list[bytes], bytes]:
    """The raw stored tiles of page 0 and its JPEGTables."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
        assert page.jpegtables is not None
        tables = bytes(page.jpegtables)
    data = path.read_bytes()
    return [data[offset : offset + count] for offset, count in spans], tables


def write_tiled(
    path: Path,
    tiles: list[bytes],
    shape: tuple[int, ...],
    *,
    compression: int = 7,
    tables: bytes | None = None,
    **options: Any,
) -> Path:
    """A one-level tiled TIFF holding ``tiles`` as they are, with the Compression tag ``compression``.

    tifffile writes pre-compressed tiles only through a codec it has, so it is told "zlib" and
    the tag is patched afterwards; the tile bytes are never touched.
    """
    writer_options = {key: options.pop(key) for key in ("bigtiff", "byteorder") if key in options}
    extratags = [(347, 7, len(tables), tables, True)] if tables else []
    with tifffile.TiffWriter(path, **writer_options) as tif:
        tif.write(
            iter(tiles),
            shape=shape,
            dtype=options.pop("dtype", "uint8"),
            tile=(256, 256),
            compression="zlib",
            extratags=extratags,
            **options,
        )
    with tifffile.TiffFile(path) as tif:
        where = tif.pages.first.tags["Compression"].valueoffset
        order: Literal["little", "big"] = "little" if tif.byteorder == "<" else "big"
    with path.open("r+b") as fh:
        fh.seek(where)
        fh.write(compression.to_bytes(2, order))
    return path


def segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, position) of each marker segment of a JPEG stream, up to and including SOS."""
    pos = 2
    while True:
        marker = data[pos + 1]
        yield marker, pos
        if marker == 0xDA:
            return
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")


def without_app14(tile: bytes) -> bytes:
    """The tile as libtiff writes it (libtiff suppresses libjpeg's Adobe marker)."""
    assert tile[2:4] == b"\xff\xee"
    return tile[:2] + tile[4 + int.from_bytes(tile[4:6], "big") :]


def plan_for(pyramid: Pyramid, url: str) -> Plan:
    region, size, rotation, quality_format = url.split("/")
    resolved = resolve(parse_image_request(region, size, rotation, quality_format), pyramid.info, LIMITS)
    return plan(resolved, pyramid.info)


def version_of(path: Path) -> SourceVersion:
    st = os.stat(path)
    return SourceVersion.of(st)


def first_whole_tile(pyramid: Pyramid) -> tuple[TileGrid, int]:
    grid = pyramid.stored.levels[0]
    assert grid is not None
    return grid, 0


def edge_crop(pyramid: Pyramid, level_index: int, index: int) -> tuple[Box, TileGrid]:
    grid = pyramid.stored.levels[level_index]
    assert grid is not None
    col, row = index % grid.across, index // grid.across
    x, y = col * grid.tile_width, row * grid.tile_height
    return Box(x, y, min(grid.tile_width, grid.width - x), min(grid.tile_height, grid.height - y)), grid


def vips_region(pyramid: Pyramid, level_index: int, crop: Box) -> np.ndarray:
    level = pyramid.info.levels[level_index]
    region = tiffload(pyramid.path, level).crop(crop.x, crop.y, crop.w, crop.h)
    return np.asarray(region.numpy())


def osd_urls(pyramid: Pyramid) -> Iterator[tuple[int, str]]:
    """(level index, URL) of every tile OpenSeadragon asks for (implementation note 3: ceil)."""
    width, height, tile = pyramid.info.width, pyramid.info.height, pyramid.info.tile_width
    for level_index in range(len(pyramid.info.levels)):
        scale = 2**level_index
        for row in range(-(-height // (tile * scale))):
            for col in range(-(-width // (tile * scale))):
                x, y = col * tile * scale, row * tile * scale
                w, h = min(tile * scale, width - x), min(tile * scale, height - y)
                yield level_index, f"{x},{y},{w},{h}/{-(-w // scale)},{-(-h // scale)}/0/default.jpg"
