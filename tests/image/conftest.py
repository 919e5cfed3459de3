"""Test sources for the image pipeline, generated with pyvips once per session.

Every source is built from one deterministic (seeded) synthetic picture: Perlin and Worley
noise for texture at several scales, Gaussian noise for per-pixel detail, and hard-edged
shapes (rectangles, discs, a checkerboard, one-pixel lines) so that a misplaced crop, a wrong
level or a wrong rotation shows up in pixel comparisons. Each fixture builds its file lazily,
so a test run pays only for the sources it uses.

``Sample.pixels`` is what the file is known to encode, as 8-bit sRGB (or 8-bit gray, or 8-bit
RGBA): the independent reference the render tests compare against. For lossy sources it is
``None`` and the tests decode level 0 themselves.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
import tifffile

from iiifserver.app import create_app
from iiifserver.config import Settings
from iiifserver.image.probe import configure_libvips
from iiifserver.image.service import ImageService
from iiifserver.image.sources import SourceFile
from tests.image.pyramids import Pyramid, jpeg_pyramid, layout, pyramid_of

TILE = 256
FULL_W, FULL_H = 3000, 2000
ODD_W, ODD_H = 3001, 2001
SMALL_W, SMALL_H = 1600, 1200  # gray, ICC, 16-bit and RGBA pyramids: enough for four levels


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    pixels: np.ndarray | None = None  # the known full-resolution content, uint8, HxW or HxWxC


@pytest.fixture(scope="session", autouse=True)
def _libvips_policy() -> None:
    """The production libvips policy: only TIFF/JPEG/PNG loaders, no operation cache."""
    configure_libvips()


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


# -- the synthetic picture -------------------------------------------------------------------


def _draw_shapes(rgb: np.ndarray) -> None:
    """Hard edges at positions that are not tile-aligned, including near the right/bottom edges."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    rgb[311:622, 517:803] = (10, 10, 10)  # dark rectangle with a light frame
    rgb[311:314, 517:803] = rgb[619:622, 517:803] = (250, 250, 250)
    rgb[311:622, 517:520] = rgb[311:622, 800:803] = (250, 250, 250)
    rgb[(xx - 2203) ** 2 + (yy - 701) ** 2 < 151**2] = (240, 40, 40)  # red disc
    rgb[(xx - 1100) ** 2 + (yy - 1500) ** 2 < 97**2] = (30, 60, 230)  # blue disc
    checker = ((xx[1301:1717, 1203:1711] // 32 + yy[1301:1717, 1203:1711] // 32) % 2).astype(bool)
    patch = rgb[1301:1717, 1203:1711]
    patch[checker] = (255, 255, 255)
    patch[~checker] = (0, 0, 0)
    rgb[40:1960:37, 60:400] = (255, 255, 0)  # one-pixel horizontal lines
    rgb[1700:1990, 2000:2990:29] = (0, 255, 255)  # one-pixel vertical lines
    diagonal = (np.abs(xx - yy - 900) <= 1) & (yy > 100) & (yy < 900)
    rgb[diagonal] = (255, 0, 255)
    rgb[h - 130 : h - 5, w - 170 : w - 9] = (20, 200, 20)  # green block in the edge tiles
    rgb[h - 100 : h - 35, w - 140 : w - 39] = (200, 20, 200)


@pytest.fixture(scope="session")
def base_rgb() -> np.ndarray:
    """ODD_H x ODD_W x 3 uint8, deterministic: seeded noise plus hard-edged shapes."""
    w, h = ODD_W, ODD_H
    fine = pyvips.Image.perlin(w, h, cell_size=40, seed=1)
    coarse = pyvips.Image.perlin(w, h, cell_size=150, seed=2)
    cells = pyvips.Image.worley(w, h, cell_size=90, seed=3) - 30
    grain = pyvips.Image.gaussnoise(w, h, sigma=14, mean=0, seed=4)
    red = fine * 90 + coarse * 60 + grain + 128
    green = cells * 1.5 - coarse * 50 + grain * 0.5 + 128
    blue = cells * -1.2 - fine * 60 + 140
    image = red.bandjoin([green, blue]).rint().cast("uchar")  # cast clamps to 0..255
    rgb = np.ascontiguousarray(image.numpy())
    _draw_shapes(rgb)
    rgb.setflags(write=False)
    return rgb


def _vips(pixels: np.ndarray, interpretation: str) -> pyvips.Image:
    return pyvips.Image.new_from_array(np.ascontiguousarray(pixels)).copy(interpretation=interpretation)


def _pyramid(image: pyvips.Image, path: Path, **options: object) -> Path:
    image.tiffsave(str(path), tile=True, tile_width=TILE, tile_height=TILE, pyramid=True, **options)
    return path


def _readonly(pixels: np.ndarray) -> np.ndarray:
    pixels = np.ascontiguousarray(pixels)
    pixels.setflags(write=False)
    return pixels


# -- pyramids --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rgb_pages(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """3000x2000 RGB, pyramid levels as pages, deflate (lossless)."""
    pixels = _readonly(base_rgb[:FULL_H, :FULL_W])
    path = _pyramid(_vips(pixels, "srgb"), source_dir / "rgb_pages.tif", compression="deflate")
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def rgb_subifd_jpeg(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """The same picture, levels as SubIFDs of page 0, JPEG Q95 (lossy: no known pixels)."""
    image = _vips(base_rgb[:FULL_H, :FULL_W], "srgb")
    path = _pyramid(image, source_dir / "rgb_subifd_jpeg.tif", compression="jpeg", Q=95, subifd=True)
    return Sample(path)


@pytest.fixture(scope="session")
def rgb_odd(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """3001x2001: every level size is a rounded half."""
    pixels = _readonly(base_rgb)
    path = _pyramid(_vips(pixels, "srgb"), source_dir / "rgb_odd.tif", compression="deflate")
    return Sample(path, pixels)


def _small_rgb(base_rgb: np.ndarray) -> np.ndarray:
    """A 1600x1200 window holding the discs, the checkerboard and the framed rectangle."""
    return base_rgb[300 : 300 + SMALL_H, 500 : 500 + SMALL_W]


@pytest.fixture(scope="session")
def gray_pyramid(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    rgb = _small_rgb(base_rgb).astype(np.uint16)
    pixels = _readonly(((rgb[..., 0] + rgb[..., 1] * 2 + rgb[..., 2]) // 4).astype(np.uint8))
    path = _pyramid(_vips(pixels, "b-w"), source_dir / "gray.tif", compression="deflate")
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def icc_p3_pyramid(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """Display-P3 encoded pixels with the P3 profile embedded; ``pixels`` is the sRGB original.

    The original is made more saturated than the others, so that the P3 numbers differ clearly
    from the sRGB ones and a renderer ignoring the profile fails the comparison.
    """
    rgb = _small_rgb(base_rgb).astype(np.int16)
    grey = rgb.mean(axis=2, keepdims=True).astype(np.int16)
    pixels = _readonly(np.clip(grey + (rgb - grey) * 3, 0, 255).astype(np.uint8))
    p3 = _vips(pixels, "srgb").icc_transform("p3", input_profile="srgb", intent="relative")
    assert p3.get_typeof("icc-profile-data") != 0  # icc_transform attaches the output profile
    path = _pyramid(p3, source_dir / "icc_p3.tif", compression="deflate")
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def rgb16_pyramid(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    pixels = _readonly(_small_rgb(base_rgb))
    wide = pixels.astype(np.uint16) * 257  # 0..255 -> 0..65535 exactly
    path = _pyramid(_vips(wide, "rgb16"), source_dir / "rgb16.tif", compression="deflate")
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def rgba_pyramid(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """RGBA: a smooth alpha ramp, a fully transparent band and a fully opaque block."""
    rgb = _small_rgb(base_rgb)
    xx = np.mgrid[0:SMALL_H, 0:SMALL_W][1]
    alpha = (64 + 191 * xx / (SMALL_W - 1)).astype(np.uint8)
    alpha[100:300, :] = 0
    alpha[600:900, 200:700] = 255
    pixels = _readonly(np.dstack([rgb, alpha]))
    path = _pyramid(_vips(pixels, "srgb"), source_dir / "rgba.tif", compression="deflate")
    return Sample(path, pixels)


# -- plain and odd sources -------------------------------------------------------------------


@pytest.fixture(scope="session")
def strip_tiff(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """Untiled (strip) TIFF, 1600x1200."""
    pixels = _readonly(_small_rgb(base_rgb))
    path = source_dir / "strip.tif"
    _vips(pixels, "srgb").tiffsave(str(path), tile=False, compression="deflate")
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def plain_jpeg(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    path = source_dir / "plain.jpg"
    _vips(base_rgb[:600, :800], "srgb").jpegsave(str(path), Q=95)
    return Sample(path)


@pytest.fixture(scope="session")
def plain_png(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    pixels = _readonly(base_rgb[1400:2000, 2200:3000])
    path = source_dir / "plain.png"
    _vips(pixels, "srgb").pngsave(str(path))
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def tiled_single(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """Tiled TIFF without reduced levels, 1024x768."""
    pixels = _readonly(base_rgb[1000:1768, 1000:2024])
    path = source_dir / "tiled_single.tif"
    _vips(pixels, "srgb").tiffsave(str(path), tile=True, tile_width=TILE, tile_height=TILE, compression="deflate")
    return Sample(path, pixels)


@pytest.fixture(scope="session")
def multipage_document(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    """Three pages of other sizes and shapes (a scanned document, not a pyramid)."""
    pages = [base_rgb[:700, :1000], base_rgb[:900, 1000:1600], base_rgb[1000:1350, :500]]
    path = source_dir / "document.tif"
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(np.ascontiguousarray(page), photometric="rgb", tile=(TILE, TILE))
    return Sample(path, _readonly(pages[0]))


@pytest.fixture(scope="session")
def truncated_tiff(source_dir: Path, rgb_pages: Sample) -> Sample:
    """The page pyramid cut in half."""
    data = rgb_pages.path.read_bytes()
    path = source_dir / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    return Sample(path)


@pytest.fixture(scope="session")
def jpeg_named_tif(source_dir: Path, plain_jpeg: Sample) -> Sample:
    path = source_dir / "actually_jpeg.tif"
    shutil.copyfile(plain_jpeg.path, path)
    return Sample(path)


@pytest.fixture(scope="session")
def svg_named_tif(source_dir: Path) -> Sample:
    path = source_dir / "actually_svg.tif"
    path.write_text(
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        '<rect width="64" height="64" fill="red"/></svg>\n'
    )
    return Sample(path)


@pytest.fixture(scope="session")
def gif_named_tif(source_dir: Path, base_rgb: np.ndarray) -> Sample:
    path = source_dir / "actually_gif.tif"
    _vips(base_rgb[:64, :64], "srgb").gifsave(str(path))  # savers are not blocked, loaders are
    return Sample(path)


@pytest.fixture(scope="session")
def empty_file(source_dir: Path) -> Sample:
    path = source_dir / "empty.tif"
    path.write_bytes(b"")
    return Sample(path)


@pytest.fixture(scope="session")
def corrupt_level0(source_dir: Path, rgb_pages: Sample) -> Sample:
    """The page pyramid with every tile of level 0 overwritten by random bytes.

    Reduced levels are intact, so a request served from one of them must still render
    correctly; one that touches level 0 cannot.
    """
    path = source_dir / "corrupt_level0.tif"
    shutil.copyfile(rgb_pages.path, path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    rng = np.random.default_rng(7)
    with path.open("r+b") as fh:
        for offset, count in spans:
            fh.seek(offset)
            fh.write(rng.integers(0, 256, count, dtype=np.uint8).tobytes())
    return Sample(path, rgb_pages.pixels)


# -- an ImageService over one small JPEG pyramid (test_service.py, test_source_registry.py) ------


@pytest.fixture(scope="session")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pic.tif``: 512x384, 256 px JPEG tiles, alone in its folder."""
    path = tmp_path_factory.mktemp("service") / "pic.tif"
    image = pyvips.Image.perlin(512, 384, cell_size=32, seed=5, uchar=True)
    image.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=85)
    return path


class Counting:
    """Counts the source resolutions (stats) an ImageService's registry makes."""

    def __init__(self, service: ImageService) -> None:
        self.calls = 0
        source = service.registry._source
        original, original_recheck = source.resolve, source.recheck

        def resolve(identifier: str) -> SourceFile:
            self.calls += 1
            time.sleep(0.02)  # a slow stat (network storage): concurrent requests overlap it
            return original(identifier)

        def recheck(file: SourceFile) -> SourceFile:
            self.calls += 1
            self.rechecks += 1
            time.sleep(0.02)
            return original_recheck(file)

        self.rechecks = 0
        source.resolve = resolve  # type: ignore[method-assign]
        source.recheck = recheck  # type: ignore[method-assign]


def make_service(images: Path, tmp_path: Path, interval: float) -> tuple[Any, ImageService, Counting]:
    """An app over ``images`` whose identifiers are trusted for ``interval`` seconds, its
    ImageService and the counter of its stats."""
    app = create_app(Settings(images=images, cache=tmp_path / "cache", source_check_interval=interval))
    service: ImageService = app.state.image_service
    service.registry._versions._random = lambda: 0.0  # due for a re-check after exactly half the interval
    return app, service, Counting(service)


# -- JPEG pyramids of the stored-tile tests (tests/image/pyramids.py) --------------------------


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiles")


@pytest.fixture(scope="session")
def full_rgb(base_rgb: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb[:FULL_H, :FULL_W])).copy(interpretation="srgb")


@pytest.fixture(scope="session")
def q90_pages(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    """3000x2000, Q90: libvips stores RGB 4:4:4 tiles (Photometric RGB), each with its own APP14."""
    pyramid = jpeg_pyramid(full_rgb, work_dir / "q90.tif", Q=90)
    assert layout(pyramid.path) == (2, (0x11, 0x11, 0x11))  # RGB 4:4:4
    return pyramid


@pytest.fixture(scope="session")
def q85_pages(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    """3000x2000, Q85: YCbCr 4:2:0 tiles."""
    pyramid = jpeg_pyramid(full_rgb, work_dir / "q85.tif", Q=85)
    assert layout(pyramid.path) == (6, (0x22, 0x11, 0x11))  # YCbCr 4:2:0
    return pyramid


@pytest.fixture(scope="session")
def grey_pages(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    pyramid = jpeg_pyramid(full_rgb.colourspace("b-w"), work_dir / "grey.tif", Q=85)
    assert layout(pyramid.path) == (1, (0x11,))
    return pyramid


@pytest.fixture(scope="session")
def q85_subifd(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    return jpeg_pyramid(full_rgb, work_dir / "q85_subifd.tif", Q=85, subifd=True)


@pytest.fixture(scope="session")
def q95_subifd(rgb_subifd_jpeg: Sample) -> Pyramid:
    """conftest's SubIFD pyramid: JPEG Q95, RGB."""
    return pyramid_of(rgb_subifd_jpeg.path)


@pytest.fixture(scope="session")
def odd_512(work_dir: Path, base_rgb: np.ndarray) -> Pyramid:
    """3001x2001 (no level a multiple of the tile size) in 512 px tiles."""
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb)).copy(interpretation="srgb")
    return jpeg_pyramid(image, work_dir / "odd_512.tif", tile=512, Q=85)


@pytest.fixture(scope="session")
def odd_256(work_dir: Path, base_rgb: np.ndarray) -> Pyramid:
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb[:1301, :1777])).copy(interpretation="srgb")
    return jpeg_pyramid(image, work_dir / "odd_256.tif", Q=90)


@pytest.fixture(scope="session")
def odd_64(work_dir: Path, base_rgb: np.ndarray) -> Pyramid:
    """1279x1023 in 64 px tiles: each halving floors off nearly a pixel (1279 = 8 * 159 + 7)."""
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base_rgb[:1023, :1279])).copy(interpretation="srgb")
    return jpeg_pyramid(image, work_dir / "odd_64.tif", tile=64, Q=85)


@pytest.fixture(scope="session")
def bigtiff(work_dir: Path, full_rgb: pyvips.Image) -> Pyramid:
    return jpeg_pyramid(full_rgb.crop(0, 0, 1600, 1200), work_dir / "bigtiff.tif", Q=85, bigtiff=True)
