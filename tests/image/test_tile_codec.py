"""libjpeg-turbo work on one tile: the one-pixel stretch of edge tiles, and its encoding.

The stretch is checked against a direct float evaluation of the same linear, centre-on-centre
resampling, and against libvips' bicubic enlargement (what the renderer does to the same
crop); the encoded tiles are checked for size, colour model, chroma subsampling and
quantisation tables against what libvips' jpegsave writes with the same settings. The lossless
crop is tested on real pyramids in ``test_passthrough.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import pyvips
from PIL import Image, JpegImagePlugin

from iiifserver.image import tile_codec
from iiifserver.image.tile_codec import Encoding, stretch_pixels, stretched

needs_turbo = pytest.mark.skipif(not tile_codec.available(), reason="libturbojpeg0 is not installed")

ENCODING = Encoding(quality=90, chroma_subsampling=True)


def _picture(height: int, width: int, bands: int = 3, noise: float = 4.0, seed: int = 5) -> np.ndarray:
    """Smooth colour fields with hard edges and some grain: interpolation errors show on all."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [
        (128 + 100 * np.sin(xx / (7 + 3 * k)) * np.cos(yy / (5 + 2 * k))).astype(np.float64) for k in range(bands)
    ]
    pixels = np.stack(planes, axis=-1)
    pixels[height // 3 : height // 2, width // 4 : width // 2] = 20
    pixels += rng.normal(0, noise, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _reference(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The same resampling, evaluated directly in float: separable, rows then columns."""

    def axis(values: np.ndarray, size: int, along: int) -> np.ndarray:
        n = values.shape[along]
        out = []
        for i in range(size):
            position = min(max((i + 0.5) * n / size - 0.5, 0.0), n - 1.0)
            below = int(position)
            above = min(below + 1, n - 1)
            weight = position - below
            low = np.take(values, below, axis=along)
            high = np.take(values, above, axis=along)
            out.append(low + (high - low) * weight)
        return np.stack(out, axis=along)

    return axis(axis(pixels.astype(np.float64), height, 0), width, 1)


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image)


def _jpeg(pixels: np.ndarray, quality: int = 95, **options: object) -> bytes:
    image = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    image = image.copy(interpretation="b-w" if pixels.shape[2] == 1 else "srgb")
    return bytes(image.jpegsave_buffer(Q=quality, keep="none", **options))


# -- the stretch -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "out_height", "out_width", "bands"),
    [
        (50, 256, 51, 256, 3),  # a bottom-row tile of a floor-rounded level
        (256, 119, 256, 120, 3),  # a right-column tile
        (140, 187, 141, 188, 3),  # the smallest level of 12000 x 9000, asked for as full/188,
        (125, 187, 125, 188, 1),  # grey
        (17, 16, 18, 17, 3),
    ],
)
def test_stretch_is_the_linear_centre_on_centre_resampling(
    height: int, width: int, out_height: int, out_width: int, bands: int
) -> None:
    pixels = _picture(height, width, bands)
    got = stretch_pixels(pixels, out_height, out_width)
    assert got.shape == (out_height, out_width, bands)
    assert got.dtype == np.uint8
    want = _reference(pixels, out_height, out_width)
    assert np.abs(got.astype(np.float64) - want).max() <= 2.0  # 7-bit weights, a rounding per axis
    # The first row and column are the source's (clamped at the edge), not a blend with zero.
    assert np.abs(got[0].astype(int) - want[0]).max() <= 2


def test_stretch_of_the_same_size_is_the_pixels() -> None:
    pixels = _picture(40, 30)
    assert np.array_equal(stretch_pixels(pixels, 40, 30), pixels)
    view = np.ascontiguousarray(_picture(64, 64))[:40, :30]  # a decoded tile's valid area
    assert np.array_equal(stretch_pixels(view, 40, 30), view)


def test_stretch_is_close_to_the_renderers_bicubic_enlargement() -> None:
    """The renderer enlarges with libvips' bicubic affine on the same pixel-centre grid."""
    pixels = _picture(50, 256)
    image = pyvips.Image.new_from_array(pixels).copy(interpretation="srgb")
    bicubic = image.affine(
        [1, 0, 0, 51 / 50],
        interpolate=pyvips.Interpolate.new("bicubic"),
        idx=0.5,
        idy=0.5,
        odx=-0.5,
        ody=-0.5,
        oarea=[0, 0, 256, 51],
        extend="copy",
    ).numpy()
    diff = np.abs(stretch_pixels(pixels, 51, 256).astype(int) - bicubic.astype(int))
    assert diff.mean() < 1.0
    assert np.percentile(diff, 99) <= 8
    assert diff.max() <= 24  # the hard edges, where bicubic overshoots


def test_a_stretch_that_shifts_content_would_be_caught() -> None:
    """The comparison above discriminates: the same rows shifted by one differ far more."""
    pixels = _picture(50, 256)
    good = stretch_pixels(pixels, 51, 256).astype(int)
    shifted = np.concatenate([pixels[:1], pixels])[:51].astype(int)
    assert np.abs(good - shifted).mean() > 3.0


# -- stretched tiles -------------------------------------------------------------------------


@needs_turbo
@pytest.mark.parametrize(("bands", "quality"), [(3, 90), (3, 75), (1, 85)])
def test_stretched_tile_is_the_valid_area_stretched_and_encoded(bands: int, quality: int) -> None:
    # A padded edge tile: 50 valid rows of 256, the rest black, as libvips writes them.
    content = _picture(50, 256, bands, noise=0)
    padded = np.zeros((256, 256, bands), np.uint8)
    padded[:50] = content
    tile = _jpeg(padded)
    encoding = Encoding(quality=quality, chroma_subsampling=True)
    out = stretched(tile, 256, 50, 256, 51, gray=bands == 1, encoding=encoding)
    assert out is not None
    decoded = _decode(out)
    assert decoded.shape[:2] == (51, 256)
    assert (decoded.ndim == 2) == (bands == 1)  # grey stays one component
    got = decoded.reshape(51, 256, bands).astype(int)
    stored = _decode(tile)[:50].reshape(50, 256, bands)

    def mae(want: np.ndarray) -> float:
        return float(np.abs(got - want.astype(int)).mean())

    # One more JPEG generation (4:2:0 on fine colour stripes) measures 0.8-2.6; the stored rows
    # shifted down one, or padded with a copy of the last row instead of stretched, 4.1-4.8.
    assert mae(stretch_pixels(stored, 51, 256)) < 3.0
    assert mae(np.concatenate([stored[:1], stored])) > 3.5
    assert mae(np.concatenate([stored, stored[-1:]])) > 3.5
    assert decoded[-1].mean() > 40  # the last row is picture, not the black padding below it


@needs_turbo
@pytest.mark.parametrize(
    ("encoding", "sampling"),
    [
        (Encoding(90, chroma_subsampling=True), 2),  # 4:2:0 at every quality
        (Encoding(90, chroma_subsampling=False), 0),  # libvips' choice: 4:4:4 from Q90
        (Encoding(85, chroma_subsampling=False), 2),
    ],
)
def test_stretched_tiles_encode_as_libvips_does(encoding: Encoding, sampling: int) -> None:
    pixels = _picture(140, 187)
    tile = _jpeg(np.pad(pixels, ((0, 116), (0, 69), (0, 0))))
    out = stretched(tile, 187, 140, 188, 141, gray=False, encoding=encoding)
    assert out is not None
    mode = "on" if encoding.chroma_subsampling else "auto"
    rendered = _jpeg(_picture(141, 188), quality=encoding.quality, subsample_mode=mode)
    with Image.open(io.BytesIO(out)) as ours, Image.open(io.BytesIO(rendered)) as theirs:
        assert isinstance(ours, JpegImagePlugin.JpegImageFile)
        assert isinstance(theirs, JpegImagePlugin.JpegImageFile)
        assert ours.size == (188, 141)
        assert JpegImagePlugin.get_sampling(ours) == JpegImagePlugin.get_sampling(theirs) == sampling
        assert ours.quantization == theirs.quantization  # the same quality tables


@needs_turbo
def test_more_than_one_pixel_or_less_is_refused() -> None:
    tile = _jpeg(_picture(64, 64))
    assert stretched(tile, 64, 50, 64, 52, gray=False, encoding=ENCODING) is None
    assert stretched(tile, 64, 50, 66, 50, gray=False, encoding=ENCODING) is None
    assert stretched(tile, 64, 50, 63, 50, gray=False, encoding=ENCODING) is None


@needs_turbo
def test_a_valid_area_larger_than_the_tile_is_refused() -> None:
    tile = _jpeg(_picture(64, 64))
    assert stretched(tile, 64, 80, 64, 81, gray=False, encoding=ENCODING) is None


@needs_turbo
def test_damaged_tiles_are_refused_not_encoded() -> None:
    tile = _jpeg(_picture(256, 256))
    truncated = tile[: len(tile) // 2]  # libjpeg warns and fills the rest with grey
    assert stretched(truncated, 256, 50, 256, 51, gray=False, encoding=ENCODING) is None
    assert stretched(b"\xff\xd8 not a jpeg", 256, 50, 256, 51, gray=False, encoding=ENCODING) is None
    assert stretched(tile, 256, 50, 256, 51, gray=False, encoding=ENCODING) is not None
