"""JPEGs at a level's own size from the stored tiles' Y, Cb, Cr planes (``tile_planes``), and the
plain JPEG requests that ``render`` encodes with libjpeg-turbo instead of libvips' encoder.

The geometry is checked exactly against an independent computation on synthetic planes (every
sample a function of its position); the served pixels against the libvips pipeline they replace.

Bounds, in levels out of 255, measured on ``q85_pages`` (Q85, 4:2:0) with libjpeg-turbo 2.1 and
libvips 8.18, every output encoded at Q85 4:2:0:

* Planes path (output at the level's own size) against the pipeline: the luma is the stored
  luma in both; the pipeline's chroma went through fancy upsampling and the encoder's 2 x 2
  average (a 1/8, 3/4, 1/8 blur on crops starting on an even pixel), the planes' is the stored
  chroma, so the two encodings quantise slightly different pictures of this very busy test
  image. Per request (outputs of 32 x 32 and more): measured mean 0.19-1.40 (0.64-0.75 on
  average per pyramid), max 56; gray 0 (the same luma, no chroma). Bounded at mean < 2, max
  <= 96, average < 1. Against the stored picture itself (the level decoded by libvips) the
  planes' JPEG is the closer one: mean error 3.36 against the pipeline's 3.46 on the 4:2:0 scan
  (3.60 / 3.64, 3.27 / 3.35 on the others); bounded at no more than 1 % further off on average
  and 5 % per request. The same output against the pipeline's one pixel off measures mean >= 3.
* Resized requests decoded to pixels (what ``plane_resize`` declines or cannot do without its
  extension: pixels from the stored tiles, resized by libvips, encoded by libjpeg-turbo in place
  of libvips' jpegsave: the same library and settings): measured identical on every
  request here (mean 0, max 0); bounded at mean < 0.05, max <= 4 for other builds of libjpeg.
"""

from __future__ import annotations

import array
import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from iiifserver.image import plane_resize, tile_blocks, tile_codec, tile_mosaic, tile_planes
from iiifserver.image import render as render_module
from iiifserver.image.planner import Box, Plan
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.source_info import Colour, SourceVersion
from iiifserver.image.tile_grid import TileGrid
from iiifserver.image.tile_mosaic import MosaicError
from iiifserver.image.tile_planes import crop_planes
from tests.image.pyramids import (
    Pyramid,
    assert_damage_reported_alike,
    decoded16,
    errors_against_source,
    level_grid_of,
    noisy_first_tile_copy,
    plan_for,
    vips_region,
)

pytestmark = pytest.mark.skipif(not tile_mosaic.scales(), reason="libturbojpeg is not installed")

OPTIONS = EncodeOptions(jpeg_quality=85)


@pytest.fixture(autouse=True)
def _empty_tile_memory() -> None:
    tile_mosaic.decoded_tiles.clear()


