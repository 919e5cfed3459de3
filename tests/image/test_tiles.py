"""Stored-tile passthrough: index, tile lookup, spliced JPEGs, refusals and damage.

The pyramids are written by libvips (as production sources are) from the conftest picture;
a few layouts libvips does not write (big-endian, tiles without their own APP14, RGB component
ids 0,1,2, unsupported layouts) are built with tifffile from libvips' tile bytes.

The reference for every tile is libvips decoding that tile's region from the TIFF. The
passthrough JPEG must decode to exactly the same pixels with Pillow and with libvips: it is the
same DCT data through the same decoder (libjpeg-turbo: Pillow bundles 3.1, pyvips-binary its
own), with the same defaults (islow IDCT, fancy upsampling of 4:2:0 chroma). Measured: every
tile identical, for RGB 4:4:4, YCbCr 4:2:0, grey, pages and SubIFDs, 256 and 512 px tiles.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import pyvips
import tifffile
from PIL import Image

from iiifserver.errors import SourceChanged
from iiifserver.image import tile_codec
from iiifserver.image.planner import Box, Limits, Plan, plan, resolve
from iiifserver.image.probe import probe
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.request import Format, Quality, parse_image_request
from iiifserver.image.source_info import Colour, Level, SourceInfo, SourceVersion
from iiifserver.image.tile_codec import available as lossless_crop_available
from iiifserver.image.tile_codec import lossless_crop
from iiifserver.image.tiles import (
    ADOBE_RGB,
    EOI,
    SOI,
    StoredTiles,
    TileFiles,
    TileGrid,
    edge_tile_for,
    open_and_read,
    passthrough_tile,
    read_stored_tile,
    read_stored_tile_nowait,
    read_tile_index,
    stored_tile_for,
    tile_for,
)
from tests.image.conftest import FULL_H, FULL_W, Sample

LIMITS = Limits(max_width=10_000, max_height=10_000, max_area=25_000_000)


@dataclass(frozen=True, slots=True)
class Pyramid:
    path: Path
    info: SourceInfo
    stored: StoredTiles


def _pyramid(path: Path) -> Pyramid:
    info = probe(path, plain_max_pixels=40_000_000, max_source_pixels=4_000_000_000)
    return Pyramid(path, info, read_tile_index(path, info.levels))


def _jpeg_pyramid(image: pyvips.Image, path: Path, *, tile: int = 256, **options: object) -> Pyramid:
    image.tiffsave(str(path), tile=True, tile_width=tile, tile_height=tile, pyramid=True, compression="jpeg", **options)
    return _pyramid(path)


@contextmanager
def _fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _tiffload(path: Path, level: Level) -> pyvips.Image:
    options: dict[str, object] = {"page": level.page, "access": "random", "fail_on": "warning"}
    if level.subifd >= 0:
        options["subifd"] = level.subifd
    return pyvips.Image.tiffload(str(path), **options)


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image)


def _vips(data: bytes) -> np.ndarray:
    # fail_on="warning": a stream libjpeg has anything to say about (extraneous bytes, ...) fails
    return np.asarray(pyvips.Image.jpegload_buffer(data, fail_on="warning").numpy())


def _layout(path: Path) -> tuple[int, tuple[int, ...]]:
    """Photometric of page 0 and the sampling factors its first tile's SOF declares."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        photometric = int(page.photometric)
    tiles, _ = _stored_tiles(path)
    for marker, pos in _segments(tiles[0]):
        if marker == 0xC0:
            count = tiles[0][pos + 9]
            return photometric, tuple(tiles[0][pos + 11 + 3 * k] for k in range(count))
    raise AssertionError("no SOF0")


# -- sources ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiles")


@pytest.fixture(scope="module")
def full_rgb(base_rgb: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb[:FULL_H, :FULL_W])).copy(interpretation="srgb")


@pytest.fixture(scope="module")
def q90_pages(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    """3000x2000, Q90: libvips stores RGB 4:4:4 tiles (Photometric RGB), each with its own APP14."""
    pyramid = _jpeg_pyramid(full_rgb, work_dir / "q90.tif", Q=90)
    assert _layout(pyramid.path) == (2, (0x11, 0x11, 0x11))  # RGB 4:4:4
    return pyramid


@pytest.fixture(scope="module")
def q85_pages(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    """3000x2000, Q85: YCbCr 4:2:0 tiles."""
    pyramid = _jpeg_pyramid(full_rgb, work_dir / "q85.tif", Q=85)
    assert _layout(pyramid.path) == (6, (0x22, 0x11, 0x11))  # YCbCr 4:2:0
    return pyramid


@pytest.fixture(scope="module")
def grey_pages(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    pyramid = _jpeg_pyramid(full_rgb.colourspace("b-w"), work_dir / "grey.tif", Q=85)
    assert _layout(pyramid.path) == (1, (0x11,))
    return pyramid


@pytest.fixture(scope="module")
def q85_subifd(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    return _jpeg_pyramid(full_rgb, work_dir / "q85_subifd.tif", Q=85, subifd=True)


@pytest.fixture(scope="module")
def q95_subifd(rgb_subifd_jpeg: Sample) -> Pyramid:
    """conftest's SubIFD pyramid: JPEG Q95, RGB."""
    return _pyramid(rgb_subifd_jpeg.path)


@pytest.fixture(scope="module")
def odd_512(work_dir: Path, base_rgb: np.ndarray) -> Pyramid:
    """3001x2001 (no level a multiple of the tile size) in 512 px tiles."""
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb)).copy(interpretation="srgb")
    return _jpeg_pyramid(image, work_dir / "odd_512.tif", tile=512, Q=85)


@pytest.fixture(scope="module")
def odd_256(work_dir: Path, base_rgb: np.ndarray) -> Pyramid:
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb[:1301, :1777])).copy(interpretation="srgb")
    return _jpeg_pyramid(image, work_dir / "odd_256.tif", Q=90)


