"""Pixel tests: resolve() + plan() + render(), checked against an independent computation.

Each request is rendered by the real pipeline and decoded with Pillow. The expected image is
computed from the known full-resolution pixels of the source (``Sample.pixels``, or level 0
decoded once per source) with numpy and Pillow only: crop with numpy, resize with Pillow
LANCZOS, mirror/rotate with numpy or a Pillow affine, greyscale with the CIE Y formula.
Dimensions must match exactly; pixels within a tolerance.

Tolerances, in levels out of 255: (mean absolute error, 99th percentile of absolute error).
Measured with libvips 8.18.7 and Pillow 12.0 on these sources (worst case in brackets):

* EXACT (0, 0): lossless output of a level-0 crop, no resampling: RGB, 16-bit, RGBA, strip
  TIFF, PNG source, mirrors and right-angle rotations all measure 0.
* LOSSLESS (3, 40): lossless output that was resampled [MAE 2.85, p99 32]. The server reads
  libvips' box-filtered pyramid levels (and, for the SubIFD source, JPEG Q95 levels), the
  reference is one LANCZOS reduction of level 0: they differ most on the one-pixel lines and
  sharp edges, hence the wide p99. Upscales (bicubic vs LANCZOS) [1.33, 11]; arbitrary
  rotation, centre box (libvips vs Pillow bicubic) [1.25, 6]; gray quality against CIE Y
  [0.18, 1]; ICC source from a reduced level [2.27, 17].
* LOSSY (8, 40): jpg and webp at Q80, gif (palette) [6.67, 32]; the worst MAE is a 450 px jpg
  of the whole, very busy picture. (A 240 px jpg of it measures 10.6 / 41: JPEG with 4:2:0
  chroma on content that is all detail; the tests stay above that size rather than widen the
  tolerance.) Rotated 45 jpg, centre box: [5.3, 20].
* STRETCHED (5, 56) [4.78, 50]: requests read from a level that lacks the image's last
  columns/rows. libvips floors each halving and drops the odd column (3001 -> 1500 holds 3000
  columns; the 187 px level of 3000 holds 2992), and the planner accepts stretching such a
  level by under one output pixel (choose_level). The content is then displaced by up to half
  an output pixel at the far edge; the sharp shapes placed there make that visible.
* ICC to sRGB at level 0: (1, 3) [0.14, 1]; the stored P3 numbers are [8.6, 61] away.

They discriminate (``test_tolerance_rejects_*``): the same outputs against a reference cropped
8 px off measure MAE 8.4-20 / p99 29-220 for lossless output (weakest: a 1/8 tile, where 8 px
is one output pixel: MAE 8.4 > 3) and MAE >= 12 or p99 >= 83 for the lossy ones; a wrong
rotation direction measures MAE ~23, a rotation 5 degrees off or a wrong right angle fails.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from iiifserver.config import Limits
from iiifserver.errors import SourceDamaged
from iiifserver.image.planner import Box, Plan, Resolved, plan, resolve
from iiifserver.image.probe import probe
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.request import parse_image_request
from iiifserver.image.source_info import Level, SourceInfo
from tests.image.conftest import Sample


@dataclass(frozen=True, slots=True)
class Tolerance:
    mae: float
    p99: float


EXACT = Tolerance(0.0, 0.0)
LOSSLESS = Tolerance(3.0, 40.0)
LOSSY = Tolerance(8.0, 40.0)
STRETCHED = Tolerance(5.0, 56.0)

LIMITS = Limits(max_width=10_000, max_height=10_000, max_area=25_000_000)
TILE = 256


# -- running the pipeline --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    image: Image.Image  # as decoded by Pillow
    data: bytes
    info: SourceInfo
    resolved: Resolved
    plan: Plan

    @property
    def pixels(self) -> np.ndarray:
        image = self.image
        if image.mode == "P":
            image = image.convert("RGB")
        elif image.mode == "1":
            image = image.convert("L")
        return np.asarray(image)


@cache
def _info(path: Path) -> SourceInfo:
    return probe(path, plain_max_pixels=40_000_000, max_source_pixels=4_000_000_000)


def run(sample: Sample, url: str) -> Rendered:
    """``url``: region/size/rotation/quality.format, as in an image request."""
    info = _info(sample.path)
    resolved = resolve(parse_image_request(*url.split("/")), info, LIMITS)
    the_plan = plan(resolved, info)
    data = render(sample.path, info.format, the_plan, EncodeOptions())
    image = Image.open(io.BytesIO(data))
    image.load()
    return Rendered(image, data, info, resolved, the_plan)


@cache
def _decoded_level0(path: Path) -> np.ndarray:
    """Level 0 of a lossy source, decoded once: the best known truth for it."""
    pixels = pyvips.Image.new_from_file(str(path), access="sequential").numpy()
    pixels.setflags(write=False)
    return pixels


def truth(sample: Sample) -> np.ndarray:
    return sample.pixels if sample.pixels is not None else _decoded_level0(sample.path)


# -- the independent computation -------------------------------------------------------------


def expected(pixels: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Crop ``box`` (x, y, w, h) of the full-resolution pixels and scale it to ``size``."""
    x, y, w, h = box
    crop = pixels[y : y + h, x : x + w]
    if (w, h) == size:
        return crop
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """CIE Y of sRGB pixels, re-encoded with the sRGB curve (libvips' "b-w" is defined so)."""
    encoded = rgb[..., :3] / 255.0
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    y = linear @ np.array([0.2126, 0.7152, 0.0722])
    gamma = np.where(y <= 0.0031308, y * 12.92, 1.055 * y ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(gamma * 255), 0, 255).astype(np.uint8)


