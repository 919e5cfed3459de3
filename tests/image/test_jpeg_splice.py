"""JPEG splicing: every stored tile spliced onto its level's header decodes to the pixels
libvips reads from the TIFF; one Adobe marker; the tables' quality; damage is refused.

The reference for every tile is libvips decoding that tile's region from the TIFF. The
passthrough JPEG must decode to exactly the same pixels with Pillow and with libvips: it is the
same DCT data through the same decoder (libjpeg-turbo: Pillow bundles 3.1, pyvips-binary its
own), with the same defaults (islow IDCT, fancy upsampling of 4:2:0 chroma). Measured: every
tile identical, for RGB 4:4:4, YCbCr 4:2:0, grey, pages and SubIFDs, 256 and 512 px tiles.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from array import array
from pathlib import Path

import numpy as np
import pytest

from iiifserver.image.jpeg_splice import ADOBE_RGB, EOI, SOI
from iiifserver.image.passthrough import tile_for
from iiifserver.image.planner import Box
from iiifserver.image.tiff_directory import read_tile_index
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_grid import TileGrid
from tests.image.pyramids import (
    JPEG_PYRAMIDS,
    Pyramid,
    open_fd,
    pillow_pixels,
    raw_tiles,
    tiffload,
    vips_pixels,
)

# -- every whole tile ------------------------------------------------------------------------


@pytest.mark.parametrize("name", JPEG_PYRAMIDS)
def test_every_whole_tile_decodes_to_the_pixels_libvips_reads_from_the_tiff(
    name: str, request: pytest.FixtureRequest
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    info, stored = pyramid.info, pyramid.stored
    assert len(stored.levels) == len(info.levels) > 1
    checked = 0
    with open_fd(pyramid.path) as fd:
        for level, grid in zip(info.levels, stored.levels, strict=True):
            assert grid is not None
            assert (grid.width, grid.height) == (level.width, level.height)
            assert (grid.tile_width, grid.tile_height) == (info.tile_width, info.tile_height)
            source = tiffload(pyramid.path, level)
            tw, th = grid.tile_width, grid.tile_height
            for y in range(0, level.height - th + 1, th):
                for x in range(0, level.width - tw + 1, tw):
                    index = tile_for(grid, Box(x, y, tw, th))
                    assert index == (y // th) * grid.across + x // tw
                    data = read_stored_tile(fd, grid, index)
                    assert data.startswith(grid.header)
                    assert data.endswith(EOI)
                    expected = np.asarray(source.crop(x, y, tw, th).numpy())
                    pillow = pillow_pixels(data)
                    assert pillow.shape == expected.shape
                    assert np.array_equal(pillow, expected), (name, level, x, y)
                    assert np.array_equal(vips_pixels(data), expected), (name, level, x, y)
                    checked += 1
    assert checked >= 3


def test_header_is_soi_adobe_for_rgb_and_the_tables(q90_pages: Pyramid, q85_pages: Pyramid) -> None:
    for pyramid, adobe in ((q90_pages, True), (q85_pages, False)):
        _, tables = raw_tiles(pyramid.path)  # page 0's; libvips writes the same for every level
        for grid in pyramid.stored.levels:
            assert grid is not None
            assert grid.adobe_rgb is adobe
            assert grid.header == SOI + (ADOBE_RGB if adobe else b"") + tables[2:-2]


def test_one_adobe_marker_when_the_tile_has_its_own(q90_pages: Pyramid) -> None:
    """libvips' own JPEG-in-TIFF writer keeps libjpeg's APP14 in every RGB tile: not doubled."""
    grid = q90_pages.stored.levels[0]
    assert grid is not None
    tiles, _ = raw_tiles(q90_pages.path)
    assert tiles[0][2:18] == ADOBE_RGB
    with open_fd(q90_pages.path) as fd:
        data = read_stored_tile(fd, grid, 0)
    assert data.count(b"Adobe") == 1
    assert data.startswith(SOI + ADOBE_RGB)


def test_stored_quality_is_estimated_from_the_tables(
    q90_pages: Pyramid, q85_pages: Pyramid, q95_subifd: Pyramid
) -> None:
    for pyramid, quality in ((q90_pages, 90), (q85_pages, 85), (q95_subifd, 95)):
        assert {grid.quality for grid in pyramid.stored.levels if grid is not None} == {quality}


# -- damage ----------------------------------------------------------------------------------


@pytest.fixture
def damaged(q85_pages: Pyramid, tmp_path: Path) -> tuple[Path, TileGrid]:
    """A private copy of the Q85 pyramid and its level-0 grid, to overwrite bytes in."""
    path = tmp_path / "damaged.tif"
    shutil.copyfile(q85_pages.path, path)
    grid = read_tile_index(path, q85_pages.info.levels).levels[0]
    assert grid is not None
    return path, grid


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def test_tile_overwritten_with_noise_raises(damaged: tuple[Path, TileGrid]) -> None:
    path, grid = damaged
    rng = np.random.default_rng(11)
    _overwrite(path, grid.offsets[5], rng.integers(0, 256, grid.bytecounts[5], dtype=np.uint8).tobytes())
    with open_fd(path) as fd, pytest.raises(ValueError, match="SOI"):
        read_stored_tile(fd, grid, 5)


def test_noise_inside_the_entropy_data_raises(damaged: tuple[Path, TileGrid]) -> None:
    """Random bytes hold a 0xFF every 256 on average; inside entropy-coded data one followed by
    anything but 0x00 or RST0-7 is a stray marker. A few hundred random bytes are caught."""
    path, grid = damaged
    rng = np.random.default_rng(12)
    _overwrite(path, grid.offsets[6] + grid.bytecounts[6] // 2, rng.integers(0, 256, 600, dtype=np.uint8).tobytes())
    with open_fd(path) as fd, pytest.raises(ValueError, match="corrupt entropy-coded data"):
        read_stored_tile(fd, grid, 6)


def test_changed_entropy_bits_are_not_detected(damaged: tuple[Path, TileGrid]) -> None:
    """The limit: bit errors that leave the stream's syntax intact need a decoder to notice.
    The bytes are returned (no ValueError) and decode to other pixels."""
    path, grid = damaged
    with open_fd(path) as fd:
        before = pillow_pixels(read_stored_tile(fd, grid, 7))
    middle = grid.offsets[7] + grid.bytecounts[7] // 2
    original = path.read_bytes()[middle - 1 : middle + 64]
    # Flip the low bit of bytes that are not 0xFE/0xFF or the stuffed 0x00 after a 0xFF.
    flipped = bytes(b ^ 0x01 if b < 0xFE and original[i - 1] != 0xFF else b for i, b in enumerate(original) if i > 0)
    _overwrite(path, middle, flipped)
    with open_fd(path) as fd:
        data = read_stored_tile(fd, grid, 7)
    assert not np.array_equal(pillow_pixels(data), before)


def test_damaged_markers_raise(damaged: tuple[Path, TileGrid], q90_pages: Pyramid, tmp_path: Path) -> None:
    path, grid = damaged
    with open_fd(path) as fd:
        read_stored_tile(fd, grid, 8)
        read_stored_tile(fd, grid, 9)
    _overwrite(path, grid.offsets[8] + grid.bytecounts[8] - 2, b"\x00\x00")  # EOI gone
    _overwrite(path, grid.offsets[9] + 2, b"\xff\xc2")  # SOF0 -> progressive SOF2
    with open_fd(path) as fd:
        with pytest.raises(ValueError, match="EOI"):
            read_stored_tile(fd, grid, 8)
        with pytest.raises(ValueError, match="marker 0xffc2"):
            read_stored_tile(fd, grid, 9)
    # An RGB tile whose APP14 says YCbCr, or that carries JFIF (which means YCbCr to libjpeg).
    rgb_path = tmp_path / "rgb.tif"
    shutil.copyfile(q90_pages.path, rgb_path)
    rgb = q90_pages.stored.levels[0]
    assert rgb is not None
    _overwrite(rgb_path, rgb.offsets[0] + 17, b"\x01")  # the transform byte of the tile's APP14
    _overwrite(rgb_path, rgb.offsets[1] + 2, b"\xff\xe0\x00\x0eJFIF\x00")
    with open_fd(rgb_path) as fd:
        with pytest.raises(ValueError, match="Adobe colour transform 1"):
            read_stored_tile(fd, rgb, 0)
        with pytest.raises(ValueError, match="JFIF"):
            read_stored_tile(fd, rgb, 1)


def test_truncated_file_raises(damaged: tuple[Path, TileGrid]) -> None:
    """The index outlives a file replaced or truncated under it: a short read is refused."""
    path, grid = damaged
    last = max(range(grid.tile_count), key=lambda i: grid.offsets[i])
    os.truncate(path, grid.offsets[last] + grid.bytecounts[last] // 2)
    with open_fd(path) as fd, pytest.raises(ValueError, match="short read"):
        read_stored_tile(fd, grid, last)


def test_implausible_grid_values_raise(damaged: tuple[Path, TileGrid]) -> None:
    path, grid = damaged
    counts = array(grid.bytecounts.typecode, grid.bytecounts)
    counts[0] = 1 << 31
    with open_fd(path) as fd:
        with pytest.raises(ValueError, match="implausible byte count"):
            read_stored_tile(fd, dataclasses.replace(grid, bytecounts=counts), 0)
        with pytest.raises(ValueError, match="not in the grid"):
            read_stored_tile(fd, grid, grid.tile_count)
        with pytest.raises(ValueError, match="not in the grid"):
            read_stored_tile(fd, grid, -1)
        with pytest.raises(ValueError, match="not the tile size"):
            read_stored_tile(fd, dataclasses.replace(grid, tile_width=128), 0)
        with pytest.raises(ValueError, match="components"):
            read_stored_tile(fd, dataclasses.replace(grid, components=1), 0)


def test_may_be_quality_compares_the_luminance_scale() -> None:
    from iiifserver.image.jpeg_splice import _LUMINANCE_SUMS, may_be_quality

    assert may_be_quality(85, 85)
    assert not may_be_quality(85, 80)
    assert not may_be_quality(85, 86)
    assert may_be_quality(0, 85)  # tables of no IJG quality known: only the tables can tell
    assert not may_be_quality(85, 0)
    # Qualities whose scaled tables sum alike cannot be told apart by the sum: both may be.
    sums = _LUMINANCE_SUMS
    ties = [(a, b) for a in range(1, 101) for b in range(a + 1, 101) if sums[a - 1] == sums[b - 1]]
    for a, b in ties:
        assert may_be_quality(a, b)
        assert may_be_quality(b, a)
