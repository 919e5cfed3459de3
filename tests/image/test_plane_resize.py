"""Plain JPEG requests at other sizes than their level's, resampled from the stored tiles' Y, Cb,
Cr planes by lanczos3 (``plane_resize``, the C extension ``_lanczos``), against the libvips
pipeline they replace.

The arithmetic is checked against an independent computation in floating point (numpy, the
kernel written out) and against libvips' own ``reduce`` on one band; the served pixels against
the pipeline and against the stored picture itself.

Bounds, in levels out of 255, measured with libvips 8.18 and libjpeg-turbo 2.1, every output
encoded at Q85 4:2:0:

* One plane against the float computation: max 1, mean 0.000-0.010 (the weights' 14-bit fixed
  point, one rounding after each pass); bounded at max <= 1 and mean < 0.02.
* One plane against libvips' ``reduce(kernel="lanczos3")`` of the same band: max 2, mean
  0.02-0.22, as far from the float computation as from this one (libvips takes each output
  sample's weights from a table of sub-pixel positions; here each is computed at its exact
  position); bounded at max <= 2 and mean < 0.3.
* Served requests against the pipeline (pixels decoded to RGB, reduced by libvips, encoded by
  libjpeg-turbo): the luma reduced alike, the chroma from the stored chroma rather than its
  upsampled and re-averaged copy, so the two encodings quantise slightly different pictures of
  this very busy test image (noise at every scale: the small levels' thumbnails differ most).
  Per request measured mean 0.3-4.6, on average 1.9-2.2 per colour pyramid and 0.6 gray;
  bounded at mean < 6 per request and < 2.5 on average. What bounds the quality is the
  comparison with the stored picture itself (the level decoded by libvips, reduced in floating
  point): the planes' JPEG is no further off than the pipeline's (on a 375 x 250 level's
  thumbnail, chroma error 5.8 against 6.3); bounded at 2 % per request and 1 % on average.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from iiifserver.image import plane_resize, tile_codec, tile_mosaic, tile_planes
from iiifserver.image.planner import Plan
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.tile_mosaic import MosaicError
from tests.image.pyramids import (
    Pyramid,
    assert_damage_reported_alike,
    decoded16,
    errors_against_source,
    level_grid_of,
    noisy_first_tile_copy,
    plan_for,
    tiffload,
)

pytestmark = pytest.mark.skipif(
    not tile_mosaic.scales() or not plane_resize.available(),
    reason="libturbojpeg or the _lanczos extension is missing (test_the_extension_is_built says which)",
)

OPTIONS = EncodeOptions(jpeg_quality=85)


def test_the_extension_is_built() -> None:
    """The install builds ``_lanczos`` (``setup.py``); without it the server resizes with libvips."""
    assert plane_resize._lanczos is not None


# -- the arithmetic, on one plane ---------------------------------------------------------------


def _lanczos3(x: np.ndarray) -> np.ndarray:
    out = np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
    return np.where(x == 0, 1.0, out)


def _float_weights(inputs: int, outputs: int, origin: float, step: float) -> np.ndarray:
    """outputs x inputs: the kernel at each source sample, the edge repeated, summing to one."""
    stretch = max(step, 1.0)
    matrix = np.zeros((outputs, inputs))
    for j in range(outputs):
        centre = origin + j * step
        for i in range(math.floor(centre - 3 * stretch), math.ceil(centre + 3 * stretch) + 1):
            matrix[j, min(max(i, 0), inputs - 1)] += _lanczos3(np.array((i - centre) / stretch))
        matrix[j] /= matrix[j].sum()
    return matrix


def _float_resample(plane: np.ndarray, rows: int, columns: int) -> np.ndarray:
    y0, ys = plane_resize._axis(plane.shape[0], rows, 1, 1)
    x0, xs = plane_resize._axis(plane.shape[1], columns, 1, 1)
    down = _float_weights(plane.shape[0], rows, y0, ys)
    across = _float_weights(plane.shape[1], columns, x0, xs)
    middle = np.clip(np.rint(down @ plane.astype(float)), 0, 255)  # rounded between passes, as the C does
    return np.clip(np.rint(middle @ across.T), 0, 255)


def _busy_plane(rows: int, columns: int, seed: int) -> np.ndarray:
    """Noise over a smooth field: both fine detail (where lanczos rings) and gradients."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    smooth = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    return np.clip(smooth + rng.normal(0, 30, (rows, columns)), 0, 255).astype(np.uint8)


