"""The one-pixel stretch of edge tiles (``tile_stretch``), and its encoding.

The stretch is checked against a direct float evaluation of the same linear, centre-on-centre
resampling, against libvips' bicubic enlargement (what the renderer does to the same crop), and
against the general resampler it replaced (the same pixels); the encoded tiles are checked for
size, colour model, chroma subsampling and quantisation tables against what libvips' jpegsave
writes with the same settings.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import pyvips
from PIL import Image, JpegImagePlugin

from iiifserver.image.tile_codec import Encoding
from iiifserver.image.tile_stretch import stretch_pixels, stretched
from tests.image.tile_pictures import decode_jpeg, former_stretch, jpeg_of, needs_turbo, picture

ENCODING = Encoding(quality=90, chroma_subsampling=True)


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
    pixels = picture(height, width, bands)
    got = stretch_pixels(pixels, out_height, out_width)
    assert got.shape == (out_height, out_width, bands)
    assert got.dtype == np.uint8
    want = _reference(pixels, out_height, out_width)
    assert np.abs(got.astype(np.float64) - want).max() <= 2.0  # 7-bit weights, a rounding per axis
    # The first row and column are the source's (clamped at the edge), not a blend with zero.
    assert np.abs(got[0].astype(int) - want[0]).max() <= 2


def test_stretch_of_the_same_size_is_the_pixels() -> None:
    pixels = picture(40, 30)
    assert np.array_equal(stretch_pixels(pixels, 40, 30), pixels)
    view = np.ascontiguousarray(picture(64, 64))[:40, :30]  # a decoded tile's valid area
    assert np.array_equal(stretch_pixels(view, 40, 30), view)


def test_stretch_is_close_to_the_renderers_bicubic_enlargement() -> None:
    """The renderer enlarges with libvips' bicubic affine on the same pixel-centre grid."""
    pixels = picture(50, 256)
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
    pixels = picture(50, 256)
    good = stretch_pixels(pixels, 51, 256).astype(int)
    shifted = np.concatenate([pixels[:1], pixels])[:51].astype(int)
    assert np.abs(good - shifted).mean() > 3.0


# -- stretched tiles -------------------------------------------------------------------------


@needs_turbo
@pytest.mark.parametrize(("bands", "quality"), [(3, 90), (3, 75), (1, 85)])
def test_stretched_tile_is_the_valid_area_stretched_and_encoded(bands: int, quality: int) -> None:
    # A padded edge tile: 50 valid rows of 256, the rest black, as libvips writes them.
    content = picture(50, 256, bands, noise=0)
    padded = np.zeros((256, 256, bands), np.uint8)
    padded[:50] = content
    tile = jpeg_of(padded)
    encoding = Encoding(quality=quality, chroma_subsampling=True)
    out = stretched(tile, 256, 50, 256, 51, gray=bands == 1, encoding=encoding)
    assert out is not None
    decoded = decode_jpeg(out)
    assert decoded.shape[:2] == (51, 256)
    assert (decoded.ndim == 2) == (bands == 1)  # grey stays one component
    got = decoded.reshape(51, 256, bands).astype(int)
    stored = decode_jpeg(tile)[:50].reshape(50, 256, bands)

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
    pixels = picture(140, 187)
    tile = jpeg_of(np.pad(pixels, ((0, 116), (0, 69), (0, 0))))
    out = stretched(tile, 187, 140, 188, 141, gray=False, encoding=encoding)
    assert out is not None
    mode = "on" if encoding.chroma_subsampling else "auto"
    rendered = jpeg_of(picture(141, 188), quality=encoding.quality, subsample_mode=mode)
    with Image.open(io.BytesIO(out)) as ours, Image.open(io.BytesIO(rendered)) as theirs:
        assert isinstance(ours, JpegImagePlugin.JpegImageFile)
        assert isinstance(theirs, JpegImagePlugin.JpegImageFile)
        assert ours.size == (188, 141)
        assert JpegImagePlugin.get_sampling(ours) == JpegImagePlugin.get_sampling(theirs) == sampling
        assert ours.quantization == theirs.quantization  # the same quality tables


@needs_turbo
def test_more_than_one_pixel_or_less_is_refused() -> None:
    tile = jpeg_of(picture(64, 64))
    assert stretched(tile, 64, 50, 64, 52, gray=False, encoding=ENCODING) is None
    assert stretched(tile, 64, 50, 66, 50, gray=False, encoding=ENCODING) is None
    assert stretched(tile, 64, 50, 63, 50, gray=False, encoding=ENCODING) is None


@needs_turbo
def test_a_valid_area_larger_than_the_tile_is_refused() -> None:
    tile = jpeg_of(picture(64, 64))
    assert stretched(tile, 64, 80, 64, 81, gray=False, encoding=ENCODING) is None


@needs_turbo
def test_damaged_tiles_are_refused_not_encoded() -> None:
    tile = jpeg_of(picture(256, 256))
    truncated = tile[: len(tile) // 2]  # libjpeg warns and fills the rest with grey
    assert stretched(truncated, 256, 50, 256, 51, gray=False, encoding=ENCODING) is None
    assert stretched(b"\xff\xd8 not a jpeg", 256, 50, 256, 51, gray=False, encoding=ENCODING) is None
    assert stretched(tile, 256, 50, 256, 51, gray=False, encoding=ENCODING) is not None


# -- against the resampler it replaced ---------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "bands"), [(1, 1, 3), (1, 7, 1), (2, 2, 3), (17, 16, 3), (256, 256, 3),
                                                        (255, 187, 1), (140, 187, 3), (3, 256, 3)])  # fmt: skip
def test_stretch_gives_the_former_resamplers_pixels(height: int, width: int, bands: int) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    noise = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)  # every difference and weight
    smooth = picture(height, width, bands)
    view = rng.integers(0, 256, (300, 300, bands), dtype=np.uint8)[:height, :width]  # a tile's valid area
    for pixels in (noise, smooth, view):
        for out_height, out_width in ((height + 1, width), (height, width + 1), (height + 1, width + 1)):
            got = stretch_pixels(pixels, out_height, out_width)
            assert got.dtype == np.uint8
            assert np.array_equal(got, former_stretch(pixels, out_height, out_width)), (out_height, out_width)


def test_stretch_by_more_than_a_pixel_or_less_is_refused() -> None:
    pixels = picture(20, 30)
    for height, width in ((22, 30), (20, 32), (19, 30), (20, 29)):
        with pytest.raises(ValueError, match="cannot be stretched"):
            stretch_pixels(pixels, height, width)
