"""Crops at a level's own size assembled from the stored tiles' DCT blocks (``tile_blocks`` and
the C extension ``_jpeg_blocks``).

The blocks are the stored ones, so the assembled JPEG decoded to planes (no upsampling, each
block on its own) is exactly the stored tiles' planes of the crop (``tile_planes.crop_planes``):
checked sample for sample. Served pixels against the libvips pipeline are held to the planes
path's bounds (``test_tile_planes``): the luma is the stored luma in every path; only the
pipeline's chroma went through upsampling and averaging.
"""

from __future__ import annotations

import array
import io
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iiifserver.errors import SourceChanged
from iiifserver.image import tile_blocks, tile_codec, tile_mosaic, tile_planes
from iiifserver.image.passthrough import level_grid
from iiifserver.image.planner import Box, Plan
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_grid import TileGrid
from iiifserver.image.tile_mosaic import MosaicError
from tests.image.pyramids import (
    JPEG_PYRAMIDS,
    Pyramid,
    assert_damage_reported_alike,
    damaged_copies,
    open_fd,
    plan_for,
    stored_tiles,
    vips_region,
)

pytestmark = pytest.mark.skipif(not tile_mosaic.scales(), reason="libturbojpeg is not installed")

Q420, Q444, GRAY = tile_codec.SAMPLING_420, tile_codec.SAMPLING_444, tile_codec.SAMPLING_GRAY


@pytest.fixture(autouse=True)
def _empty_tile_memory() -> None:
    tile_mosaic.decoded_tiles.clear()


def test_the_extension_is_built() -> None:
    """scripts/install.sh installs a C compiler and libjpeg's headers: a test install without the
    extension is an install step missing, not a path to skip."""
    assert tile_blocks.available()


def _grid(pyramid: Pyramid, level: int = 0) -> TileGrid:
    grid = pyramid.stored.levels[level]
    assert grid is not None
    return grid


def _stored_planes(pyramid: Pyramid, grid: TileGrid, crop: Box) -> tile_codec.Planes:
    with open_fd(pyramid.path) as fd:
        planes = tile_planes.crop_planes(lambda i: tile_codec.decode_planes(read_stored_tile(fd, grid, i)), grid, crop)
    assert planes is not None
    return planes


def _assert_the_stored_blocks(pyramid: Pyramid, grid: TileGrid, crop: Box, sampling: int) -> None:
    body = tile_blocks.crop_jpeg(pyramid.path, None, grid, crop, quality=85, sampling=sampling)
    assert body is not None, crop
    got = tile_codec.decode_planes(body)
    want = _stored_planes(pyramid, grid, crop)
    assert got.sampling == want.sampling == sampling
    assert got.planes[0].shape == (crop.h, crop.w)
    for a, b in zip(got.planes, want.planes, strict=True):
        assert a.shape == b.shape, crop
        assert np.array_equal(a, b), crop


def _aligned_crops(grid: TileGrid, mcu: int, n: int, seed: int) -> list[Box]:
    rng = random.Random(seed)
    one_tile = Box(0, 0, min(grid.tile_width, grid.width), min(grid.tile_height, grid.height))
    crops = [Box(0, 0, grid.width, grid.height), Box(0, 0, 1, 1), one_tile]
    last_x, last_y = (grid.width - 1) // mcu * mcu, (grid.height - 1) // mcu * mcu
    crops.append(Box(last_x, last_y, grid.width - last_x, grid.height - last_y))  # the last MCU, partial
    while len(crops) < n:
        x, y = rng.randrange(0, grid.width, mcu), rng.randrange(0, grid.height, mcu)
        crops.append(Box(x, y, rng.randint(1, min(900, grid.width - x)), rng.randint(1, min(900, grid.height - y))))
    return crops