def rotate_about_centre(pixels: np.ndarray, degrees: float, size: tuple[int, int]) -> np.ndarray:
    """Rotate clockwise about the centre onto a ``size`` canvas (Pillow bicubic affine)."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    (w, h), (out_w, out_h) = image.size, size
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    # Pillow maps each output point back into the input: the inverse (anticlockwise) rotation.
    data = (c, s, w / 2 - c * out_w / 2 - s * out_h / 2, -s, c, h / 2 + s * out_w / 2 - c * out_h / 2)
    return np.asarray(image.transform(size, Image.Transform.AFFINE, data, resample=Image.Resampling.BICUBIC))


def bounding_box(width: int, height: int, degrees: float) -> tuple[int, int]:
    """Implementation note 5: w' = |w cos| + |h sin|, h' = |h cos| + |w sin|, rounded."""
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    return round(width * c + height * s), round(height * c + width * s)


def osd_tile(width: int, height: int, scale: int, col: int, row: int) -> tuple[str, str]:
    """Region and size of an OpenSeadragon tile request (implementation note 3: ceil)."""
    x, y = col * TILE * scale, row * TILE * scale
    w, h = min(TILE * scale, width - x), min(TILE * scale, height - y)
    return f"{x},{y},{w},{h}", f"{math.ceil(w / scale)},{math.ceil(h / scale)}"


def errors(actual: np.ndarray, wanted: np.ndarray) -> tuple[float, float]:
    assert actual.shape == wanted.shape, f"shape {actual.shape}, expected {wanted.shape}"
    diff = np.abs(actual.astype(np.int16) - wanted.astype(np.int16))
    return float(diff.mean()), float(np.percentile(diff, 99))


def within(actual: np.ndarray, wanted: np.ndarray, tolerance: Tolerance) -> bool:
    mae, p99 = errors(actual, wanted)
    return mae <= tolerance.mae and p99 <= tolerance.p99


def assert_close(actual: np.ndarray, wanted: np.ndarray, tolerance: Tolerance) -> None:
    mae, p99 = errors(actual, wanted)
    assert mae <= tolerance.mae, f"MAE {mae:.2f} > {tolerance.mae} (p99 {p99:.0f})"
    assert p99 <= tolerance.p99, f"p99 {p99:.0f} > {tolerance.p99} (MAE {mae:.2f})"


def check(
    sample: Sample, url: str, box: tuple[int, int, int, int], size: tuple[int, int], tolerance: Tolerance
) -> Rendered:
    """Render ``url`` and compare it with ``box`` of the source scaled to ``size``."""
    out = run(sample, url)
    assert out.image.size == size
    assert_close(out.pixels, expected(truth(sample), box, size), tolerance)
    return out


# -- region and size -------------------------------------------------------------------------

# (url, region box in full-resolution pixels, output size, tolerance), on the 3000x2000 pyramid.
# The boxes and sizes are worked out here by hand from the spec, not by the planner.
GEOMETRY = [
    ("full/max/0/default.png", (0, 0, 3000, 2000), (3000, 2000), EXACT),
    ("full/256,/0/default.png", (0, 0, 3000, 2000), (256, 171), LOSSLESS),  # 170.67 rounds up
    ("full/,150/0/default.png", (0, 0, 3000, 2000), (225, 150), LOSSLESS),
    ("full/pct:10/0/default.png", (0, 0, 3000, 2000), (300, 200), LOSSLESS),
    ("full/!400,400/0/default.png", (0, 0, 3000, 2000), (400, 267), LOSSLESS),
    ("full/300,100/0/default.png", (0, 0, 3000, 2000), (300, 100), LOSSLESS),  # distorted
    ("1024,512,512,512/max/0/default.png", (1024, 512, 512, 512), (512, 512), EXACT),
    ("517,311,286,311/max/0/default.png", (517, 311, 286, 311), (286, 311), EXACT),  # framed rectangle
    ("2900,1900,500,500/max/0/default.png", (2900, 1900, 100, 100), (100, 100), EXACT),  # cut at the edge
    ("1000,600,800,800/700,/0/default.png", (1000, 600, 800, 800), (700, 700), LOSSLESS),
    ("1000,600,800,800/100,/0/default.png", (1000, 600, 800, 800), (100, 100), LOSSLESS),
    ("512,256,1536,1536/400,/0/default.png", (512, 256, 1536, 1536), (400, 400), LOSSLESS),
    ("pct:10,20,30,40/max/0/default.png", (300, 400, 900, 800), (900, 800), EXACT),
    ("pct:10,20,30,40/pct:25/0/default.png", (300, 400, 900, 800), (225, 200), LOSSLESS),
    ("pct:41.6,7.5,40,70/max/0/default.png", (1248, 150, 1200, 1400), (1200, 1400), EXACT),
    ("pct:50,50,60,60/max/0/default.png", (1500, 1000, 1500, 1000), (1500, 1000), EXACT),  # cut at the edge
    ("square/max/0/default.png", (500, 0, 2000, 2000), (2000, 2000), EXACT),
    ("square/!300,300/0/default.png", (500, 0, 2000, 2000), (300, 300), LOSSLESS),
    ("100,100,100,100/^300,/0/default.png", (100, 100, 100, 100), (300, 300), LOSSLESS),
    ("2330,690,40,30/^pct:500/0/default.png", (2330, 690, 40, 30), (200, 150), LOSSLESS),  # disc edge
    ("1000,1000,200,100/^250,/0/default.png", (1000, 1000, 200, 100), (250, 125), LOSSLESS),
    ("1000,1000,200,100/^300,300/0/default.png", (1000, 1000, 200, 100), (300, 300), LOSSLESS),
    ("1000,1000,400,100/^200,300/0/default.png", (1000, 1000, 400, 100), (200, 300), LOSSLESS),  # down x, up y
]


@pytest.mark.parametrize(("url", "box", "size", "tolerance"), GEOMETRY, ids=[g[0] for g in GEOMETRY])
def test_region_and_size(
    rgb_pages: Sample, url: str, box: tuple[int, int, int, int], size: tuple[int, int], tolerance: Tolerance
) -> None:
    out = check(rgb_pages, url, box, size, tolerance)
    assert out.image.mode == "RGB"
    assert out.resolved.region == Box(*box)


# OpenSeadragon tiles at scale factors 1, 2, 4 and 8, on the even and the odd-sized pyramid
# (their tile grids are the same): the first tile, an inner one where the grid has it, and
# the last one (an edge tile, cut short by the image border).
OSD_TILES = [
    (scale, col, row)
    for scale in (1, 2, 4, 8)
    for col, row in sorted(
        {(0, 0), (1, 1), (math.ceil(3000 / (TILE * scale)) - 1, math.ceil(2000 / (TILE * scale)) - 1)}
    )
    if col * TILE * scale < 3000 and row * TILE * scale < 2000
]


@pytest.mark.parametrize(("scale", "col", "row"), OSD_TILES)
@pytest.mark.parametrize("fixture", ["rgb_pages", "rgb_odd"])
def test_openseadragon_tile(request: pytest.FixtureRequest, fixture: str, scale: int, col: int, row: int) -> None:
    sample: Sample = request.getfixturevalue(fixture)
    info = _info(sample.path)
    region, size = osd_tile(info.width, info.height, scale, col, row)
    x, y, w, h = (int(v) for v in region.split(","))
    out_size = (math.ceil(w / scale), math.ceil(h / scale))
    edge = x + w == info.width or y + h == info.height
    # An odd-sized image's reduced levels lack its last column and row (see STRETCHED).
    tolerance = EXACT if scale == 1 else STRETCHED if edge and fixture == "rgb_odd" else LOSSLESS
    out = check(sample, f"{region}/{size}/0/default.png", (x, y, w, h), out_size, tolerance)
    # Read from the level of that scale factor, never a larger one.
    assert out.plan.level == info.levels[int(math.log2(scale))]


def test_odd_sized_edge_tile_comes_from_the_floor_rounded_level(rgb_odd: Sample) -> None:
    """By note 3 this tile is 120x251 px; level 3 has 119x250 for it: stretched, not refused."""
    region, size = osd_tile(3001, 2001, 8, 1, 0)
    assert (region, size) == ("2048,0,953,2001", "120,251")
    out = check(rgb_odd, f"{region}/{size}/0/default.png", (2048, 0, 953, 2001), (120, 251), STRETCHED)
    assert out.plan.level == Level(375, 250, page=3)


def test_smallest_level_is_short_of_the_full_width(rgb_pages: Sample) -> None:
    """The 187 px level holds 187 * 16 = 2992 of the 3000 columns: the planner stretches it."""
    out = check(rgb_pages, "full/,100/0/default.png", (0, 0, 3000, 2000), (150, 100), STRETCHED)
    assert out.plan.level == Level(187, 125, page=4)


# -- rotation and mirroring ------------------------------------------------------------------

RIGHT_ANGLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "90": lambda a: np.rot90(a, k=-1),  # IIIF rotates clockwise; numpy's k counts anticlockwise
    "180": lambda a: np.rot90(a, k=2),
    "270": lambda a: np.rot90(a, k=1),
    "!0": lambda a: a[:, ::-1],
    "!90": lambda a: np.rot90(a[:, ::-1], k=-1),  # mirror first, then rotate (section 4.3)
    "!180": lambda a: a[::-1],
    "!270": lambda a: np.rot90(a[:, ::-1], k=1),
}


@pytest.mark.parametrize("rotation", list(RIGHT_ANGLES))
def test_right_angle_and_mirror(rgb_pages: Sample, rotation: str) -> None:
    box = (500, 300, 700, 400)  # not square, so a swapped width/height shows
    out = run(rgb_pages, f"500,300,700,400/max/{rotation}/default.png")
    want = RIGHT_ANGLES[rotation](expected(rgb_pages.pixels, box, (700, 400)))
    assert out.image.size == (want.shape[1], want.shape[0])
    assert_close(out.pixels, want, EXACT)


def test_right_angle_after_scaling(rgb_pages: Sample) -> None:
    out = run(rgb_pages, "full/300,/!270/gray.png")
    want = RIGHT_ANGLES["!270"](luminance(expected(rgb_pages.pixels, (0, 0, 3000, 2000), (300, 200))))
    assert out.image.size == (200, 300)
    assert out.image.mode == "L"
    assert_close(out.pixels, want, LOSSLESS)


ARBITRARY = [
    ("1000,500,600,400/max/22.5/default.png", LOSSLESS),
    ("1000,500,600,400/max/45/default.png", LOSSLESS),
    ("1000,500,601,401/max/45/default.png", LOSSLESS),  # odd sizes: centres on half pixels
    ("1000,500,600,400/300,/330/default.png", LOSSLESS),
    ("1000,500,600,400/max/45/default.jpg", LOSSY),
    ("1000,500,600,400/300,/!22.5/default.jpg", LOSSY),
]


def _centre(a: np.ndarray, half: int) -> np.ndarray:
    """The central 2 * half square, colour bands only."""
    h, w = a.shape[:2]
    return a[h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half, :3]


@pytest.mark.parametrize(("url", "tolerance"), ARBITRARY, ids=[a[0] for a in ARBITRARY])
def test_arbitrary_rotation(rgb_pages: Sample, url: str, tolerance: Tolerance) -> None:
    region, _, rotation, quality_format = url.split("/")
    out = run(rgb_pages, url)
    x, y, w, h = (int(v) for v in region.split(","))
    width, height = out.resolved.width, out.resolved.height
    degrees = float(rotation.lstrip("!"))
    assert out.image.size == bounding_box(width, height, degrees)
    scaled = expected(rgb_pages.pixels, (x, y, w, h), (width, height))
    if rotation.startswith("!"):
        scaled = scaled[:, ::-1]
    want = rotate_about_centre(scaled, degrees, out.image.size)
    half = min(width, height) // 4  # a central box, well inside the rotated picture
    assert_close(_centre(out.pixels, half), _centre(want, half), tolerance)
    if quality_format.endswith(".png"):
        # Corners lie outside the rotated picture: transparent where the format allows.
        assert out.image.mode == "RGBA"
        alpha = out.pixels[..., 3]
        assert (alpha[[0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()
        assert (_centre(alpha[..., None], half) == 255).all()
    else:
        assert out.image.mode == "RGB"


# -- quality ---------------------------------------------------------------------------------


def test_gray_quality(rgb_pages: Sample) -> None:
    out = run(rgb_pages, "1000,500,600,400/max/0/gray.png")
    assert out.image.mode == "L"
    assert_close(out.pixels, luminance(expected(rgb_pages.pixels, (1000, 500, 600, 400), (600, 400))), LOSSLESS)


@pytest.mark.parametrize("fmt", ["png", "gif", "tif"])
def test_bitonal_quality(rgb_pages: Sample, fmt: str) -> None:
    out = run(rgb_pages, f"1000,500,600,400/max/0/bitonal.{fmt}")
    assert out.image.size == (600, 400)
    values = out.pixels if out.pixels.ndim == 2 else out.pixels[..., 0]
    assert set(np.unique(out.pixels).tolist()) == {0, 255}  # only black and white
    want = np.where(luminance(expected(rgb_pages.pixels, (1000, 500, 600, 400), (600, 400))) >= 128, 255, 0)
    # Pixels at the threshold may fall either way: measured 0.2 % differ, allow 1 %.
    assert (values != want).mean() <= 0.01


def test_bitonal_png_is_one_bit(rgb_pages: Sample) -> None:
    assert run(rgb_pages, "0,0,64,64/max/0/bitonal.png").image.mode == "1"


@pytest.mark.parametrize(
    ("quality_format", "mode"),
    [("default.png", "L"), ("gray.png", "L"), ("color.png", "RGB"), ("default.jpg", "L"), ("color.jpg", "RGB")],
)
def test_gray_source(gray_pyramid: Sample, quality_format: str, mode: str) -> None:
    assert gray_pyramid.pixels is not None
    for url, box, size in (
        (f"200,100,600,500/max/0/{quality_format}", (200, 100, 600, 500), (600, 500)),
        (f"full/400,/0/{quality_format}", (0, 0, 1600, 1200), (400, 300)),
    ):
        out = run(gray_pyramid, url)
        assert out.image.mode == mode
        want = expected(gray_pyramid.pixels, box, size)
        if mode == "RGB":
            assert np.ptp(out.pixels.astype(np.int16), axis=2).max() <= (0 if url.endswith("png") else 8)
            want = np.dstack([want] * 3)
        lossless = url.endswith("png") and box[2:] == size
        assert_close(out.pixels, want, EXACT if lossless else LOSSY if url.endswith("jpg") else LOSSLESS)


# -- formats ---------------------------------------------------------------------------------

FORMATS = [
    ("jpg", b"\xff\xd8\xff", "JPEG", "RGB", LOSSY),
    ("png", b"\x89PNG\r\n\x1a\n", "PNG", "RGB", EXACT),
    ("webp", b"RIFF", "WEBP", "RGB", LOSSY),
    ("tif", b"II*\x00", "TIFF", "RGB", EXACT),
    ("gif", b"GIF8", "GIF", "P", LOSSY),
]


@pytest.mark.parametrize(("fmt", "magic", "pil_format", "mode", "tolerance"), FORMATS, ids=[f[0] for f in FORMATS])
def test_format(rgb_pages: Sample, fmt: str, magic: bytes, pil_format: str, mode: str, tolerance: Tolerance) -> None:
    out = check(rgb_pages, f"2150,650,300,200/max/0/default.{fmt}", (2150, 650, 300, 200), (300, 200), tolerance)
    assert out.data.startswith(magic)
    assert out.image.format == pil_format
    assert out.image.mode == mode


@pytest.mark.parametrize(("fmt", "tolerance"), [("jpg", LOSSY), ("webp", LOSSY), ("tif", LOSSLESS), ("gif", LOSSY)])
def test_format_of_a_scaled_request(rgb_pages: Sample, fmt: str, tolerance: Tolerance) -> None:
    check(rgb_pages, f"full/450,/0/default.{fmt}", (0, 0, 3000, 2000), (450, 300), tolerance)


# -- colour ----------------------------------------------------------------------------------


def test_icc_source_is_converted_to_srgb(icc_p3_pyramid: Sample) -> None:
    assert icc_p3_pyramid.pixels is not None
    box = (200, 100, 600, 500)
    out = check(icc_p3_pyramid, "200,100,600,500/max/0/default.png", box, (600, 500), Tolerance(1.0, 3.0))
    assert "icc_profile" not in out.image.info  # plain sRGB out, no profile (keep="none")
    # The stored numbers are P3, far from the sRGB ones: ignoring the profile would fail.
    stored = pyvips.Image.tiffload(str(icc_p3_pyramid.path)).crop(*box).numpy()
    assert not within(stored, expected(icc_p3_pyramid.pixels, box, (600, 500)), LOSSLESS)


def test_icc_source_from_a_reduced_level(icc_p3_pyramid: Sample) -> None:
    out = check(icc_p3_pyramid, "full/400,/0/default.png", (0, 0, 1600, 1200), (400, 300), LOSSLESS)
    assert out.plan.level == Level(400, 300, page=2)


@pytest.mark.parametrize(
    ("url", "box", "size", "tolerance"),
    [
        ("200,100,600,500/max/0/default.png", (200, 100, 600, 500), (600, 500), EXACT),
        ("full/400,/0/default.png", (0, 0, 1600, 1200), (400, 300), LOSSLESS),
        ("200,100,600,500/max/0/default.jpg", (200, 100, 600, 500), (600, 500), LOSSY),
    ],
)
def test_16_bit_source(
    rgb16_pyramid: Sample, url: str, box: tuple[int, int, int, int], size: tuple[int, int], tolerance: Tolerance
) -> None:
    out = check(rgb16_pyramid, url, box, size, tolerance)
    assert out.image.mode == "RGB"  # 8 bits per sample out


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    """Colour weighted by alpha: where alpha is 0 the colour means nothing."""
    return np.rint(rgba[..., :3] * (rgba[..., 3:] / 255.0)).astype(np.uint8)


@pytest.mark.parametrize(
    ("url", "box", "size", "tolerance"),
    [
        ("0,0,800,700/max/0/default.png", (0, 0, 800, 700), (800, 700), EXACT),
        ("full/400,/0/default.png", (0, 0, 1600, 1200), (400, 300), LOSSLESS),
        ("0,50,300,300/^450,/0/default.png", (0, 50, 300, 300), (450, 450), LOSSLESS),  # across alpha 0
    ],
)
def test_rgba_to_png_keeps_alpha(
    rgba_pyramid: Sample, url: str, box: tuple[int, int, int, int], size: tuple[int, int], tolerance: Tolerance
) -> None:
    assert rgba_pyramid.pixels is not None
    out = run(rgba_pyramid, url)
    assert out.image.mode == "RGBA"
    assert out.image.size == size
    want = expected(rgba_pyramid.pixels, box, size)  # Pillow resizes RGBA premultiplied
    assert_close(out.pixels[..., 3], want[..., 3], tolerance)
    assert_close(_premultiplied(out.pixels), _premultiplied(want), tolerance)


def test_rgba_to_jpg_is_flattened_on_white(rgba_pyramid: Sample) -> None:
    assert rgba_pyramid.pixels is not None
    out = run(rgba_pyramid, "0,0,800,700/max/0/default.jpg")
    assert out.image.mode == "RGB"
    rgba = expected(rgba_pyramid.pixels, (0, 0, 800, 700), (800, 700))
    alpha = rgba[..., 3:] / 255.0
    want = np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    assert_close(out.pixels, want, LOSSY)
    # The fully transparent band (rows 100-299) is white, away from JPEG ringing at its edges.
    assert out.pixels[112:288].min() >= 250


def test_rgba_rotated_keeps_its_transparency(rgba_pyramid: Sample) -> None:
    out = run(rgba_pyramid, "0,0,800,700/200,/22.5/default.png")
    assert out.image.mode == "RGBA"
    alpha = out.pixels[..., 3]
    assert alpha[0, 0] == 0
    assert alpha.max() == 255


# -- other sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "box", "size", "level"),
    [
        ("1024,1024,1024,976/256,244/0/default.png", (1024, 1024, 1024, 976), (256, 244), 2),
        ("0,0,2048,2000/256,250/0/default.png", (0, 0, 2048, 2000), (256, 250), 3),
        ("1200,800,300,200/max/0/default.png", (1200, 800, 300, 200), (300, 200), 0),
    ],
)
def test_jpeg_subifd_pyramid(
    rgb_subifd_jpeg: Sample, url: str, box: tuple[int, int, int, int], size: tuple[int, int], level: int
) -> None:
    # The truth is level 0 as decoded; reduced levels were JPEG-coded separately (Q95).
    out = check(rgb_subifd_jpeg, url, box, size, LOSSLESS)
    assert out.plan.level == out.info.levels[level]
    assert out.plan.level.subifd == level - 1


@pytest.mark.parametrize(
    ("fixture", "url", "box", "size", "tolerance"),
    [
        ("strip_tiff", "200,100,600,500/max/0/default.png", (200, 100, 600, 500), (600, 500), EXACT),
        ("strip_tiff", "full/400,/90/default.png", (0, 0, 1600, 1200), (400, 300), LOSSLESS),
        ("tiled_single", "300,200,500,400/250,/0/default.png", (300, 200, 500, 400), (250, 200), LOSSLESS),
        ("plain_png", "200,100,300,200/max/0/default.png", (200, 100, 300, 200), (300, 200), EXACT),
        ("plain_jpeg", "100,100,500,400/max/0/default.png", (100, 100, 500, 400), (500, 400), Tolerance(0.5, 2.0)),
        ("plain_jpeg", "full/200,/0/default.jpg", (0, 0, 800, 600), (200, 150), LOSSY),
        ("jpeg_named_tif", "full/200,/0/default.png", (0, 0, 800, 600), (200, 150), LOSSLESS),
        ("multipage_document", "full/500,/0/default.png", (0, 0, 1000, 700), (500, 350), LOSSLESS),
    ],
)
def test_single_level_sources(
    request: pytest.FixtureRequest,
    fixture: str,
    url: str,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    tolerance: Tolerance,
) -> None:
    sample: Sample = request.getfixturevalue(fixture)
    if sample.pixels is None:  # JPEG: decode with Pillow, a decoder other than the server's
        pixels = np.asarray(Image.open(sample.path).convert("RGB"))
        sample = Sample(sample.path, pixels)
    rotation = url.split("/")[2]
    out = run(sample, url)
    want = expected(truth(sample), box, size)
    if rotation == "90":
        want = RIGHT_ANGLES["90"](want)
    assert out.image.size == (want.shape[1], want.shape[0])
    assert_close(out.pixels, want, tolerance)
    assert out.plan.level == out.info.levels[0]


# -- reading only the needed level -----------------------------------------------------------


@pytest.mark.parametrize(("scale", "level"), [(1, 0), (2, 1), (4, 2), (8, 3)])
def test_plan_reads_the_level_of_the_scale_factor(rgb_pages: Sample, scale: int, level: int) -> None:
    info = _info(rgb_pages.path)
    region, size = osd_tile(info.width, info.height, scale, 1, 0)
    resolved = resolve(parse_image_request(region, size, "0", "default.jpg"), info, LIMITS)
    the_plan = plan(resolved, info)
    assert the_plan.level == info.levels[level]
    x, y, w, h = (int(v) for v in region.split(","))
    assert the_plan.crop == Box(x // scale, y // scale, w // scale, h // scale)


def test_small_tile_renders_without_touching_level_0(corrupt_level0: Sample) -> None:
    """Level 0's tiles are garbage in this file: a 1/8 tile must still come out right."""
    out = check(corrupt_level0, "2048,1024,952,976/119,122/0/default.png", (2048, 1024, 952, 976), (119, 122), LOSSLESS)
    assert out.plan.level == Level(375, 250, page=3)
    out = check(corrupt_level0, "full/256,/0/default.png", (0, 0, 3000, 2000), (256, 171), LOSSLESS)
    assert out.plan.level == Level(375, 250, page=3)