@pytest.fixture(autouse=True)
def _planes_not_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops on the MCU grid are assembled from DCT blocks first (``test_tile_blocks``): without
    that, every crop at its own size here is made from the planes."""
    monkeypatch.setattr(tile_blocks, "_jpeg_blocks", None)


_pixels = decoded16
_grid = level_grid_of


def _both(pyramid: Pyramid, plan: Plan, path: Path | None = None) -> tuple[bytes, bytes]:
    """(the stored-tile JPEG paths' answer, the libvips pipeline's) for ``plan``."""
    path = path or pyramid.path
    version = SourceVersion.of(path.stat())
    new = render(path, pyramid.info.format, plan, OPTIONS, version, _grid(pyramid, plan))
    old = render(path, pyramid.info.format, plan, OPTIONS, version)
    return new, old


# -- geometry, on synthetic planes ------------------------------------------------------------


def _synthetic_grid(width: int, height: int, tile: int) -> TileGrid:
    across, down = -(-width // tile), -(-height // tile)
    count = across * down
    return TileGrid(
        tile, tile, width, height, across, array.array("q", range(count)), array.array("q", [1] * count),
        b"", 3, False, 85, 1 << 20,
    )  # fmt: skip


def _plane(rows: int, columns: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (rows, columns), dtype=np.uint8)


def _level_planes(grid: TileGrid, sampling: int) -> tuple[np.ndarray, ...]:
    """The whole level's planes (tiles' padding included): what the synthetic tiles are cut from."""
    down = len(grid.offsets) // grid.across
    width, height = grid.across * grid.tile_width, down * grid.tile_height
    if sampling == tile_codec.SAMPLING_GRAY:
        return (_plane(height, width, 1),)
    across_f, down_f = tile_codec.PLANE_SAMPLINGS[sampling]
    chroma = (height // down_f, width // across_f)
    return _plane(height, width, 1), _plane(*chroma, 2), _plane(*chroma, 3)


def _tiles_of(grid: TileGrid, level: tuple[np.ndarray, ...], sampling: int) -> dict[int, tile_codec.Planes]:
    factors = [(1, 1)] + [tile_codec.PLANE_SAMPLINGS.get(sampling, (1, 1))] * (len(level) - 1)
    tiles = {}
    for index in range(len(grid.offsets)):
        row, col = divmod(index, grid.across)
        cut = []
        for plane, (fx, fy) in zip(level, factors, strict=True):
            tw, th = grid.tile_width // fx, grid.tile_height // fy
            cut.append(np.ascontiguousarray(plane[row * th : (row + 1) * th, col * tw : (col + 1) * tw]))
        tiles[index] = tile_codec.Planes(sampling, tuple(cut))
    return tiles


def _expected_chroma(plane: np.ndarray, crop: Box) -> np.ndarray:
    """4:2:0 chroma of ``crop``, independently: output sample j covers luma pixels crop.x + 2j and
    + 2j + 1, i.e. the stored sample there when crop.x is even, else the mean of the two stored
    samples it straddles (the last one repeated past the stored plane)."""
    padded = np.pad(plane.astype(np.int32), ((0, 1), (0, 1)), mode="edge")
    out_w, out_h = -(-crop.w // 2), -(-crop.h // 2)

    def axis(start: int, n: int) -> list[tuple[int, int]]:
        return [((start + 2 * j) // 2, (start + 2 * j + 1) // 2) for j in range(n)]

    out = np.empty((out_h, out_w), dtype=np.int32)
    for j, (y0, y1) in enumerate(axis(crop.y, out_h)):
        for i, (x0, x1) in enumerate(axis(crop.x, out_w)):
            if x0 == x1 and y0 == y1:
                out[j, i] = padded[y0, x0]
            elif y0 == y1:
                out[j, i] = (padded[y0, x0] + padded[y0, x1] + 1) >> 1
            elif x0 == x1:
                out[j, i] = (padded[y0, x0] + padded[y1, x0] + 1) >> 1
            else:  # both halves: the two means in turn, as the module rounds them
                top = (padded[y0, x0] + padded[y0, x1] + 1) >> 1
                bottom = (padded[y1, x0] + padded[y1, x1] + 1) >> 1
                out[j, i] = (top + bottom + 1) >> 1
    return out


def _crops(grid: TileGrid, n: int, seed: int) -> list[Box]:
    rng = random.Random(seed)
    out = [Box(0, 0, grid.width, grid.height), Box(grid.width - 1, grid.height - 1, 1, 1)]
    out += [Box(1, 1, grid.width - 1, grid.height - 1), Box(grid.tile_width - 1, 0, 2, 3)]
    while len(out) < n:
        w, h = rng.randint(1, grid.width), rng.randint(1, grid.height)
        out.append(Box(rng.randint(0, grid.width - w), rng.randint(0, grid.height - h), w, h))
    return out


SYNTHETIC_LEVELS = [  # sampling, level width and height, tile size
    (tile_codec.SAMPLING_420, 150, 100, 32),  # levels that end inside a tile
    (tile_codec.SAMPLING_420, 128, 96, 32),  # levels that end on a tile's edge
    (tile_codec.SAMPLING_420, 131, 77, 16),
    (tile_codec.SAMPLING_444, 150, 100, 32),
    (tile_codec.SAMPLING_GRAY, 150, 100, 32),
]


@pytest.mark.parametrize(("sampling", "width", "height", "tile"), SYNTHETIC_LEVELS)
def test_crop_planes_cut_exactly_the_crops_samples(sampling: int, width: int, height: int, tile: int) -> None:
    grid = _synthetic_grid(width, height, tile)
    level = _level_planes(grid, sampling)
    tiles = _tiles_of(grid, level, sampling)
    asked: list[int] = []

    def decode(index: int) -> tile_codec.Planes:
        asked.append(index)
        return tiles[index]

    for crop in _crops(grid, 60, seed=width * tile + sampling):
        asked.clear()
        got = crop_planes(decode, grid, crop)
        assert got is not None
        assert got.sampling == sampling
        luma = got.planes[0]
        assert np.array_equal(luma, level[0][crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]), crop
        if sampling == tile_codec.SAMPLING_420:
            for plane, stored in zip(got.planes[1:], level[1:], strict=True):
                assert np.array_equal(plane, _expected_chroma(stored, crop)), crop
        elif sampling == tile_codec.SAMPLING_444:
            for plane, stored in zip(got.planes[1:], level[1:], strict=True):
                assert np.array_equal(plane, stored[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]), crop
        # Only the tiles the crop covers, and for an odd 4:2:0 crop the next one's first samples.
        c0, r0 = crop.x // tile, crop.y // tile
        c1 = min((crop.x + crop.w) // tile, grid.across - 1)
        r1 = min((crop.y + crop.h) // tile, len(grid.offsets) // grid.across - 1)
        assert set(asked) <= {r * grid.across + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
        assert len(asked) == len(set(asked))  # each tile decoded once


def test_crop_planes_declines_what_is_not_for_it() -> None:
    grid = _synthetic_grid(150, 100, 24)  # a tile size 4:2:0 chroma does not divide into MCUs
    assert crop_planes(lambda i: pytest.fail("decoded"), grid, Box(0, 0, 10, 10)) is None
    grid = _synthetic_grid(150, 100, 32)
    assert crop_planes(lambda i: pytest.fail("decoded"), grid, Box(100, 0, 60, 10)) is None  # past the level
    assert crop_planes(lambda i: pytest.fail("decoded"), grid, Box(0, 0, 0, 10)) is None


def test_a_sampling_not_wanted_stops_at_the_first_tile() -> None:
    grid = _synthetic_grid(150, 100, 32)
    tiles = _tiles_of(grid, _level_planes(grid, tile_codec.SAMPLING_444), tile_codec.SAMPLING_444)
    asked: list[int] = []

    def decode(index: int) -> tile_codec.Planes:
        asked.append(index)
        return tiles[index]

    assert crop_planes(decode, grid, Box(0, 0, 150, 100), want=tile_codec.SAMPLING_420) is None
    assert asked == [0]
    assert crop_planes(decode, grid, Box(0, 0, 150, 100), want=tile_codec.SAMPLING_444) is not None


def test_tiles_sampled_unlike_each_other_are_refused() -> None:
    grid = _synthetic_grid(64, 32, 32)
    tiles = _tiles_of(grid, _level_planes(grid, tile_codec.SAMPLING_420), tile_codec.SAMPLING_420)
    tiles[1] = _tiles_of(grid, _level_planes(grid, tile_codec.SAMPLING_GRAY), tile_codec.SAMPLING_GRAY)[1]
    with pytest.raises(MosaicError, match="sampled"):
        crop_planes(tiles.__getitem__, grid, Box(0, 0, 64, 32))


# -- served pixels ----------------------------------------------------------------------------


# The qualities that keep a source's own colour: what the stored-tile JPEG paths answer.
_QUALITIES = {Colour.RGB: ("default", "color"), Colour.GRAY: ("default", "gray")}


def _native_requests(pyramid: Pyramid, n: int, seed: int) -> list[str]:
    """Regions at their own size (level 0), odd and even corners, and the half-size level."""
    width, height = pyramid.info.width, pyramid.info.height
    rng = random.Random(seed)
    out = [
        "full/pct:50/0/default.jpg",
        "full/pct:25/0/default.jpg",
        f"{width - 301},{height - 203},301,203/max/0/default.jpg",
    ]
    out += ["0,0,256,256/max/0/default.jpg", "1,1,255,255/max/0/default.jpg", "255,255,3,3/max/0/default.jpg"]
    while len(out) < n:
        w, h = rng.randint(1, 900), rng.randint(1, 900)
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        out.append(f"{x},{y},{w},{h}/max/0/{rng.choice(_QUALITIES[pyramid.info.colour])}.jpg")
    return out


@pytest.fixture(params=["at_once", "per_tile"])
def planes_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each way to a crop's planes: the C extension's one call for all tiles, or ``tile_codec``
    per tile (the way without the extension). The list counts the crops made that way."""
    made: list[int] = []
    if request.param == "per_tile":
        monkeypatch.setattr(tile_planes, "_jpeg_blocks", None)
        real = tile_codec.decode_planes
        monkeypatch.setattr(tile_codec, "decode_planes", lambda jpeg: made.append(1) or real(jpeg))
        return made
    if tile_planes._jpeg_blocks is None:
        pytest.skip("the C extension is not built (test_tile_blocks.py::test_the_extension_is_built fails)")
    at_once = tile_planes.crop_planes_at_once

    def counted(*args: Any, **kwargs: Any) -> tile_codec.Planes | None:
        planes = at_once(*args, **kwargs)
        if planes is not None:
            made.append(1)
        return planes

    monkeypatch.setattr(tile_planes, "crop_planes_at_once", counted)
    return made