@pytest.mark.parametrize(
    ("name", "sampling", "mcu"),
    [("q85_pages", Q420, 16), ("q85_subifd", Q420, 16), ("odd_64", Q420, 16), ("grey_pages", GRAY, 8)],
)
def test_aligned_crops_are_the_stored_blocks_exactly(
    name: str, sampling: int, mcu: int, request: pytest.FixtureRequest
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    for level in range(len(pyramid.stored.levels)):
        grid = pyramid.stored.levels[level]
        if grid is None or grid.tile_width % mcu:
            continue
        for crop in _aligned_crops(grid, mcu, 8 if level else 24, seed=level):
            _assert_the_stored_blocks(pyramid, grid, crop, sampling)


def test_the_output_is_a_plain_baseline_jfif(q85_pages: Pyramid) -> None:
    grid = _grid(q85_pages)
    body = tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(16, 32, 700, 500), quality=85, sampling=Q420)
    assert body is not None
    assert body[:4] == b"\xff\xd8\xff\xe0"
    assert body[6:11] == b"JFIF\x00"
    assert b"\xff\xc0" in body
    assert b"\xff\xc2" not in body
    with Image.open(io.BytesIO(body)) as image:
        assert (image.size, image.mode) == ((700, 500), "RGB")


# -- what is not for this path ------------------------------------------------------------------


def test_covered_is_the_tiles_a_crop_touches() -> None:
    tiles = array.array("q", range(12))
    grid = TileGrid(256, 256, 1000, 700, 4, tiles, tiles, b"", 3, False, 85, 1 << 20)
    assert tile_blocks.covered(grid, Box(0, 0, 1000, 700), Q420) == (0, 0, 4, 3)
    assert tile_blocks.covered(grid, Box(256, 0, 256, 256), Q420) == (1, 0, 1, 1)
    assert tile_blocks.covered(grid, Box(240, 240, 32, 32), Q420) == (0, 0, 2, 2)
    assert tile_blocks.covered(grid, Box(16, 16, 1, 1), Q420) == (0, 0, 1, 1)
    assert tile_blocks.covered(grid, Box(8, 0, 16, 16), Q420) is None  # off the 16-pixel MCU grid
    assert tile_blocks.covered(grid, Box(8, 8, 16, 16), GRAY) == (0, 0, 1, 1)  # 8 for grey
    assert tile_blocks.covered(grid, Box(8, 8, 16, 16), Q444) == (0, 0, 1, 1)
    assert tile_blocks.covered(grid, Box(0, 1, 16, 16), GRAY) is None
    assert tile_blocks.covered(grid, Box(992, 0, 16, 16), Q420) is None  # past the level
    assert tile_blocks.covered(grid, Box(0, 0, 0, 16), Q420) is None
    assert tile_blocks.covered(grid, Box(0, 0, 16, 16), 99) is None  # a sampling it does not know


def test_a_too_large_crop_is_left_to_the_other_paths(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = _grid(q85_pages)
    monkeypatch.setattr(tile_blocks, "MAX_BLOCK_PIXELS", 4 * 256 * 256 - 1)
    assert tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(0, 0, 512, 512), quality=85, sampling=Q420) is None
    assert tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(0, 0, 512, 256), quality=85, sampling=Q420)


@pytest.mark.parametrize(
    ("quality", "sampling"),
    [(84, Q420), (86, Q420), (90, Q420), (85, Q444), (85, GRAY)],
)
def test_other_tables_or_sampling_than_the_responses_are_declined(
    q85_pages: Pyramid, quality: int, sampling: int
) -> None:
    """Q85 4:2:0 tiles make no Q84, Q86 or 4:4:4 response: the tables or sampling would differ."""
    grid = _grid(q85_pages)
    body = tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(0, 0, 512, 512), quality=quality, sampling=sampling)
    assert body is None


def test_rgb_coded_tiles_are_declined(q90_pages: Pyramid) -> None:
    """libvips stores Q90 tiles as RGB (Adobe marker): no YCbCr blocks to copy."""
    grid = _grid(q90_pages)
    for sampling in (Q420, Q444):
        body = tile_blocks.crop_jpeg(q90_pages.path, None, grid, Box(0, 0, 512, 512), quality=90, sampling=sampling)
        assert body is None


def test_without_the_extension_nothing_is_assembled(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tile_blocks, "_jpeg_blocks", None)
    assert not tile_blocks.available()
    grid = _grid(q85_pages)
    assert tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(0, 0, 64, 64), quality=85, sampling=Q420) is None


# -- served ---------------------------------------------------------------------------------------


def _pixels(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image).astype(np.int16)