def test_damaged_level_0_fails_instead_of_rendering_black(corrupt_level0: Sample) -> None:
    """The corruption is real, and it is an error, not a black image that would be cached."""
    with pytest.raises(SourceDamaged, match="damaged or unreadable") as caught:
        run(corrupt_level0, "1024,1024,512,512/max/0/default.png")
    assert caught.value.status == 500
    assert str(corrupt_level0.path.parent) not in str(caught.value)  # no path reaches the client


# -- the tolerances discriminate -------------------------------------------------------------

SHIFT = 8


def _inside(x: int, y: int, w: int, h: int) -> bool:
    return x >= 0 and y >= 0 and x + w <= 3000 and y + h <= 2000


@pytest.mark.parametrize(
    ("url", "box", "size", "tolerance"),
    [
        ("1024,512,512,512/max/0/default.png", (1024, 512, 512, 512), (512, 512), LOSSLESS),
        ("2048,1024,952,976/238,244/0/default.png", (2048, 1024, 952, 976), (238, 244), LOSSLESS),
        ("2048,0,952,2000/119,250/0/default.png", (2048, 0, 952, 2000), (119, 250), LOSSLESS),
        ("pct:10,20,30,40/pct:25/0/default.png", (300, 400, 900, 800), (225, 200), LOSSLESS),
        ("100,100,100,100/^300,/0/default.png", (100, 100, 100, 100), (300, 300), LOSSLESS),
        ("1024,512,512,512/max/0/default.jpg", (1024, 512, 512, 512), (512, 512), LOSSY),
        ("2150,650,300,200/max/0/default.webp", (2150, 650, 300, 200), (300, 200), LOSSY),
    ],
)
def test_tolerance_rejects_a_crop_8px_off(
    rgb_pages: Sample, url: str, box: tuple[int, int, int, int], size: tuple[int, int], tolerance: Tolerance
) -> None:
    out = run(rgb_pages, url)
    x, y, w, h = box
    assert within(out.pixels, expected(rgb_pages.pixels, box, size), tolerance)  # the right crop passes
    shifts = [
        (dx, dy) for dx, dy in ((SHIFT, 0), (-SHIFT, 0), (0, SHIFT), (0, -SHIFT)) if _inside(x + dx, y + dy, w, h)
    ]
    assert shifts
    for dx, dy in shifts:
        assert not within(out.pixels, expected(rgb_pages.pixels, (x + dx, y + dy, w, h), size), tolerance), (dx, dy)