_SIZES = [
    ((700, 1000), (420, 600)),
    ((281, 375), (150, 200)),
    ((140, 187), (48, 64)),  # nearly 3x
    ((513, 257), (129, 65)),  # just under 4x
    ((9, 9), (8, 8)),
    ((3, 50), (1, 17)),  # a single output row
    ((64, 64), (64, 40)),  # one axis kept
    ((1, 1), (1, 1)),
]


@pytest.mark.parametrize(("source", "target"), _SIZES)
def test_one_plane_matches_a_float_computation(source: tuple[int, int], target: tuple[int, int]) -> None:
    plane = _busy_plane(*source, seed=source[0])
    out = np.empty(target, np.uint8)
    y0, ys = plane_resize._axis(source[0], target[0], 1, 1)
    x0, xs = plane_resize._axis(source[1], target[1], 1, 1)
    plane_resize._lanczos.resample(plane, out, x0, xs, y0, ys)
    diff = np.abs(out.astype(int) - _float_resample(plane, *target))
    assert diff.max() <= 1, diff.max()
    assert diff.mean() < 0.02, diff.mean()


@pytest.mark.parametrize(("source", "target"), [s for s in _SIZES if s[0] != s[1]])
def test_one_plane_is_libvips_reduce(source: tuple[int, int], target: tuple[int, int]) -> None:
    plane = _busy_plane(*source, seed=7)
    out = np.empty(target, np.uint8)
    y0, ys = plane_resize._axis(source[0], target[0], 1, 1)
    x0, xs = plane_resize._axis(source[1], target[1], 1, 1)
    plane_resize._lanczos.resample(plane, out, x0, xs, y0, ys)
    band = pyvips.Image.new_from_array(plane).cast("uchar")
    reduced = band.reduce(source[1] / target[1], source[0] / target[0], kernel="lanczos3")
    expected = np.asarray(reduced.numpy()).reshape(reduced.height, reduced.width)
    assert expected.shape == target
    diff = np.abs(out.astype(int) - expected)
    assert diff.max() <= 2, diff.max()
    assert diff.mean() < 0.3, diff.mean()


def test_a_flat_plane_stays_flat_and_an_edge_stays_put() -> None:
    """Weights sum to exactly one (no drift on a flat field); a step edge is not shifted."""
    out = np.empty((37, 53), np.uint8)
    plane_resize._lanczos.resample(np.full((100, 150), 201, np.uint8), out, 0.9, 2.8, 0.85, 2.7)
    assert (out == 201).all()
    edge = np.zeros((64, 128), np.uint8)
    edge[:, 64:] = 255
    half = np.empty((32, 64), np.uint8)
    plane_resize._lanczos.resample(edge, half, *plane_resize._axis(128, 64, 1, 1), *plane_resize._axis(64, 32, 1, 1))
    assert half[0, 31] + half[0, 32] == 255  # symmetric about the edge, which lies between them
    assert (half[:, :30] <= 2).all()
    assert (half[:, 34:] >= 253).all()


def test_chroma_geometry() -> None:
    """A 4:2:0 chroma plane is resampled on its own grid: for a crop of 10 pixels to 5, chroma
    sample j (pixels 4j..4j+3 of the crop) is centred on stored chroma sample 2j + 1/2."""
    origin, step = plane_resize._axis(10, 5, 2, 2)
    assert step == 2.0
    assert origin == 0.5
    # A crop starting on an odd pixel: its stored chroma begins with the sample covering that
    # pixel and the one before, half a sample earlier, so every centre moves half a sample on.
    assert plane_resize._axis(10, 5, 2, 2, start=1) == (1.0, 2.0)
    assert plane_resize._axis(10, 5, 2, 2, start=6) == (0.5, 2.0)
    assert plane_resize._axis(10, 5, 1, 1, start=1) == (0.5, 2.0)  # the luma starts on the crop
    # a ramp's chroma keeps its values at those centres
    ramp = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (4, 1))  # 25 samples: crop of 50 pixels
    out = np.empty((2, 13), np.uint8)  # 25 output pixels: 13 chroma samples
    plane_resize._lanczos.resample(ramp, out, *plane_resize._axis(50, 25, 2, 2), *plane_resize._axis(8, 4, 2, 2))
    assert list(out[0, 1:11]) == [int(10 * (2 * j + 0.5) + 0.5) for j in range(1, 11)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8), 0.5, 2.0, 0.5, 0.0), "steps"),
        ((np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8), 0.5, 65.0, 0.5, 2.0), "steps"),
        ((np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8), math.nan, 2.0, 0.5, 2.0), "finite"),
        ((np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2), np.uint8), 0.5, 2.0, 0.5, 2.0), "2-D"),
        ((np.zeros((4, 4), np.uint16), np.zeros((2, 2), np.uint8), 0.5, 2.0, 0.5, 2.0), "2-D"),
        ((np.zeros((4, 8), np.uint8)[:, ::2], np.zeros((2, 2), np.uint8), 0.5, 2.0, 0.5, 2.0), "2-D"),
        ((np.zeros((4, 4), np.uint8), np.zeros((0, 2), np.uint8), 0.5, 2.0, 0.5, 2.0), "empty"),
        ((np.zeros((4, 4), np.uint8), np.zeros((65537, 1), np.uint8), 0.5, 2.0, 0.5, 2.0), "65536"),
        ((np.zeros((4, 4), np.uint8), bytes(4), 0.5, 2.0, 0.5, 2.0), "writable"),  # read-only target
    ],
)
def test_bad_arguments_are_refused(args: tuple[object, ...], message: str) -> None:
    with pytest.raises((ValueError, TypeError, BufferError), match=message):
        plane_resize._lanczos.resample(*args)


