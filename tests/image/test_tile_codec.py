"""libjpeg-turbo calls on tiles (``tile_codec``): the direct calls against the PyTurboJPEG calls
they replaced (the same bytes for every edge tile of RGB, YCbCr and grey pyramids, cut or
stretched), a thread's own libjpeg instances, and planes: a JPEG's Y, Cb, Cr as stored, and back.
The lossless crop is tested on real pyramids in ``test_passthrough.py``, the stretch in
``test_tile_stretch.py``.
"""

from __future__ import annotations

import gc
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import pyvips
from PIL import Image

from iiifserver.image import tile_codec
from iiifserver.image.tile_codec import Encoding
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_stretch import stretched
from tests.image.pyramids import Pyramid, open_fd
from tests.image.tile_pictures import decode_jpeg, former_stretch, jpeg_of, needs_turbo, picture


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
                    former_stretch(decoded[:height, :width], out_height, out_width),
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
    tile = jpeg_of(picture(256, 256))
    truncated = tile[: len(tile) // 2]
    assert tile_codec.lossless_crop(truncated, 200, 100) is None
    assert tile_codec.lossless_crop(b"\xff\xd8 not a jpeg", 200, 100) is None
    with pytest.raises(tile_codec.TurboError):
        tile_codec.decode(truncated, gray=False)
    with pytest.raises(tile_codec.TurboError):
        tile_codec.decode(b"\xff\xd8 not a jpeg", gray=False)
    cut = tile_codec.lossless_crop(tile, 200, 100)
    assert cut is not None
    assert decode_jpeg(cut).shape == (100, 200, 3)
    # The decode is libvips' (the same libjpeg-turbo, accurate IDCT, fancy upsampling).
    assert np.array_equal(tile_codec.decode(tile, gray=False), pyvips.Image.jpegload_buffer(tile).numpy())


@needs_turbo
def test_a_damaged_stream_spoils_no_later_call() -> None:
    """libturbojpeg 2.1 left an instance whose header read failed unusable: every later decode on
    it failed ("Bogus Huffman table definition"), so one damaged tile sent all later decodes of
    its thread to libvips. The failed instance is discarded; the next call makes a new one."""
    tile = jpeg_of(picture(64, 64))
    bad_marker = bytearray(tile)
    bad_marker[150:160] = bytes(10)  # inside the tables: "Bogus marker length"
    damaged = [bytes(bad_marker), tile[: len(tile) // 2], b"\xff\xd8 not a jpeg"]
    expected = tile_codec.decode(tile, gray=False)
    planes = tile_codec.decode_planes(tile)
    for junk in damaged:
        with pytest.raises(tile_codec.TurboError):
            tile_codec.decode(junk, gray=False)
        assert np.array_equal(tile_codec.decode(tile, gray=False), expected)
        with pytest.raises(tile_codec.TurboError):
            tile_codec.decode_planes(junk)
        again = tile_codec.decode_planes(tile)
        assert all(np.array_equal(a, b) for a, b in zip(again.planes, planes.planes, strict=True))
        assert tile_codec.lossless_crop(junk, 32, 32) is None
        cut = tile_codec.lossless_crop(tile, 32, 32)
        assert cut is not None
        assert decode_jpeg(cut).shape == (32, 32, 3)


@needs_turbo
def test_a_threads_libjpeg_instances_end_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept per thread, not per call, and destroyed when the thread ends (no leak per thread)."""
    lib = tile_codec._library()
    assert lib is not None
    made, destroyed = [], []
    init, destroy = lib.init_decompress, lib.destroy
    monkeypatch.setattr(lib, "init_decompress", lambda: made.append(init()) or made[-1])
    monkeypatch.setattr(lib, "destroy", lambda handle: destroyed.append(handle) or destroy(handle))
    tile = jpeg_of(picture(64, 64))

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
@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 5), (17, 9), (431, 21), (20, 33)])
def test_odd_sized_images_decode_to_planes_of_their_size(width: int, height: int) -> None:
    """TurboJPEG writes 4:2:0 luma to an even size: the padding is cut off, never written past
    the plane (a stored tile is whole MCUs; an assembled crop or a response need not be)."""
    pixels = _smooth(height, width, 3)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, subsampling=2)
    jpeg = out.getvalue()
    luma, cb, cr = tile_codec.decode_planes(jpeg).planes
    assert luma.shape == (height, width)
    assert luma.flags.c_contiguous
    assert cb.shape == cr.shape == ((height + 1) // 2, (width + 1) // 2)
    rgb = np.asarray(Image.open(io.BytesIO(jpeg))).astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert np.abs(y - luma).mean() < 0.6


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