def test_tolerance_rejects_a_wrong_right_angle(rgb_pages: Sample) -> None:
    out = run(rgb_pages, "1000,600,400,400/max/90/default.png")  # square: every turn has the same shape
    scaled = expected(rgb_pages.pixels, (1000, 600, 400, 400), (400, 400))
    assert within(out.pixels, RIGHT_ANGLES["90"](scaled), EXACT)
    for wrong in ("180", "270", "!0", "!90", "!270"):
        assert not within(out.pixels, RIGHT_ANGLES[wrong](scaled), LOSSLESS), wrong
    assert not within(out.pixels, scaled, LOSSLESS)


@pytest.mark.parametrize(
    ("url", "tolerance"),
    [("1000,500,600,400/max/22.5/default.png", LOSSLESS), ("1000,500,600,400/max/45/default.jpg", LOSSY)],
)
def test_tolerance_rejects_a_wrong_arbitrary_rotation(rgb_pages: Sample, url: str, tolerance: Tolerance) -> None:
    out = run(rgb_pages, url)
    degrees = float(url.split("/")[2])
    scaled = expected(rgb_pages.pixels, (1000, 500, 600, 400), (600, 400))
    half = 100
    for wrong in (-degrees, degrees + 90, degrees + 5):
        want = rotate_about_centre(scaled, wrong, out.image.size)
        assert not within(_centre(out.pixels, half), _centre(want, half), tolerance), wrong