def test_applies_to_reductions_below_four_only() -> None:
    assert plane_resize.applies(1000, 700, 600, 420)
    assert plane_resize.applies(1000, 700, 1000, 420)  # one axis kept
    assert not plane_resize.applies(1000, 700, 1000, 700)  # nothing to resample
    assert not plane_resize.applies(1000, 700, 250, 420)  # 4x across: libvips shrinks first
    assert not plane_resize.applies(1000, 700, 1001, 700)  # an enlargement
    assert not plane_resize.applies(1000, 700, 0, 0)


def test_without_the_extension_nothing_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plane_resize, "_lanczos", None)
    assert not plane_resize.available()
    assert not plane_resize.applies(1000, 700, 600, 420)


# -- served requests ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _empty_tile_memory() -> None:
    tile_mosaic.decoded_tiles.clear()


_pixels = decoded16
_grid = level_grid_of


def _both(
    pyramid: Pyramid, plan: Plan, monkeypatch: pytest.MonkeyPatch, path: Path | None = None
) -> tuple[bytes, bytes]:
    """(the planes' answer, the pipeline's from decoded pixels) for ``plan``."""
    path = path or pyramid.path
    version = SourceVersion.of(path.stat())
    new = render(path, pyramid.info.format, plan, OPTIONS, version, _grid(pyramid, plan))
    with monkeypatch.context() as patch:
        patch.setattr(plane_resize, "_lanczos", None)
        old = render(path, pyramid.info.format, plan, OPTIONS, version, _grid(pyramid, plan))
    return new, old


def _requests(pyramid: Pyramid, n: int, seed: int) -> list[str]:
    """Thumbnails, random regions at random reductions below 4, odd corners and the level's edge."""
    width, height = pyramid.info.width, pyramid.info.height
    rng = random.Random(seed)
    own = "gray" if pyramid.info.colour.value == "gray" else "color"
    out = [
        "full/!200,200/0/default.jpg",
        "full/,150/0/default.jpg",
        f"full/!64,64/0/{own}.jpg",
        f"{width - 301},{height - 203},301,203/151,/0/default.jpg",  # the level's last pixels
        "1,1,255,255/200,/0/default.jpg",
    ]
    while len(out) < n:
        w, h = rng.randint(8, min(1200, width)), rng.randint(8, min(1200, height))
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        target = max(1, round(w / rng.uniform(1.01, 3.9)))
        out.append(f"{x},{y},{w},{h}/{target},/0/default.jpg")
    return out


def _reference(pyramid: Pyramid, plan: Plan) -> np.ndarray:
    """The stored picture itself: the level decoded by libvips, reduced in floating point."""
    level = tiffload(pyramid.path, plan.level).crop(plan.crop.x, plan.crop.y, plan.crop.w, plan.crop.h)
    reduced = level.cast("float").reduce(plan.crop.w / plan.width, plan.crop.h / plan.height, kernel="lanczos3")
    return np.asarray(reduced.numpy()).reshape(plan.height, plan.width, -1)