@pytest.fixture(scope="module")
def odd_64(work_dir: Path, base_rgb: np.ndarray) -> Pyramid:
    """1279x1023 in 64 px tiles: each halving floors off nearly a pixel (1279 = 8 * 159 + 7)."""
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb[:1023, :1279])).copy(interpretation="srgb")
    return _jpeg_pyramid(image, work_dir / "odd_64.tif", tile=64, Q=85)


@pytest.fixture(scope="module")
def bigtiff(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    return _jpeg_pyramid(full_rgb.crop(0, 0, 1600, 1200), work_dir / "bigtiff.tif", Q=85, bigtiff=True)


JPEG_PYRAMIDS = ["q90_pages", "q85_pages", "grey_pages", "q85_subifd", "q95_subifd", "odd_512", "odd_256", "bigtiff"]


def _stored_tiles(path: Path) -> tuple[list[bytes], bytes]:
    """The raw stored tiles of page 0 and its JPEGTables."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
        assert page.jpegtables is not None
        tables = bytes(page.jpegtables)
    data = path.read_bytes()
    return [data[offset : offset + count] for offset, count in spans], tables


def _write_tiled(
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


def _segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, position) of each marker segment of a JPEG stream, up to and including SOS."""
    pos = 2
    while True:
        marker = data[pos + 1]
        yield marker, pos
        if marker == 0xDA:
            return
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")


def _without_app14(tile: bytes) -> bytes:
    """The tile as libtiff writes it (libtiff suppresses libjpeg's Adobe marker)."""
    assert tile[2:4] == b"\xff\xee"
    return tile[:2] + tile[4 + int.from_bytes(tile[4:6], "big") :]


# -- every whole tile ------------------------------------------------------------------------


@pytest.mark.parametrize("name", JPEG_PYRAMIDS)
def test_every_whole_tile_decodes_to_the_pixels_libvips_reads_from_the_tiff(
    name: str, request: pytest.FixtureRequest
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    info, stored = pyramid.info, pyramid.stored
    assert len(stored.levels) == len(info.levels) > 1
    checked = 0
    with _fd(pyramid.path) as fd:
        for level, grid in zip(info.levels, stored.levels, strict=True):
            assert grid is not None
            assert (grid.width, grid.height) == (level.width, level.height)
            assert (grid.tile_width, grid.tile_height) == (info.tile_width, info.tile_height)
            source = _tiffload(pyramid.path, level)
            tw, th = grid.tile_width, grid.tile_height
            for y in range(0, level.height - th + 1, th):
                for x in range(0, level.width - tw + 1, tw):
                    index = tile_for(grid, Box(x, y, tw, th))
                    assert index == (y // th) * grid.across + x // tw
                    data = read_stored_tile(fd, grid, index)
                    assert data.startswith(grid.header)
                    assert data.endswith(EOI)
                    expected = np.asarray(source.crop(x, y, tw, th).numpy())
                    pillow = _pillow(data)
                    assert pillow.shape == expected.shape
                    assert np.array_equal(pillow, expected), (name, level, x, y)
                    assert np.array_equal(_vips(data), expected), (name, level, x, y)
                    checked += 1
    assert checked >= 3


def test_header_is_soi_adobe_for_rgb_and_the_tables(q90_pages: Pyramid, q85_pages: Pyramid) -> None:
    for pyramid, adobe in ((q90_pages, True), (q85_pages, False)):
        _, tables = _stored_tiles(pyramid.path)  # page 0's; libvips writes the same for every level
        for grid in pyramid.stored.levels:
            assert grid is not None
            assert grid.adobe_rgb is adobe
            assert grid.header == SOI + (ADOBE_RGB if adobe else b"") + tables[2:-2]


def test_one_adobe_marker_when_the_tile_has_its_own(q90_pages: Pyramid) -> None:
    """libvips' own JPEG-in-TIFF writer keeps libjpeg's APP14 in every RGB tile: not doubled."""
    grid = q90_pages.stored.levels[0]
    assert grid is not None
    tiles, _ = _stored_tiles(q90_pages.path)
    assert tiles[0][2:18] == ADOBE_RGB
    with _fd(q90_pages.path) as fd:
        data = read_stored_tile(fd, grid, 0)
    assert data.count(b"Adobe") == 1
    assert data.startswith(SOI + ADOBE_RGB)


def test_stored_quality_is_estimated_from_the_tables(
    q90_pages: Pyramid, q85_pages: Pyramid, q95_subifd: Pyramid
) -> None:
    for pyramid, quality in ((q90_pages, 90), (q85_pages, 85), (q95_subifd, 95)):
        assert {grid.quality for grid in pyramid.stored.levels if grid is not None} == {quality}


# -- layouts libvips does not write ----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"byteorder": ">"}, {"bigtiff": True, "byteorder": ">"}],
    ids=["little-endian", "big-endian", "bigtiff-big-endian"],
)
def test_tiles_without_their_own_app14_get_the_header_one(
    options: dict[str, Any], q90_pages: Pyramid, work_dir: Path
) -> None:
    """libtiff-written RGB tiles have no APP14: the header supplies it; the pixels are the same."""
    level = q90_pages.info.levels[0]
    tiles, tables = _stored_tiles(q90_pages.path)
    name = "no_app14_" + "_".join(f"{k}{v}" for k, v in options.items()) + ".tif"
    path = _write_tiled(
        work_dir / name,
        [_without_app14(tile) for tile in tiles],
        (level.height, level.width, 3),
        tables=tables,
        photometric="rgb",
        **options,
    )
    grid = read_tile_index(path, [level]).levels[0]
    reference = q90_pages.stored.levels[0]
    assert grid is not None
    assert reference is not None
    assert list(grid.offsets) != list(reference.offsets)  # a different file layout ...
    assert list(grid.bytecounts) == [count - 16 for count in reference.bytecounts]  # ... of the same tiles
    source = _tiffload(q90_pages.path, level)
    with _fd(path) as fd:
        for index in (0, grid.across + 1, grid.tile_count - grid.across - 2):
            data = read_stored_tile(fd, grid, index)
            assert data.count(b"Adobe") == 1
            x, y = (index % grid.across) * 256, (index // grid.across) * 256
            expected = np.asarray(source.crop(x, y, 256, 256).numpy())
            assert np.array_equal(_pillow(data), expected)
            assert np.array_equal(_vips(data), expected)


def test_adobe_marker_is_what_makes_rgb_tiles_rgb_for_other_component_ids(q90_pages: Pyramid) -> None:
    """Evidence for the APP14. libjpeg takes component ids 'R','G','B' (82, 71, 66), as libjpeg
    writes them, for RGB even without a marker; ids 1,2,3 (or unknown ones) it takes for YCbCr
    and converts the colours. The header's APP14 transform=0 says RGB whatever the ids are.
    """
    grid = q90_pages.stored.levels[0]
    assert grid is not None
    with _fd(q90_pages.path) as fd:
        data = read_stored_tile(fd, grid, 0)
    expected = _pillow(data)
    without_marker = data.replace(ADOBE_RGB, b"", 1)
    assert np.array_equal(_pillow(without_marker), expected)  # ids R,G,B suffice for libjpeg
    renumbered = bytearray(without_marker)
    for marker, pos in _segments(without_marker):
        if marker == 0xC0:  # SOF0: P, Y, X, Nf, then (id, sampling, table) per component
            renumbered[pos + 10], renumbered[pos + 13], renumbered[pos + 16] = 1, 2, 3
        elif marker == 0xDA:  # SOS: Ns, then (id, tables) per component
            renumbered[pos + 5], renumbered[pos + 7], renumbered[pos + 9] = 1, 2, 3
    assert renumbered != without_marker
    as_ycbcr = _pillow(bytes(renumbered))
    assert np.abs(as_ycbcr.astype(int) - expected).mean() > 20  # decoded as YCbCr: wrong colours
    with_marker = bytes(renumbered[:2]) + ADOBE_RGB + bytes(renumbered[2:])
    assert np.array_equal(_pillow(with_marker), expected)
    assert np.array_equal(_vips(with_marker), expected)


# -- which crops are a stored tile -----------------------------------------------------------


@pytest.mark.parametrize("name", ["q85_pages", "odd_512", "odd_256"])
def test_edge_tiles_are_not_served(name: str, request: pytest.FixtureRequest) -> None:
    """Edge tiles are stored padded to the full tile size: their crops are smaller, never passed."""
    pyramid: Pyramid = request.getfixturevalue(name)
    edges = 0
    for grid in pyramid.stored.levels:
        assert grid is not None
        tw, th = grid.tile_width, grid.tile_height
        for y in range(0, grid.height, th):
            for x in range(0, grid.width, tw):
                crop = Box(x, y, min(tw, grid.width - x), min(th, grid.height - y))
                whole = crop.w == tw and crop.h == th
                assert (tile_for(grid, crop) is not None) is whole
                if not whole:
                    edges += 1
                    assert tile_for(grid, Box(x, y, tw, th)) is None  # the padded tile, beyond the edge
    assert edges > 0


def test_crops_off_the_grid_are_not_served(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    assert tile_for(grid, Box(256, 512, 256, 256)) == 2 * grid.across + 1
    for crop in (
        Box(1, 0, 256, 256),
        Box(0, 128, 256, 256),
        Box(0, 0, 255, 256),
        Box(0, 0, 256, 257),
        Box(0, 0, 512, 512),
        Box(0, 0, 128, 128),
        Box(-256, 0, 256, 256),
        Box(0, -256, 256, 256),
        Box(2816, 0, 256, 256),  # beyond 3000 px
    ):
        assert tile_for(grid, crop) is None, crop


# -- refusals --------------------------------------------------------------------------------


def test_lossless_and_untiled_sources_have_no_stored_tiles(
    rgb_pages: Sample, tiled_single: Sample, strip_tiff: Sample, gray_pyramid: Sample
) -> None:
    for sample in (rgb_pages, tiled_single, strip_tiff, gray_pyramid):
        pyramid = _pyramid(sample.path)
        assert pyramid.stored.levels == (None,) * len(pyramid.info.levels)
        assert not pyramid.stored.has_passthrough


def test_non_tiff_and_empty_files_have_no_stored_tiles(plain_jpeg: Sample, empty_file: Sample) -> None:
    assert read_tile_index(plain_jpeg.path, [Level(800, 600)]).levels == (None,)
    assert read_tile_index(empty_file.path, [Level(1, 1), Level(1, 1)]).levels == (None, None)
    with pytest.raises(FileNotFoundError):
        read_tile_index(empty_file.path.with_name("missing.tif"), [Level(1, 1)])


def test_levels_the_file_does_not_describe_are_none(q85_pages: Pyramid, q85_subifd: Pyramid) -> None:
    level0 = q85_pages.info.levels[0]
    assert read_tile_index(q85_pages.path, [level0]).levels[0] is not None
    for level in (
        Level(level0.width + 1, level0.height),  # not the size the probe saw
        Level(level0.width, level0.height, page=99),
        Level(level0.width, level0.height, page=0, subifd=0),  # a pages pyramid has no SubIFDs
    ):
        assert read_tile_index(q85_pages.path, [level]).levels == (None,)
    sub = q85_subifd.info.levels
    assert read_tile_index(q85_subifd.path, [Level(sub[1].width, sub[1].height, page=0, subifd=7)]).levels == (None,)


@pytest.mark.parametrize(
    ("case", "shape", "options"),
    [
        ("old-style JPEG (6)", (512, 512, 3), {"compression": 6, "photometric": "rgb"}),
        ("no JPEGTables", (512, 512, 3), {"tables": None, "photometric": "rgb"}),
        ("planar", (3, 512, 512), {"photometric": "rgb", "planarconfig": "separate"}),
        ("16-bit", (512, 512, 3), {"photometric": "rgb", "dtype": "uint16"}),
        ("CMYK", (512, 512, 4), {"photometric": "separated"}),
        ("RGBA", (512, 512, 4), {"photometric": "rgb", "extrasamples": [2]}),
        ("MinIsWhite", (512, 512), {"photometric": "miniswhite"}),
        ("deflate", (512, 512, 3), {"compression": 8, "photometric": "rgb"}),
    ],
)
def test_unsupported_layouts_are_none(
    case: str, shape: tuple[int, ...], options: dict[str, Any], q85_pages: Pyramid, work_dir: Path
) -> None:
    tiles, tables = _stored_tiles(q85_pages.path)  # the index never reads tile data
    kwargs: dict[str, Any] = {"tables": tables, **options}
    n = 3 * 4 if "planarconfig" in options else 4
    path = _write_tiled(work_dir / f"layout_{case.split()[0]}.tif", tiles[:n], shape, **kwargs)
    assert read_tile_index(path, [Level(512, 512)]).levels == (None,)
    control = _write_tiled(work_dir / "layout_ok.tif", tiles[:4], (512, 512, 3), tables=tables, photometric="ycbcr")
    assert read_tile_index(control, [Level(512, 512)]).levels[0] is not None


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
    with _fd(path) as fd, pytest.raises(ValueError, match="SOI"):
        read_stored_tile(fd, grid, 5)


def test_noise_inside_the_entropy_data_raises(damaged: tuple[Path, TileGrid]) -> None:
    """Random bytes hold a 0xFF every 256 on average; inside entropy-coded data one followed by
    anything but 0x00 or RST0-7 is a stray marker. A few hundred random bytes are caught."""
    path, grid = damaged
    rng = np.random.default_rng(12)
    _overwrite(path, grid.offsets[6] + grid.bytecounts[6] // 2, rng.integers(0, 256, 600, dtype=np.uint8).tobytes())
    with _fd(path) as fd, pytest.raises(ValueError, match="corrupt entropy-coded data"):
        read_stored_tile(fd, grid, 6)


def test_changed_entropy_bits_are_not_detected(damaged: tuple[Path, TileGrid]) -> None:
    """The limit: bit errors that leave the stream's syntax intact need a decoder to notice.
    The bytes are returned (no ValueError) and decode to other pixels."""
    path, grid = damaged
    with _fd(path) as fd:
        before = _pillow(read_stored_tile(fd, grid, 7))
    middle = grid.offsets[7] + grid.bytecounts[7] // 2
    original = path.read_bytes()[middle - 1 : middle + 64]
    # Flip the low bit of bytes that are not 0xFE/0xFF or the stuffed 0x00 after a 0xFF.
    flipped = bytes(b ^ 0x01 if b < 0xFE and original[i - 1] != 0xFF else b for i, b in enumerate(original) if i > 0)
    _overwrite(path, middle, flipped)
    with _fd(path) as fd:
        data = read_stored_tile(fd, grid, 7)
    assert not np.array_equal(_pillow(data), before)


def test_damaged_markers_raise(damaged: tuple[Path, TileGrid], q90_pages: Pyramid, tmp_path: Path) -> None:
    path, grid = damaged
    with _fd(path) as fd:
        read_stored_tile(fd, grid, 8)
        read_stored_tile(fd, grid, 9)
    _overwrite(path, grid.offsets[8] + grid.bytecounts[8] - 2, b"\x00\x00")  # EOI gone
    _overwrite(path, grid.offsets[9] + 2, b"\xff\xc2")  # SOF0 -> progressive SOF2
    with _fd(path) as fd:
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
    with _fd(rgb_path) as fd:
        with pytest.raises(ValueError, match="Adobe colour transform 1"):
            read_stored_tile(fd, rgb, 0)
        with pytest.raises(ValueError, match="JFIF"):
            read_stored_tile(fd, rgb, 1)


def test_truncated_file_raises(damaged: tuple[Path, TileGrid]) -> None:
    """The index outlives a file replaced or truncated under it: a short read is refused."""
    path, grid = damaged
    last = max(range(grid.tile_count), key=lambda i: grid.offsets[i])
    os.truncate(path, grid.offsets[last] + grid.bytecounts[last] // 2)
    with _fd(path) as fd, pytest.raises(ValueError, match="short read"):
        read_stored_tile(fd, grid, last)


def test_implausible_grid_values_raise(damaged: tuple[Path, TileGrid]) -> None:
    path, grid = damaged
    counts = array(grid.bytecounts.typecode, grid.bytecounts)
    counts[0] = 1 << 31
    with _fd(path) as fd:
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


# -- which plans qualify ---------------------------------------------------------------------


def _plan(pyramid: Pyramid, url: str) -> Plan:
    region, size, rotation, quality_format = url.split("/")
    resolved = resolve(parse_image_request(region, size, rotation, quality_format), pyramid.info, LIMITS)
    return plan(resolved, pyramid.info)


def test_deep_zoom_tile_requests_map_onto_stored_tiles(q85_pages: Pyramid) -> None:
    info, stored = q85_pages.info, q85_pages.stored
    cases = {
        "0,0,256,256/256,/0/default.jpg": (0, 0),
        "768,512,256,256/256,256/0/color.jpg": (0, 2 * 12 + 3),
        "512,0,512,512/256,/0/default.jpg": (1, 1),  # level 1 (1500x1000): its tile (256, 0)
        "1024,0,1024,1024/256,/0/default.jpg": (2, 1),  # level 2 (750x500): its tile (256, 0)
    }
    for url, (level_index, tile) in cases.items():
        found = passthrough_tile(stored, info.levels, _plan(q85_pages, url))
        assert found is not None, url
        grid, index = found
        assert grid is stored.levels[level_index]
        assert index == tile, url
    for url in (
        "2816,0,184,256/184,/0/default.jpg",  # right edge tile
        "0,0,256,256/128,/0/default.jpg",  # scaled
        "0,0,256,256/256,/90/default.jpg",
        "0,0,256,256/256,/!0/default.jpg",
        "0,0,256,256/256,/0/gray.jpg",
        "0,0,256,256/256,/0/bitonal.jpg",
        "0,0,256,256/256,/0/default.png",
        "0,0,256,256/256,/0/default.webp",
        "128,0,256,256/256,/0/default.jpg",  # off the grid
        "0,0,512,512/255,/0/default.jpg",  # level 1 is 1 px short: a stretch, not the tile
    ):
        assert passthrough_tile(stored, info.levels, _plan(q85_pages, url)) is None, url


def test_plan_conditions(q85_pages: Pyramid, grey_pages: Pyramid) -> None:
    info, stored = q85_pages.info, q85_pages.stored
    base = Plan(
        level=info.levels[0],
        crop=Box(256, 256, 256, 256),
        width=256,
        height=256,
        mirror=False,
        degrees=Decimal(0),
        quality=Quality.COLOR,
        format=Format.JPG,
        source_colour=Colour.RGB,
        source_has_icc=False,
        source_has_alpha=False,
    )
    assert passthrough_tile(stored, info.levels, base) is not None
    for change in (
        {"source_has_icc": True},  # the renderer converts to sRGB; stored values are not sRGB
        {"source_has_alpha": True},
        {"width": 255},
        {"height": 257},
        {"degrees": Decimal(180)},
        {"mirror": True},
        {"quality": Quality.GRAY},
        {"format": Format.PNG},
        {"source_colour": Colour.GRAY},
        {"level": Level(1, 1)},  # not one of the levels the index was built for
    ):
        assert passthrough_tile(stored, info.levels, dataclasses.replace(base, **change)) is None, change
    empty = StoredTiles((None,) * len(info.levels))
    assert passthrough_tile(empty, info.levels, base) is None
    grey = dataclasses.replace(base, level=grey_pages.info.levels[0], quality=Quality.GRAY, source_colour=Colour.GRAY)
    assert passthrough_tile(grey_pages.stored, grey_pages.info.levels, grey) is not None
    grey_as_colour = dataclasses.replace(grey, quality=Quality.COLOR)  # the renderer makes 3 bands
    assert passthrough_tile(grey_pages.stored, grey_pages.info.levels, grey_as_colour) is None


# -- timing note (not an assertion) ----------------------------------------------------------


def test_timing_note(q90_pages: Pyramid, record_property: Callable[[str, object], None]) -> None:
    """Prints what the index and a tile read cost here; for the benchmark pyramids see the
    module's report (12000x9000: ~0.3 ms per index, 40000x25000: ~0.4 ms)."""
    path, levels = q90_pages.path, q90_pages.info.levels
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        stored = read_tile_index(path, levels)
    index_ms = (time.perf_counter() - start) / runs * 1e3
    grid = stored.levels[0]
    assert grid is not None
    whole = range(grid.tile_count)
    with _fd(path) as fd:
        start = time.perf_counter()
        for _ in range(5):
            for i in whole:
                read_stored_tile(fd, grid, i)
        tile_us = (time.perf_counter() - start) / (5 * len(whole)) * 1e6
        data = read_stored_tile(fd, grid, whole[0])
        start = time.perf_counter()
        for _ in range(20):
            pyvips.Image.jpegload_buffer(data).jpegsave_buffer(Q=80)
        decode_encode_us = (time.perf_counter() - start) / 20 * 1e6
    note = (
        f"read_tile_index {index_ms:.2f} ms ({len(levels)} levels); read_stored_tile {tile_us:.0f} us "
        f"(avg {sum(grid.bytecounts) / grid.tile_count / 1024:.1f} KiB); libvips decode+encode Q80 "
        f"{decode_encode_us:.0f} us"
    )
    record_property("timing", note)
    print(note)


# -- reading without blocking, and the descriptors the server keeps --------------------------------


def _version(path: Path) -> SourceVersion:
    st = os.stat(path)
    return SourceVersion(st.st_ino, st.st_size, st.st_mtime_ns)


def _first_whole_tile(pyramid: Pyramid) -> tuple[TileGrid, int]:
    grid = pyramid.stored.levels[0]
    assert grid is not None
    return grid, 0


def test_nowait_read_equals_the_blocking_read(q90_pages: Pyramid) -> None:
    grid, index = _first_whole_tile(q90_pages)
    with _fd(q90_pages.path) as fd:
        blocking = read_stored_tile(fd, grid, index)  # also brings the bytes into the page cache
        assert read_stored_tile_nowait(fd, grid, index) == blocking


def test_open_and_read_checks_the_version_on_the_descriptor(q85_pages: Pyramid, tmp_path: Path) -> None:
    grid, index = _first_whole_tile(q85_pages)
    copy = tmp_path / "copy.tif"
    shutil.copyfile(q85_pages.path, copy)
    tile, fd = open_and_read(copy, _version(copy), grid, index)
    try:
        assert tile.startswith(SOI)
        assert tile.endswith(EOI)
    finally:
        os.close(fd)
    stale = SourceVersion(_version(copy).inode, _version(copy).size, _version(copy).mtime_ns - 1)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(SourceChanged):
        open_and_read(copy, stale, grid, index)
    assert len(os.listdir("/proc/self/fd")) == open_before  # the refused descriptor was closed


def test_tile_files_adopt_read_and_evict(q90_pages: Pyramid, q85_pages: Pyramid) -> None:
    files = TileFiles(max_open=1)
    grid, index = _first_whole_tile(q90_pages)
    version = _version(q90_pages.path)
    assert files.read_nowait(q90_pages.path, version, grid, index) is None  # no descriptor yet
    tile, fd = open_and_read(q90_pages.path, version, grid, index)
    files.adopt(q90_pages.path, version, fd)
    assert files.read_nowait(q90_pages.path, version, grid, index) == tile
    # A second descriptor for the same version (a concurrent first read) is closed, not kept.
    _, twin = open_and_read(q90_pages.path, version, grid, index)
    files.adopt(q90_pages.path, version, twin)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(twin)
    # Over max_open, the least recently used descriptor is closed.
    grid85, index85 = _first_whole_tile(q85_pages)
    version85 = _version(q85_pages.path)
    _, fd85 = open_and_read(q85_pages.path, version85, grid85, index85)
    files.adopt(q85_pages.path, version85, fd85)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    assert files.read_nowait(q90_pages.path, version, grid, index) is None
    assert files.read_nowait(q85_pages.path, version85, grid85, index85) is not None
    files.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd85)


# -- edge tiles: the valid part of a padded tile, cut losslessly -----------------------------------


def _edge_crop(pyramid: Pyramid, level_index: int, index: int) -> tuple[Box, TileGrid]:
    grid = pyramid.stored.levels[level_index]
    assert grid is not None
    col, row = index % grid.across, index // grid.across
    x, y = col * grid.tile_width, row * grid.tile_height
    return Box(x, y, min(grid.tile_width, grid.width - x), min(grid.tile_height, grid.height - y)), grid


def test_edge_tile_for_only_matches_the_valid_area(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    last = len(grid.offsets) - 1
    crop, _ = _edge_crop(q85_pages, 0, last)
    assert (crop.w, crop.h) != (grid.tile_width, grid.tile_height)  # the fixture has padded edges
    assert edge_tile_for(grid, crop) == last
    assert edge_tile_for(grid, Box(crop.x, crop.y, crop.w - 1, crop.h)) is None  # not the whole valid part
    assert edge_tile_for(grid, Box(0, 0, 256, 256)) is None  # a whole tile is passthrough proper
    assert edge_tile_for(grid, Box(crop.x + 8, crop.y, crop.w - 8, crop.h)) is None  # off the grid


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
@pytest.mark.parametrize(("name", "exact"), [("q90_pages", True), ("q85_pages", False), ("grey_pages", True)])
def test_lossless_edge_crop_gives_the_stored_pixels(name: str, exact: bool, request: pytest.FixtureRequest) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    for level_index, grid in enumerate(pyramid.stored.levels):
        if grid is None:
            continue
        edges = [i for i in range(len(grid.offsets)) if edge_tile_for(grid, _edge_crop(pyramid, level_index, i)[0])]
        for index in edges:
            crop, _ = _edge_crop(pyramid, level_index, index)
            with _fd(pyramid.path) as fd:
                cut = lossless_crop(read_stored_tile(fd, grid, index), crop.w, crop.h)
            assert cut is not None
            got = _vips(cut)
            want = _vips_region(pyramid, level_index, crop)
            assert got.shape == want.shape
            diff = np.abs(got.astype(int) - want.astype(int))
            if exact:
                assert diff.max() == 0, (level_index, index)
            else:
                # 4:2:0: the decoder upsamples chroma of the smaller image slightly differently.
                assert diff.mean() < 1.0, (level_index, index)
                assert diff.max() <= 32, (level_index, index)


def _vips_region(pyramid: Pyramid, level_index: int, crop: Box) -> np.ndarray:
    level = pyramid.info.levels[level_index]
    region = _tiffload(pyramid.path, level).crop(crop.x, crop.y, crop.w, crop.h)
    return np.asarray(region.numpy())


# -- edge tiles one pixel short: stretched stored tiles ---------------------------------------


def _osd_urls(pyramid: Pyramid) -> Iterator[tuple[int, str]]:
    """(level index, URL) of every tile OpenSeadragon asks for (implementation note 3: ceil)."""
    width, height, tile = pyramid.info.width, pyramid.info.height, pyramid.info.tile_width
    for level_index in range(len(pyramid.info.levels)):
        scale = 2**level_index
        for row in range(-(-height // (tile * scale))):
            for col in range(-(-width // (tile * scale))):
                x, y = col * tile * scale, row * tile * scale
                w, h = min(tile * scale, width - x), min(tile * scale, height - y)
                yield level_index, f"{x},{y},{w},{h}/{-(-w // scale)},{-(-h // scale)}/0/default.jpg"


@pytest.mark.parametrize(("name", "stretched"), [("q85_pages", 1), ("odd_256", 10), ("grey_pages", 1), ("odd_64", 32)])
def test_every_deep_zoom_tile_is_a_stored_tile(name: str, stretched: int, request: pytest.FixtureRequest) -> None:
    """Whole, cut to its valid area, or, where the floor-rounded level is one pixel short of the
    ceil-rounded size viewers ask for (3000 / 16 = 187.5 -> 188 from 187), stretched by it."""
    pyramid: Pyramid = request.getfixturevalue(name)
    info, stored = pyramid.info, pyramid.stored
    kinds = {"whole": 0, "edge": 0, "stretched": 0}
    for level_index, url in _osd_urls(pyramid):
        if name == "grey_pages":
            url = url.replace("default", "gray")
        the_plan = _plan(pyramid, url)
        ref = stored_tile_for(stored, info.levels, the_plan, edges=True, stretch=True)
        assert ref is not None, url
        assert ref.grid is stored.levels[level_index]
        assert (ref.out_width, ref.out_height) == (the_plan.width, the_plan.height)
        without = stored_tile_for(stored, info.levels, the_plan, edges=True, stretch=False)
        if ref.stretched:
            kinds["stretched"] += 1
            assert without is None, url  # rendered when stretching is off
            level = info.levels[level_index]
            column, row = ref.index % ref.grid.across, ref.index // ref.grid.across
            # Only at the level's right or bottom edge, by the pixel it lacks there.
            assert ref.out_width == ref.width or column * ref.grid.tile_width + ref.width == level.width
            assert ref.out_height == ref.height or row * ref.grid.tile_height + ref.height == level.height
            assert {ref.out_width - ref.width, ref.out_height - ref.height} <= {0, 1}
        else:
            kinds["edge" if ref.is_edge else "whole"] += 1
            assert without == ref
    assert kinds["stretched"] == stretched
    assert kinds["whole"] > 0
    assert kinds["edge"] > 0


def test_stretching_is_refused_where_it_would_not_be_one_pixel(q85_pages: Pyramid, odd_512: Pyramid) -> None:
    info, stored = q85_pages.info, q85_pages.stored
    assert stored_tile_for(stored, info.levels, _plan(q85_pages, "full/188,/0/default.jpg"), edges=True, stretch=True)
    for url in (
        "full/189,/0/default.jpg",  # two pixels more than the 187 px level
        "full/186,/0/default.jpg",  # smaller: a reduction
        "full/188,/90/default.jpg",
        "full/188,/0/default.png",
    ):
        assert stored_tile_for(stored, info.levels, _plan(q85_pages, url), edges=True, stretch=True) is None, url
    # 512 px tiles: decoding one takes too long for where stretches are done; rendered instead.
    urls = [url for _, url in _osd_urls(odd_512)]
    plans = [_plan(odd_512, url) for url in urls]
    one_short = [p for p in plans if (p.width, p.height) != (p.crop.w, p.crop.h)]
    assert one_short
    for the_plan in one_short:
        assert stored_tile_for(odd_512.stored, odd_512.info.levels, the_plan, edges=True, stretch=True) is None


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
@pytest.mark.parametrize(("name", "quality"), [("q85_pages", 85), ("odd_256", 90), ("grey_pages", 85)])
def test_stretched_tiles_show_what_the_renderer_shows(name: str, quality: int, request: pytest.FixtureRequest) -> None:
    """The same plan through libvips (crop, bicubic enlargement by the pixel, encode) and as a
    stretched stored tile: the same picture, within what a JPEG generation and the two
    kernels make of it; and far from it when the stretched tile is the wrong one."""
    pyramid: Pyramid = request.getfixturevalue(name)
    info, stored = pyramid.info, pyramid.stored
    encoding = tile_codec.Encoding(quality, chroma_subsampling=True)
    options = EncodeOptions(jpeg_quality=quality, jpeg_chroma_subsampling=True)
    compared = 0
    for _, url in _osd_urls(pyramid):
        if name == "grey_pages":
            url = url.replace("default", "gray")
        the_plan = _plan(pyramid, url)
        ref = stored_tile_for(stored, info.levels, the_plan, edges=True, stretch=True)
        if ref is None or not ref.stretched:
            continue
        with _fd(pyramid.path) as fd:
            tile = read_stored_tile(fd, ref.grid, ref.index)
            many = len(ref.grid.offsets) > 1
            neighbour = read_stored_tile(fd, ref.grid, ref.index - 1 if ref.index else 1) if many else None
        gray = ref.grid.components == 1
        size = (ref.width, ref.height, ref.out_width, ref.out_height)
        ours = tile_codec.stretched(tile, *size, gray=gray, encoding=encoding)
        assert ours is not None
        rendered = _pillow(render(pyramid.path, info.format, the_plan, options)).astype(int)
        got = _pillow(ours).astype(int)
        assert got.shape == rendered.shape, url
        diff = np.abs(got - rendered)
        assert diff.mean() < 3.0, url  # measured 1.0-2.1
        assert np.percentile(diff, 99) <= 16, url  # measured 5-11
        if neighbour is not None:
            wrong = tile_codec.stretched(neighbour, *size, gray=gray, encoding=encoding)
            assert wrong is not None
            assert np.abs(_pillow(wrong).astype(int) - rendered).mean() > 10, url  # measured 21-82
        compared += 1
    assert compared > 0