def test_tolerance_rejects_a_missing_mirror(rgb_pages: Sample) -> None:
    out = run(rgb_pages, "1000,500,600,400/max/!0/default.png")
    assert not within(out.pixels, expected(rgb_pages.pixels, (1000, 500, 600, 400), (600, 400)), LOSSLESS)


def test_decimal_rotation_is_exact_about_the_centre(rgb_pages: Sample) -> None:
    """A sub-pixel check: the rotated picture sits on the centre of the note-5 box."""
    out = run(rgb_pages, "1000,500,600,400/max/22.5/default.png")
    assert out.plan.degrees == Decimal("22.5")
    scaled = expected(rgb_pages.pixels, (1000, 500, 600, 400), (600, 400))
    want = rotate_about_centre(scaled, 22.5, out.image.size)
    # Measured MAE 0.8 when centred; half a pixel off gives ~2.2.
    mae, _ = errors(_centre(out.pixels, 100), _centre(want, 100))
    assert mae <= 1.5


@pytest.mark.parametrize(
    ("quality", "subsampling", "expected"),
    [(90, True, 2), (95, True, 2), (80, True, 2), (90, False, 0), (95, False, 0), (80, False, 2)],
)
def test_jpeg_chroma_subsampling(rgb_pages: Sample, quality: int, subsampling: bool, expected: int) -> None:
    # PIL's get_sampling: 2 is 4:2:0, 0 is 4:4:4. Off, libvips keeps full chroma from Q90 only.
    from PIL import JpegImagePlugin

    info = _info(rgb_pages.path)
    the_plan = plan(resolve(parse_image_request("0,0,300,200", "max", "0", "default.jpg"), info, LIMITS), info)
    data = render(rgb_pages.path, info.format, the_plan, EncodeOptions(quality, 80, subsampling))
    with Image.open(io.BytesIO(data)) as image:
        assert isinstance(image, JpegImagePlugin.JpegImageFile)
        assert JpegImagePlugin.get_sampling(image) == expected
        assert image.size == (300, 200)