@pytest.mark.parametrize("name", ["q85_pages", "grey_pages", "odd_64", "q85_subifd"])
def test_regions_at_their_own_size_come_from_the_planes(
    name: str, request: pytest.FixtureRequest, planes_way: list[int]
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    decoded = planes_way
    means, errors = [], []
    for url in _native_requests(pyramid, 30, seed=len(name)):
        plan = plan_for(pyramid, url)
        if (plan.width, plan.height) != (plan.crop.w, plan.crop.h):
            continue  # a floor-rounded level stretched by its missing pixel: resized
        before = len(decoded)
        new, old = _both(pyramid, plan)
        assert len(decoded) > before, url  # from the stored planes
        a, b = _pixels(new), _pixels(old)
        assert a.shape == b.shape, url
        assert a.shape[:2] == (plan.height, plan.width), url
        diff = np.abs(a - b)
        if plan.width * plan.height >= 32 * 32:  # on a few pixels, a mean is one block's noise
            assert diff.mean() < 2, (url, diff.mean())
            assert diff.max() <= 96, (url, diff.max())
            means.append(diff.mean())
        # Against the stored picture itself (the level decoded by libvips), the planes' JPEG is
        # no further off than the pipeline's: the same quality, from fewer conversions.
        source = vips_region(pyramid, pyramid.info.levels.index(plan.level), plan.crop).astype(np.int16)
        errors.append(errors_against_source(a, b, source.reshape(a.shape), slack=0.05))
        if name == "grey_pages":
            with Image.open(io.BytesIO(new)) as image:
                assert image.mode == "L"
    assert len(means) >= 20
    assert np.mean(means) < 1.0
    new_error, old_error = np.mean(errors, axis=0)
    assert new_error <= old_error * 1.01, (new_error, old_error)


def test_a_crop_one_pixel_off_fails_the_bound(q85_pages: Pyramid) -> None:
    """The bound above discriminates: the planes' output against the pipeline's one pixel off."""
    plan = plan_for(q85_pages, "601,401,500,400/max/0/default.jpg")
    new, _ = _both(q85_pages, plan)
    shifted = plan_for(q85_pages, "602,401,500,400/max/0/default.jpg")
    _, old_shifted = _both(q85_pages, shifted)
    assert np.abs(_pixels(new) - _pixels(old_shifted)).mean() >= 3


def _resized_requests(pyramid: Pyramid, n: int, seed: int) -> list[str]:
    width, height = pyramid.info.width, pyramid.info.height
    rng = random.Random(seed)
    own = _QUALITIES[pyramid.info.colour][1]
    out = ["full/!200,200/0/default.jpg", "full/,150/0/default.jpg", f"full/!64,64/0/{own}.jpg"]
    while len(out) < n:
        w, h = rng.randint(8, min(1400, width)), rng.randint(8, min(1400, height))
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        out.append(f"{x},{y},{w},{h}/{rng.randint(4, w - 1)},/0/default.jpg")
    return out


@pytest.mark.parametrize("name", ["q85_pages", "grey_pages", "q90_pages", "odd_256"])
def test_resized_requests_encode_like_libvips(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    # The resampling from the planes comes first where it applies (``test_plane_resize.py``);
    # this is the way from decoded pixels, which takes whatever it declines.
    monkeypatch.setattr(plane_resize, "_lanczos", None)
    encoded = []
    real = tile_codec.encode_as
    monkeypatch.setattr(tile_codec, "encode_as", lambda *a: encoded.append(1) or real(*a))
    for url in _resized_requests(pyramid, 20, seed=len(name)):
        plan = plan_for(pyramid, url)
        assert (plan.width, plan.height) != (plan.crop.w, plan.crop.h), url
        before = len(encoded)
        new, old = _both(pyramid, plan)
        assert len(encoded) == before + 1, url  # libjpeg-turbo encoded it, not libvips
        a, b = _pixels(new), _pixels(old)
        assert a.shape == b.shape, url
        assert a.shape[:2] == (plan.height, plan.width), url
        diff = np.abs(a - b)
        assert diff.mean() < 0.05, (url, diff.mean())
        assert diff.max() <= 4, (url, diff.max())


def test_rgb_coded_tiles_are_not_decoded_to_planes(q90_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvips stores Q90 tiles as RGB, not YCbCr: the planes path steps aside quietly (no damage
    logged), and the pixels of the pipeline are served."""
    plan = plan_for(q90_pages, "100,100,300,200/max/0/default.jpg")
    logged: list[str] = []
    monkeypatch.setattr(render_module.log, "info", lambda *a: logged.append(a[0]))
    new, old = _both(q90_pages, plan)
    assert not logged
    assert not any(key[3] == "planes" for key in tile_mosaic.decoded_tiles._tiles)
    assert np.abs(_pixels(new) - _pixels(old)).mean() < 0.05


@pytest.mark.parametrize(
    "url",
    [
        "0,0,300,200/max/0/default.png",  # not JPEG out
        "0,0,300,200/max/90/default.jpg",  # rotated
        "0,0,300,200/max/!0/default.jpg",  # mirrored
        "0,0,300,200/max/0/gray.jpg",  # another colour than the source's
        "0,0,300,200/max/0/bitonal.jpg",
    ],
)
def test_other_requests_keep_the_pipeline(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    def refuse(*_: object, **__: object) -> bytes:
        raise AssertionError("encoded without the pipeline")

    monkeypatch.setattr(tile_codec, "encode_as", refuse)
    monkeypatch.setattr(tile_codec, "encode_planes", refuse)
    new, old = _both(q85_pages, plan_for(q85_pages, url))
    assert np.array_equal(_pixels(new), _pixels(old))


def test_the_chroma_option_is_followed(q85_pages: Pyramid) -> None:
    """Q90 without forced subsampling is 4:4:4 out (libvips' rule): 4:2:0 tiles cannot give it
    from their planes, so the pixels path encodes it, 4:4:4."""
    plan = plan_for(q85_pages, "0,0,300,200/max/0/default.jpg")
    version = SourceVersion.of(q85_pages.path.stat())
    options = EncodeOptions(jpeg_quality=90, jpeg_chroma_subsampling=False)
    body = render(q85_pages.path, q85_pages.info.format, plan, options, version, _grid(q85_pages, plan))
    with Image.open(io.BytesIO(body)) as image:
        assert image.layer[0][1:3] == (1, 1)  # luma sampled like chroma: 4:4:4
    body = render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
    with Image.open(io.BytesIO(body)) as image:
        assert image.layer[0][1:3] == (2, 2)


def test_planes_are_not_kept(q85_pages: Pyramid) -> None:
    """Crops at their own size rarely share tiles: their planes are decoded for each crop and
    not kept among the decoded tiles (which cost 7 % of a region's render in the mixed list)."""
    plan = plan_for(q85_pages, "10,10,600,300/max/0/default.jpg")
    first, _ = _both(q85_pages, plan)
    again, _ = _both(q85_pages, plan)
    assert again == first
    assert not any(key[3] == "planes" for key in tile_mosaic.decoded_tiles._tiles)


def test_a_damaged_tile_is_never_shown(q85_pages: Pyramid, tmp_path: Path) -> None:
    """A tile that does not decode cleanly to planes goes to the other paths, which say what
    they always said of it; nothing of it is kept."""
    path = noisy_first_tile_copy(q85_pages, tmp_path)
    plan = plan_for(q85_pages, "0,0,300,200/max/0/default.jpg")
    version = SourceVersion.of(path.stat())
    grid = _grid(q85_pages, plan)
    with pytest.raises(MosaicError):
        tile_planes.crop_jpeg(path, version, grid, plan.crop, quality=85, sampling=tile_codec.SAMPLING_420)
    assert_damage_reported_alike(path, q85_pages, plan, grid)
    assert all(key[2] != grid.offsets[0] for key in tile_mosaic.decoded_tiles._tiles)
