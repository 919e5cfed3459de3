"""libjpeg-turbo work on one tile: the one-pixel stretch of edge tiles, and its encoding.

The stretch is checked against a direct float evaluation of the same linear, centre-on-centre
resampling, and against libvips' bicubic enlargement (what the renderer does to the same
crop); the encoded tiles are checked for size, colour model, chroma subsampling and
quantisation tables against what libvips' jpegsave writes with the same settings. The lossless
crop is tested on real pyramids in ``test_passthrough.py``; here, the direct libturbojpeg calls
against the PyTurboJPEG calls they replaced (the same bytes for every edge tile of RGB, YCbCr
and grey pyramids), and the one-pixel stretch against the general resampler it replaced (the
same pixels).
"""

from __future__ import annotations

import gc
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import pyvips
from PIL import Image, JpegImagePlugin

from iiifserver.image import tile_codec
from iiifserver.image.tile_codec import Encoding, stretch_pixels, stretched
from iiifserver.image.tile_files import read_stored_tile
from tests.image.pyramids import Pyramid, open_fd

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


# -- the direct libturbojpeg calls: the bytes PyTurboJPEG made, for less ------------------------


def _former_stretch(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The general resampler ``stretch_pixels`` was until issue 17 (gathering by index): the
    one-pixel stretch must give exactly its pixels."""
    bits = 7

    def taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5, 0, n - 1)
        below = position.astype(np.intp)
        return below, np.minimum(below + 1, n - 1), np.rint((position - below) * (1 << bits)).astype(np.int16)

    def blend(flat: np.ndarray, low: np.ndarray, high: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
        base = np.take(flat, low, axis=axis).astype(np.int16)
        out = np.take(flat, high, axis=axis).astype(np.int16)
        out -= base
        out *= weight
        out += 1 << (bits - 1)
        out >>= bits
        out += base
        return out.astype(np.uint8)

    rows, columns, channels = pixels.shape
    flat = np.ascontiguousarray(pixels).reshape(rows, columns * channels)
    if height != rows:
        low, high, weight = taps(rows, height)
        flat = blend(flat, low, high, weight[:, None], axis=0)
    if width != columns:
        low, high, weight = taps(columns, width)
        channel = np.arange(channels)
        flat = blend(
            flat,
            (low[:, None] * channels + channel).ravel(),
            (high[:, None] * channels + channel).ravel(),
            np.repeat(weight, channels),
            axis=1,
        )
    return flat.reshape(height, width, channels)


@pytest.mark.parametrize(("height", "width", "bands"), [(1, 1, 3), (1, 7, 1), (2, 2, 3), (17, 16, 3), (256, 256, 3),
                                                        (255, 187, 1), (140, 187, 3), (3, 256, 3)])  # fmt: skip
def test_stretch_gives_the_former_resamplers_pixels(height: int, width: int, bands: int) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    noise = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)  # every difference and weight
    smooth = _picture(height, width, bands)
    view = rng.integers(0, 256, (300, 300, bands), dtype=np.uint8)[:height, :width]  # a tile's valid area
    for pixels in (noise, smooth, view):
        for out_height, out_width in ((height + 1, width), (height, width + 1), (height + 1, width + 1)):
            got = stretch_pixels(pixels, out_height, out_width)
            assert got.dtype == np.uint8
            assert np.array_equal(got, _former_stretch(pixels, out_height, out_width)), (out_height, out_width)


def test_stretch_by_more_than_a_pixel_or_less_is_refused() -> None:
    pixels = _picture(20, 30)
    for height, width in ((22, 30), (20, 32), (19, 30), (20, 29)):
        with pytest.raises(ValueError, match="cannot be stretched"):
            stretch_pixels(pixels, height, width)


def _edge_tiles(pyramid: Pyramid) -> list[tuple[bytes, int, int, bool]]:
    """Every padded edge tile of ``pyramid``: (complete JPEG, valid width, valid height, grey)."""
    tiles = []
    with open_fd(pyramid.path) as fd:
        for grid in pyramid.stored.levels:
            assert grid is not None
            tw, th = grid.tile_width, grid.tile_height
            for index in range(len(grid.offsets)):
                x, y = index % grid.across * tw, index // grid.across * th
                valid = (min(tw, grid.width - x), min(th, grid.height - y))
                if valid != (tw, th):
                    tiles.append((read_stored_tile(fd, grid, index), *valid, grid.components == 1))
    return tiles


@needs_turbo
@pytest.mark.parametrize("name", ["q90_pages", "q85_pages", "grey_pages", "odd_256"])
def test_cut_and_stretched_edge_tiles_are_the_bytes_pyturbojpeg_made(name: str, request: pytest.FixtureRequest) -> None:
    """The direct calls (kept handles, no per-call wrapping) against the PyTurboJPEG calls they
    replaced, on every edge tile of RGB (Adobe APP14: components not converted), YCbCr 4:2:0
    and grey pyramids: the same bytes, so the same pixels as before."""
    from turbojpeg import TurboJPEG

    turbo = TurboJPEG()
    pyramid: Pyramid = request.getfixturevalue(name)
    tiles = _edge_tiles(pyramid)
    assert len(tiles) >= 4
    for tile, width, height, grey in tiles:
        assert tile_codec.lossless_crop(tile, width, height) == turbo.crop(tile, 0, 0, width, height)
        for encoding in (Encoding(85, chroma_subsampling=True), Encoding(92, chroma_subsampling=False)):
            for out_width, out_height in ((width + 1, height), (width, height + 1), (width + 1, height + 1)):
                fmt = 6 if grey else 0  # TJPF_GRAY, TJPF_RGB
                decoded = turbo.decode(tile, pixel_format=fmt).reshape(
                    -1, turbo.decode_header(tile)[0], 1 if grey else 3
                )
                former = turbo.encode(
                    _former_stretch(decoded[:height, :width], out_height, out_width),
                    quality=encoding.quality,
                    pixel_format=fmt,
                    jpeg_subsample=encoding.subsampling(grey),
                    flags=4096,  # TJFLAG_ACCURATEDCT
                )
                got = stretched(tile, width, height, out_width, out_height, gray=grey, encoding=encoding)
                assert got == former, (width, height, out_width, out_height, encoding)


@needs_turbo
def test_each_thread_decodes_with_its_own_handles(q85_pages: Pyramid) -> None:
    """The libjpeg instances are per thread: concurrent decodes, cuts and encodes of different
    tiles give what each gives alone."""
    tiles = _edge_tiles(q85_pages)[:6]
    encoding = Encoding(80, chroma_subsampling=True)

    def work(item: tuple[bytes, int, int, bool]) -> tuple[bytes, bytes, bytes | None, bytes | None]:
        tile, width, height, grey = item
        pixels = tile_codec.decode(tile, gray=grey)
        return (
            pixels.tobytes(),
            tile_codec.encode(pixels, quality=80, subsampling=encoding.subsampling(grey)),
            tile_codec.lossless_crop(tile, width, height),
            stretched(tile, width, height, width + 1, height + 1, gray=grey, encoding=encoding),
        )

    alone = [work(item) for item in tiles]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            assert list(pool.map(work, tiles * 4)) == alone * 4


@needs_turbo
def test_damaged_tiles_are_not_cut_and_not_decoded() -> None:
    """A warning (truncated data: libjpeg would go on and make grey pixels) is a refusal, in the
    calling thread only (no process-wide warning filter), for cuts as for decodes."""
    tile = _jpeg(_picture(256, 256))
    truncated = tile[: len(tile) // 2]
    assert tile_codec.lossless_crop(truncated, 200, 100) is None
    assert tile_codec.lossless_crop(b"\xff\xd8 not a jpeg", 200, 100) is None
    with pytest.raises(tile_codec.TurboError):
        tile_codec.decode(truncated, gray=False)
    with pytest.raises(tile_codec.TurboError):
        tile_codec.decode(b"\xff\xd8 not a jpeg", gray=False)
    cut = tile_codec.lossless_crop(tile, 200, 100)
    assert cut is not None
    assert _decode(cut).shape == (100, 200, 3)
    # The decode is libvips' (the same libjpeg-turbo, accurate IDCT, fancy upsampling).
    assert np.array_equal(tile_codec.decode(tile, gray=False), pyvips.Image.jpegload_buffer(tile).numpy())


@needs_turbo
def test_a_threads_libjpeg_instances_end_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept per thread, not per call, and destroyed when the thread ends (no leak per thread)."""
    lib = tile_codec._library()
    assert lib is not None
    made, destroyed = [], []
    init, destroy = lib.init_decompress, lib.destroy
    monkeypatch.setattr(lib, "init_decompress", lambda: made.append(init()) or made[-1])
    monkeypatch.setattr(lib, "destroy", lambda handle: destroyed.append(handle) or destroy(handle))
    tile = _jpeg(_picture(64, 64))

    def decode_twice() -> None:
        tile_codec.decode(tile, gray=False)
        tile_codec.decode(tile, gray=False)

    worker = threading.Thread(target=decode_twice)
    worker.start()
    worker.join()
    gc.collect()
    assert len(made) == 1  # one instance for both decodes
    assert destroyed == made


# -- planes: a JPEG's Y, Cb, Cr as stored, and back ------------------------------------------------


def _pillow_jpeg(pixels: np.ndarray, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.squeeze()).save(out, "JPEG", **options)
    return out.getvalue()


def _smooth(height: int, width: int, bands: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(rng.integers(-3, 4, (height, width, bands)), axis=1) + 128
    return np.clip(smooth, 0, 255).astype(np.uint8)


@needs_turbo
@pytest.mark.parametrize(("subsampling", "sampling"), [(2, tile_codec.SAMPLING_420), (0, tile_codec.SAMPLING_444)])
def test_planes_are_the_stored_samples(subsampling: int, sampling: int) -> None:
    """Decoded to planes, a YCbCr JPEG gives libjpeg's own samples: converted to RGB with the
    decoder's arithmetic they are its pixels; encoded again they give the same picture."""
    pixels = _smooth(48, 80, 3)
    jpeg = _pillow_jpeg(pixels, quality=90, subsampling=subsampling)
    planes = tile_codec.decode_planes(jpeg)
    assert planes.sampling == sampling
    luma, cb, cr = planes.planes
    factor = 2 if sampling == tile_codec.SAMPLING_420 else 1
    assert luma.shape == (48, 80)
    assert cb.shape == cr.shape == (48 // factor, 80 // factor)
    assert not any(plane.flags.writeable for plane in planes.planes)  # may be kept and shared
    # The luma against Pillow's decode of the same stream, converted to Y by the JFIF formula.
    rgb = np.asarray(Image.open(io.BytesIO(jpeg))).astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert np.abs(y - luma).mean() < 0.6
    again = tile_codec.encode_planes(planes, quality=95)
    assert tile_codec.decode_planes(again).sampling == sampling
    assert np.abs(tile_codec.decode(again, gray=False).astype(int) - rgb).mean() < 1.0


@needs_turbo
def test_gray_planes() -> None:
    pixels = _smooth(40, 56, 1)
    planes = tile_codec.decode_planes(_pillow_jpeg(pixels, quality=90))
    assert planes.sampling == tile_codec.SAMPLING_GRAY
    assert len(planes.planes) == 1
    body = tile_codec.encode_planes(planes, quality=90)
    with Image.open(io.BytesIO(body)) as image:
        assert image.mode == "L"
        assert image.size == (56, 40)


@needs_turbo
def test_other_samplings_are_not_planar() -> None:
    """A sound 4:2:2 stream is one this path does not take: ``NotPlanar``, not damage."""
    out = io.BytesIO()
    Image.fromarray(_smooth(32, 48, 3)).save(out, "JPEG", quality=90, subsampling=1)
    with pytest.raises(tile_codec.NotPlanar):
        tile_codec.decode_planes(out.getvalue())


@needs_turbo
def test_cmyk_streams_are_refused() -> None:
    out = io.BytesIO()
    Image.fromarray(_smooth(32, 48, 3)).convert("CMYK").save(out, "JPEG", quality=90)
    with pytest.raises(tile_codec.TurboError):
        tile_codec.decode_planes(out.getvalue())


@needs_turbo
def test_damaged_streams_are_not_decoded_to_planes() -> None:
    jpeg = bytearray(_pillow_jpeg(_smooth(64, 64, 3), quality=90))
    jpeg[len(jpeg) // 2 : len(jpeg) // 2 + 40] = bytes(range(40))
    with pytest.raises(tile_codec.TurboError) as caught:
        tile_codec.decode_planes(bytes(jpeg[: len(jpeg) * 2 // 3]))
    assert not isinstance(caught.value, tile_codec.NotPlanar)


@needs_turbo
@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 3), (15, 15), (17, 9), (20, 20), (33, 7), (5, 40)])
def test_encoding_planes_reads_nothing_past_them(width: int, height: int) -> None:
    """TurboJPEG reads 4:2:0 luma to an even size: an odd plane is extended by its edge, never by
    whatever memory follows it (two different fillers beyond the plane make the same JPEG)."""
    bodies = set()
    for filler in (0, 255):
        luma = np.full((height + 8, width + 16), filler, dtype=np.uint8)
        luma[:height, :width] = _smooth(height, width, 1)[..., 0]
        chroma = np.full(((height + 1) // 2 + 8, (width + 1) // 2 + 16), filler, dtype=np.uint8)
        chroma[: (height + 1) // 2, : (width + 1) // 2] = 128
        view = chroma[: (height + 1) // 2, : (width + 1) // 2]
        planes = tile_codec.Planes(tile_codec.SAMPLING_420, (luma[:height, :width], view, view))
        bodies.add(tile_codec.encode_planes(planes, quality=85))
    assert len(bodies) == 1


@needs_turbo
def test_chroma_planes_of_the_wrong_size_are_refused() -> None:
    luma = np.zeros((16, 16), dtype=np.uint8)
    chroma = np.zeros((7, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="chroma"):
        tile_codec.encode_planes(tile_codec.Planes(tile_codec.SAMPLING_420, (luma, chroma, chroma)), quality=80)