def _busy_picture(width: int, height: int, bands: int, seed: int) -> pyvips.Image:
    """Noise with soft gradients: every resampling tap weighs something different."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = (x * 255 // max(1, width - 1) + y * 128 // max(1, height - 1)) % 256
    noise = rng.integers(0, 96, (height, width, bands))
    pixels = np.ascontiguousarray(((base[..., None] + noise) % 256).astype(np.uint8))
    return pyvips.Image.new_from_memory(pixels.data, width, height, bands, "uchar").copy()


def _pixels(image: pyvips.Image) -> np.ndarray:
    return np.ndarray((image.height, image.width, image.bands), np.uint8, image.write_to_memory())


def test_reductions_below_four_are_resize_s_own_pixels() -> None:
    """``_resize_exact`` calls ``reduce`` alone where ``resize`` would do nothing else: the same
    pixels, bit for bit, over random sizes, both axes or one, gray and colour, up to the bound."""
    from iiifserver.image import render as render_module

    rng = np.random.default_rng(17)
    cases = 0
    for seed in range(120):
        width, height = (int(v) for v in rng.integers(8, 700, 2))
        bands = int(rng.choice([1, 3]))
        limit = render_module.REDUCE_ALONE_BELOW
        out_w = width if seed % 5 == 0 else int(rng.integers(math.floor(width / limit) + 1, width + 1))
        out_h = height if seed % 7 == 0 else int(rng.integers(math.floor(height / limit) + 1, height + 1))
        if (out_w, out_h) == (width, height):
            continue
        picture = _busy_picture(width, height, bands, seed)
        ours = _pixels(render_module._resize_exact(picture, out_w, out_h))
        theirs = _pixels(picture.resize(out_w / width, vscale=out_h / height, kernel="lanczos3"))
        assert ours.shape == (out_h, out_w, bands)
        assert theirs.shape == ours.shape, (width, height, out_w, out_h)
        assert np.array_equal(ours, theirs), (width, height, out_w, out_h, bands)
        cases += 1
    assert cases > 100


def test_reductions_from_four_still_shrink_first() -> None:
    """Past the bound ``resize`` shrinks by an integer factor first, which ``reduce`` alone would
    not: those keep ``resize`` (whose pixels differ from a lone ``reduce``'s there)."""
    from iiifserver.image import render as render_module

    picture = _busy_picture(640, 480, 3, 5)
    ours = _pixels(render_module._resize_exact(picture, 100, 75))
    theirs = _pixels(picture.resize(100 / 640, vscale=75 / 480, kernel="lanczos3"))
    lone = _pixels(picture.reduce(6.4, 6.4, kernel="lanczos3"))
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, lone[: ours.shape[0], : ours.shape[1]])