def _render(pyramid: Pyramid, plan: Plan, options: EncodeOptions, *, stored: bool = True) -> bytes:
    path = pyramid.path
    grid = level_grid(pyramid.stored, pyramid.info.levels, plan.level) if stored else None
    return render(path, pyramid.info.format, plan, options, SourceVersion.of(path.stat()), grid)


@pytest.mark.parametrize("name", ["q85_pages", "grey_pages", "q85_subifd"])
def test_aligned_requests_at_their_own_size_are_served_from_the_blocks(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    assembled: list[bytes] = []
    real = tile_blocks.crop_jpeg

    def recorded(*args: object, **kwargs: object) -> bytes | None:
        body = real(*args, **kwargs)  # type: ignore[arg-type]
        if body is not None:
            assembled.append(body)
        return body

    monkeypatch.setattr(tile_blocks, "crop_jpeg", recorded)
    options = EncodeOptions(jpeg_quality=85)
    urls = ["full/max/0/default.jpg", "full/pct:50/0/default.jpg", "0,0,256,256/max/0/default.jpg"]
    urls += ["16,32,500,300/max/0/default.jpg", "2048,1024,952,976/max/0/default.jpg", "512,0,1,1/max/0/default.jpg"]
    for url in urls:
        plan = plan_for(pyramid, url)
        level = pyramid.info.levels.index(plan.level)
        before = len(assembled)
        new = _render(pyramid, plan, options)
        assert len(assembled) == before + 1, url
        assert assembled[-1] == new, url
        old = _render(pyramid, plan, options, stored=False)
        a, b = _pixels(new), _pixels(old)
        assert a.shape == b.shape, url
        assert a.shape[:2] == (plan.height, plan.width), url
        # The planes path's bounds against the pipeline (test_tile_planes), and against the
        # stored picture (the level decoded by libvips) no further off than the pipeline.
        diff = np.abs(a - b)
        if plan.width * plan.height < 32 * 32:
            continue  # on a few pixels, a mean is one block's chroma noise
        assert diff.mean() < 2, (url, diff.mean())
        assert diff.max() <= 96, (url, diff.max())
        source = vips_region(pyramid, level, plan.crop).astype(np.int16).reshape(a.shape)
        assert np.abs(a - source).mean() <= np.abs(b - source).mean() * 1.05 + 0.01, url


def test_other_settings_fall_back_to_the_planes(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    """Q90 responses of Q85 tiles are encoded from the planes at Q90, not copied at Q85."""
    called: list[int] = []
    real = tile_planes.crop_jpeg

    def recorded(*args: object, **kwargs: object) -> bytes | None:
        called.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tile_planes, "crop_jpeg", recorded)
    plan = plan_for(q85_pages, "full/pct:50/0/default.jpg")
    body = _render(q85_pages, plan, EncodeOptions(jpeg_quality=90, jpeg_chroma_subsampling=True))
    assert called == [1]
    assert body != _render(q85_pages, plan, EncodeOptions(jpeg_quality=85))
    plan = plan_for(q85_pages, "8,0,300,200/max/0/default.jpg")  # off the MCU grid
    _render(q85_pages, plan, EncodeOptions(jpeg_quality=85))
    assert called == [1, 1]


# -- damage ---------------------------------------------------------------------------------------


def _damaged(pyramid: Pyramid, tmp_path: Path, seed: int) -> Path:
    path = tmp_path / f"damaged-{seed}.tif"
    shutil.copyfile(pyramid.path, path)
    grid = _grid(pyramid)
    offset, count = grid.offsets[1], grid.bytecounts[1]
    rng = np.random.default_rng(seed)
    with path.open("r+b") as fh:
        start = int(rng.integers(4, count - 8))
        fh.seek(offset + start)
        fh.write(rng.integers(0, 255, int(rng.integers(1, count - start)), dtype=np.uint8).tobytes())
    return path


def test_a_damaged_tile_is_never_shown(q85_pages: Pyramid, tmp_path: Path) -> None:
    """libjpeg's errors and warnings on a tile are a ``MosaicError`` (the other paths then say what
    they always said of it), never a crash or a JPEG with the damage in it."""
    plan = plan_for(q85_pages, "0,0,600,300/max/0/default.jpg")
    grid = _grid(q85_pages)
    refused = 0
    for seed in range(12):
        path = _damaged(q85_pages, tmp_path, seed)
        try:
            version = SourceVersion.of(path.stat())
            body = tile_blocks.crop_jpeg(path, version, grid, plan.crop, quality=85, sampling=Q420)
        except MosaicError:
            refused += 1
        else:  # bytes libjpeg reads without a word (a changed coefficient): as the other paths do
            assert body is not None
        assert_damage_reported_alike(path, q85_pages, plan, grid)
    assert refused >= 6


def test_a_file_changed_under_the_read_is_reported(q85_pages: Pyramid, tmp_path: Path) -> None:
    path = tmp_path / "changing.tif"
    shutil.copyfile(q85_pages.path, path)
    version = SourceVersion.of(path.stat())
    path.touch()  # a newer change time: another version
    with pytest.raises(SourceChanged):
        tile_blocks.crop_jpeg(path, version, _grid(q85_pages), Box(0, 0, 64, 64), quality=85, sampling=Q420)


# -- the extension's own checks -------------------------------------------------------------------


def _tiles(pyramid: Pyramid, count: int) -> list[bytes]:
    return stored_tiles(pyramid, count)


def _assemble(tiles: object, **changes: int) -> bytes | None:
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined]

    args = {
        "tile_width": 256,
        "tile_height": 256,
        "columns": 2,
        "x": 0,
        "y": 0,
        "width": 300,
        "height": 200,
        "quality": 85,
    }
    args.update(h_factor=2, v_factor=2)
    args.update(changes)
    result: bytes | None = _jpeg_blocks.assemble(tiles, **args)
    return result