@pytest.mark.parametrize("name", ["q85_pages", "grey_pages", "odd_64", "q85_subifd"])
def test_resized_requests_come_from_the_planes(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    resampled: list[int] = []
    real = plane_resize.resized
    monkeypatch.setattr(plane_resize, "resized", lambda *a: resampled.append(1) or real(*a))
    means, errors = [], []
    for url in _requests(pyramid, 24, seed=len(name)):
        plan = plan_for(pyramid, url)
        if not plane_resize.applies(plan.crop.w, plan.crop.h, plan.width, plan.height):
            continue  # a reduction of 4 or more within the level: the pipeline's
        before = len(resampled)
        new, old = _both(pyramid, plan, monkeypatch)
        assert len(resampled) == before + 1, url  # from the planes
        a, b = _pixels(new), _pixels(old)
        assert a.shape == b.shape, url
        assert a.shape[:2] == (plan.height, plan.width), url
        diff = np.abs(a - b)
        if plan.width * plan.height >= 32 * 32:  # on a few pixels, a mean is one block's noise
            assert diff.mean() < 6, (url, diff.mean())
            means.append(diff.mean())
            errors.append(errors_against_source(a, b, _reference(pyramid, plan).reshape(a.shape), slack=0.02))
        if name == "grey_pages":
            with Image.open(io.BytesIO(new)) as image:
                assert image.mode == "L"
    assert len(means) >= 12
    assert np.mean(means) < 2.5
    new_error, old_error = np.mean(errors, axis=0)
    assert new_error <= old_error * 1.01, (new_error, old_error)


def test_both_ways_to_the_planes_give_the_same_bytes(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C extension's one call for all tiles and ``tile_codec`` tile by tile (the way without
    ``_jpeg_blocks``) hand the resampler the same planes, odd corners included."""
    resampled: list[int] = []
    real = plane_resize.resized
    monkeypatch.setattr(plane_resize, "resized", lambda *a: resampled.append(1) or real(*a))
    version = SourceVersion.of(q85_pages.path.stat())
    urls = ["33,171,423,684/303,/0/default.jpg", "34,172,423,684/303,/0/default.jpg", "full/!200,200/0/default.jpg"]
    for url in urls:
        plan = plan_for(q85_pages, url)
        at_once = render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
        with monkeypatch.context() as patch:
            patch.setattr(tile_planes, "_jpeg_blocks", None)
            per_tile = render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
        assert at_once == per_tile, url
    assert len(resampled) == 2 * len(urls)


def test_a_region_one_pixel_off_fails_the_bound(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds above discriminate: the planes' output against the pipeline's one pixel off."""
    new, _ = _both(q85_pages, plan_for(q85_pages, "601,401,900,600/500,/0/default.jpg"), monkeypatch)
    _, shifted = _both(q85_pages, plan_for(q85_pages, "603,401,900,600/500,/0/default.jpg"), monkeypatch)
    assert np.abs(_pixels(new) - _pixels(shifted)).mean() >= 3


@pytest.mark.parametrize(
    "url",
    [
        "0,0,600,400/300,/0/default.png",  # not JPEG out
        "0,0,600,400/300,/90/default.jpg",  # rotated
        "0,0,600,400/300,/0/gray.jpg",  # another colour than the source's
        "0,0,2000,1000/400,/0/default.jpg",  # 5x within level 0? the planner picks a smaller level
    ],
)
def test_other_requests_keep_their_paths(url: str, q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    resampled: list[int] = []
    real = plane_resize.resized
    monkeypatch.setattr(plane_resize, "resized", lambda *a: resampled.append(1) or real(*a))
    plan = plan_for(q85_pages, url)
    version = SourceVersion.of(q85_pages.path.stat())
    render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
    plain = url.endswith("default.jpg") and "/0/" in url
    applies = plane_resize.applies(plan.crop.w, plan.crop.h, plan.width, plan.height)
    assert len(resampled) == (1 if plain and applies else 0)


def test_rgb_coded_tiles_keep_the_pixel_path(q90_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvips stores Q90 tiles as RGB: nothing to resample as planes; the pixels are served."""
    plan = plan_for(q90_pages, "100,100,600,400/300,/0/default.jpg")
    new, old = _both(q90_pages, plan, monkeypatch)
    assert np.abs(_pixels(new) - _pixels(old)).mean() < 0.05


def test_a_damaged_tile_is_never_shown(q85_pages: Pyramid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tile that does not decode cleanly goes to the other paths, which say what they always
    said of it."""
    path = noisy_first_tile_copy(q85_pages, tmp_path)
    plan = plan_for(q85_pages, "0,0,300,200/200,/0/default.jpg")
    assert plan.level == q85_pages.info.levels[0]
    grid = _grid(q85_pages, plan)
    version = SourceVersion.of(path.stat())
    with pytest.raises(MosaicError):
        tile_planes.crop_jpeg(
            path, version, grid, plan.crop, quality=85, sampling=tile_codec.SAMPLING_420, size=(plan.width, plan.height)
        )
    assert_damage_reported_alike(path, q85_pages, plan, grid)