def test_stored_tile_mosaic_is_named_srgb_or_b_w_without_a_copy() -> None:
    """``_from_stored_tiles`` relies on libvips naming a uchar image from memory by its bands."""
    for bands, name in ((1, "b-w"), (3, "srgb")):
        pixels = np.zeros((4, 5, bands), np.uint8)
        assert pyvips.Image.new_from_memory(pixels.data, 5, 4, bands, "uchar").interpretation == name


def test_reductions_of_images_with_alpha_are_resize_s_own_pixels() -> None:
    """With alpha the reduction runs on premultiplied floats: still ``resize``'s pixels exactly."""
    from iiifserver.image import render as render_module

    rng = np.random.default_rng(29)
    for seed in range(25):
        width, height = (int(v) for v in rng.integers(16, 400, 2))
        out_w, out_h = int(rng.integers(width // 4 + 1, width)), int(rng.integers(height // 4 + 1, height))
        picture = _busy_picture(width, height, 4, seed).copy(interpretation="srgb")
        ours = _pixels(render_module._resize_exact(picture, out_w, out_h))
        premultiplied = picture.premultiply().resize(out_w / width, vscale=out_h / height, kernel="lanczos3")
        theirs = _pixels(premultiplied.unpremultiply().cast("uchar"))
        assert np.array_equal(ours, theirs), (width, height, out_w, out_h)