def test_the_extension_checks_its_arguments(q85_pages: Pyramid) -> None:
    tiles = _tiles(q85_pages, 2)
    assert _assemble(tiles) is not None
    with pytest.raises(TypeError):
        _assemble([tiles[0], "not bytes"])
    with pytest.raises(TypeError):
        _assemble(5)
    with pytest.raises(ValueError, match="whole rows"):
        _assemble(tiles[:1])
    with pytest.raises(ValueError, match="whole rows"):
        _assemble([])
    for bad in ({"quality": 0}, {"quality": 101}, {"width": 0}, {"x": -16}, {"h_factor": 3}, {"columns": 0}):
        with pytest.raises(ValueError, match="out of range"):
            _assemble(tiles, **bad)
    # Geometry that does not match the tiles given: declined, nothing read past them.
    assert _assemble(tiles, width=600) is None  # three columns' worth from two
    assert _assemble(tiles, width=100) is None  # one column's worth from two
    assert _assemble(tiles, x=8) is None  # off the MCU grid
    assert _assemble(tiles, tile_width=128) is None  # not the tiles' size


def test_garbage_is_an_error_not_a_crash(q85_pages: Pyramid) -> None:
    tiles = _tiles(q85_pages, 2)
    outcomes = set()
    for tile in damaged_copies(tiles[1], 200, seed=7):
        try:
            body = _assemble([tiles[0], tile])
            outcomes.add("none" if body is None else "jpeg")
        except ValueError as exc:
            outcomes.add("error" if str(exc).startswith("tile 1: ") else f"other error: {exc}")
    for junk in (b"", b"\xff\xd8", b"not a jpeg at all", bytes(5000)):
        with pytest.raises(ValueError, match="tile 0"):
            _assemble([junk, tiles[1]])
    assert outcomes <= {"none", "jpeg", "error"}
    assert "error" in outcomes


def test_another_quality_reads_no_tile(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    """Q85 tiles and a Q80 response (the default setting): declined before any tile is read, so
    the planes path that makes it does not follow a read of every tile for nothing."""
    reads: list[int] = []
    real = tile_mosaic.read_stored_tile
    monkeypatch.setattr(tile_mosaic, "read_stored_tile", lambda fd, grid, i: reads.append(i) or real(fd, grid, i))
    grid = _grid(q85_pages)
    assert tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(0, 0, 512, 512), quality=80, sampling=Q420) is None
    assert reads == []
    assert tile_blocks.crop_jpeg(q85_pages.path, None, grid, Box(0, 0, 512, 512), quality=85, sampling=Q420)
    assert len(reads) == 4


# -- edge tiles cut from their coded MCUs ---------------------------------------------------------


def _edge_tiles(pyramid: Pyramid) -> list[tuple[TileGrid, bytes, int, int]]:
    """Every padded edge tile of every stored level: (grid, tile, valid width, valid height)."""
    found = []
    with open_fd(pyramid.path) as fd:
        for grid in pyramid.stored.levels:
            if grid is None:
                continue
            rows = -(-grid.height // grid.tile_height)
            for index in range(grid.tile_count):
                column, row = index % grid.across, index // grid.across
                width = min(grid.tile_width, grid.width - column * grid.tile_width)
                height = min(grid.tile_height, grid.height - row * grid.tile_height)
                if (width, height) != (grid.tile_width, grid.tile_height) and row < rows:
                    found.append((grid, read_stored_tile(fd, grid, index), width, height))
    return found


@pytest.mark.parametrize("name", JPEG_PYRAMIDS)
def test_edge_cuts_are_the_lossless_crops_pixels(name: str, request: pytest.FixtureRequest) -> None:
    """``edge_cut`` of every padded edge tile of every level: libjpeg-turbo's lossless crop, pixel
    for pixel (RGB-coded tiles are declined and left to it)."""
    pyramid: Pyramid = request.getfixturevalue(name)
    edges = _edge_tiles(pyramid)
    assert edges
    cut_here = 0
    for grid, tile, width, height in edges:
        reference = tile_codec.lossless_crop(tile, width, height)
        assert reference is not None
        cut = tile_blocks.edge_cut(tile, grid, width, height)
        if cut is None:
            assert grid.adobe_rgb or grid.quality == 0, "a YCbCr or grey tile of libjpeg's tables was declined"
            continue
        cut_here += 1
        assert _pixels(cut).shape[:2] == (height, width)
        assert np.array_equal(_pixels(cut), _pixels(reference))
    assert cut_here > 0 or all(grid.adobe_rgb for grid, *_ in edges)


@pytest.mark.parametrize("subsample", ["on", "off"])
def test_edge_cuts_of_any_size_are_the_lossless_crops_pixels(q85_pages: Pyramid, subsample: str) -> None:
    """Every valid area on and off the MCU grid, in 4:2:0 and in 4:4:4 YCbCr."""
    grid = _grid(q85_pages)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (grid.tile_height, grid.tile_width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, subsampling=2 if subsample == "on" else 0)
    tile = out.getvalue()
    sizes = [1, 7, 8, 9, 15, 16, 17, 40, 100, 200, 248, 255, 256]
    for width in sizes:
        for height in random.Random(width).sample(sizes, 4):
            if (width, height) == (256, 256):
                continue
            cut = tile_blocks.edge_cut(tile, grid, width, height)
            assert cut is not None, (width, height)
            reference = tile_codec.lossless_crop(tile, width, height)
            assert reference is not None
            assert np.array_equal(_pixels(cut), _pixels(reference)), (width, height)


def test_edge_cuts_decline_what_they_cannot_copy(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = _grid(q85_pages)
    grid, tile, width, height = next(edge for edge in _edge_tiles(q85_pages) if edge[0] == grid)
    from dataclasses import replace

    assert tile_blocks.edge_cut(tile, replace(grid, quality=0), width, height) is None  # tables unknown
    assert tile_blocks.edge_cut(tile, replace(grid, quality=50), width, height) is None  # not these tables
    monkeypatch.setattr(tile_blocks, "_jpeg_blocks", None)
    assert tile_blocks.edge_cut(tile, grid, width, height) is None  # no extension


def test_a_damaged_edge_tile_is_refused_as_libjpeg_turbo_refuses_it(q85_pages: Pyramid) -> None:
    """Damage the lossless crop refuses is refused (``ValueError``, or declined to it); a copy
    it cuts without a word is cut to the same pixels or refused, never shown otherwise."""
    grid, tile, width, height = _edge_tiles(q85_pages)[0]
    refused = 0
    for damaged in damaged_copies(tile, 60, seed=11):
        reference = tile_codec.lossless_crop(damaged, width, height)
        try:
            cut = tile_blocks.edge_cut(damaged, grid, width, height)
        except ValueError:
            refused += 1
            continue
        if reference is None:
            assert cut is None, "a tile libjpeg-turbo refuses was cut"
        elif cut is not None:
            assert np.array_equal(_pixels(cut), _pixels(reference))
    assert refused >= 10
