"""Build the bundled demo image collection.

Owns: generating the demo images and writing them as tiled pyramidal TIFFs into an images
directory, once. It is an offline tool (run before serving, never per request), so it imports
pyvips and numpy directly. Must not know: IIIF requests, HTTP, settings.

The set; an image's identifier is its file name without ".tif":

    painting.tif             6000x4500 colour artwork; JPEG Q90 tiles; pyramid as pages
    large-panorama.tif       14000x7500 (105 MP) landscape; JPEG Q85 (YCbCr 4:2:0); BigTIFF;
                             pyramid in SubIFDs; only with ``large=True``
    manuscript-gray.tif      3000x4200 one-band greyscale manuscript page; JPEG Q90
    photo-p3.tif             3000x2000 RGB with an embedded Display P3 ICC profile; deflate
    map-lzw.tif              4000x3000 RGB relief map; LZW; 512x512 tiles (a non-256 native tile)
    67352ccc-d1b0-11e1-89ae-279075081939.tif
                             the IIIF validator test image, copied losslessly (deflate) from the
                             conformance PNG, so the validators' colour checks are exact

Why Display P3 and not Adobe RGB: nothing may be downloaded, and libvips 8.18 (pyvips-binary)
ships exactly three built-in profiles, "srgb", "p3" and "cmyk"; "p3" is the only wide-gamut RGB
one. The photo is drawn in sRGB and converted to P3 (relative colorimetric), which embeds the
profile, so a colour-managed client converting back to sRGB sees the intended colours.

Determinism: all randomness is seeded (libvips perlin/worley/gaussnoise ``seed=``, numpy
``default_rng(seed)``), so one libvips version always makes the same pixels. No Python threads
are started (libvips uses its own worker threads inside each operation).

Idempotence: each file is written to a hidden temporary name in the same directory and moved
into place with ``os.replace``; a JSON marker ``.demo-version`` records DEMO_VERSION and each
finished file's size, and a file counts as done only if the marker agrees with it and its header
opens with the expected dimensions. Bump DEMO_VERSION whenever an image's recipe changes.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyvips

DEMO_VERSION = 1
MARKER_NAME = ".demo-version"
VALIDATOR_ID = "67352ccc-d1b0-11e1-89ae-279075081939"
VALIDATOR_SIZE = (1000, 1000)

PAINTING_SIZE = (6000, 4500)
PANORAMA_SIZE = (14000, 7500)
MANUSCRIPT_SIZE = (3000, 4200)
PHOTO_SIZE = (3000, 2000)
MAP_SIZE = (4000, 3000)
BOOK_PAGE_SIZE = (1500, 2100)
BOOK_PAGES = 8
ALBUM_PHOTO_SIZE = (2400, 1600)
ALBUM_PHOTOS = 5
LOGO_SIZE = (512, 512)

# The panorama's fine texture is rendered once at this size and mirror-tiled; 2000 and 1500
# are not multiples of 256, so block seams never line up with tile seams.
PANORAMA_BLOCK = (2000, 1500)

# Perlin octaves of 16 * COARSE_SHRINK pixels and more are made at 1/COARSE_SHRINK size.
COARSE_SHRINK = 8

Progress = Callable[[str], None]
Alpha = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class DemoImage:
    """One output file: its name, pixel size, how to render it and how to save it."""

    name: str
    width: int
    height: int
    render: Callable[[], pyvips.Image]
    save_options: Mapping[str, Any] = field(default_factory=dict)
    large: bool = False
    # Why it cannot be built now (its input file is missing); empty when it can.
    unavailable: str = ""

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def build_demo(
    images_dir: Path,
    conformance_dir: Path | None,
    *,
    large: bool = True,
    progress: Progress | None = None,
) -> list[Path]:
    """Make the demo images in ``images_dir`` that are missing or stale; return their paths.

    Already complete files are left untouched (and returned). The large panorama is only
    considered when ``large`` is true; the validator image is skipped, with a progress note,
    when its PNG is not in ``conformance_dir``. ``progress`` gets one short line per file.
    """
    say: Progress = progress or _quiet
    images_dir.mkdir(parents=True, exist_ok=True)
    plan = demo_plan(conformance_dir, large=large)
    records = _read_marker(images_dir)
    paths: list[Path] = []
    for number, image in enumerate(plan, start=1):
        path = images_dir / image.name
        count = f"{number}/{len(plan)}"
        if _is_complete(path, image, records):
            say(f"demo image {count} up to date: {image.name}")
        elif image.unavailable:
            say(f"skipping demo image {count}: {image.name} ({image.unavailable})")
            continue
        else:
            say(f"building demo image {count}: {image.name}, {image.width}x{image.height} ({image.megapixels:.0f} MP)")
            _save_atomically(image, path)
            records[image.name] = _record(path, image)
            _write_marker(images_dir, records)
        paths.append(path)
    return paths


def demo_plan(conformance_dir: Path | None, *, large: bool = True) -> list[DemoImage]:
    """The demo images in build order (the large one only when ``large``)."""
    jpeg90 = {"compression": "jpeg", "Q": 90}
    q85 = {"compression": "jpeg", "Q": 85}
    plan = [
        DemoImage("painting.tif", *PAINTING_SIZE, partial(painting, *PAINTING_SIZE), jpeg90),
        DemoImage(
            "large-panorama.tif",
            *PANORAMA_SIZE,
            partial(panorama, *PANORAMA_SIZE),
            # Below Q90 libvips stores JPEG-in-TIFF tiles as YCbCr 4:2:0.
            {"compression": "jpeg", "Q": 85, "bigtiff": True, "subifd": True},
            large=True,
        ),
        DemoImage("manuscript-gray.tif", *MANUSCRIPT_SIZE, partial(manuscript, *MANUSCRIPT_SIZE), jpeg90),
        DemoImage(
            "photo-p3.tif",
            *PHOTO_SIZE,
            partial(photo_p3, *PHOTO_SIZE),
            {"compression": "deflate", "predictor": "horizontal"},
        ),
        DemoImage(
            "map-lzw.tif",
            *MAP_SIZE,
            partial(relief_map, *MAP_SIZE),
            {"compression": "lzw", "predictor": "horizontal", "tile_width": 512, "tile_height": 512},
        ),
        _validator_entry(conformance_dir),
        # A book (described in manifests/book-of-hours.yaml, with ranges) and a photo album.
        *(
            DemoImage(f"book/page-{n:02d}.tif", *BOOK_PAGE_SIZE, partial(manuscript, *BOOK_PAGE_SIZE, 3300 + n), q85)
            for n in range(1, BOOK_PAGES + 1)
        ),
        # Folders starting with "_" hold images that are not objects of their own: the provider logo.
        DemoImage("_assets/logo.tif", *LOGO_SIZE, partial(logo, *LOGO_SIZE), {"compression": "deflate"}),
        *(
            DemoImage(f"album/photo-{n}.tif", *ALBUM_PHOTO_SIZE, partial(photo_srgb, *ALBUM_PHOTO_SIZE, 4400 + n), q85)
            for n in range(1, ALBUM_PHOTOS + 1)
        ),
    ]
    return [image for image in plan if large or not image.large]


def _validator_entry(conformance_dir: Path | None) -> DemoImage:
    png = Path(conformance_dir or ".") / f"{VALIDATOR_ID}.png"
    if conformance_dir is None:
        unavailable = "no conformance directory given"
    elif not png.is_file():
        unavailable = f"{png.name} not found in {conformance_dir}"
    else:
        unavailable = ""
    return DemoImage(
        f"{VALIDATOR_ID}.tif",
        *VALIDATOR_SIZE,
        partial(validator_image, png),  # only called when available
        # Lossless, so the validators' exact colour checks pass on the served pixels.
        {"compression": "deflate", "predictor": "horizontal"},
        unavailable=unavailable,
    )


def _quiet(_line: str) -> None:
    pass


# --- writing and the completeness marker ---------------------------------------------------


def _save_atomically(image: DemoImage, path: Path) -> None:
    # The pid keeps two concurrent builders from sharing a temporary file; the dot hides it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    options = {"tile": True, "pyramid": True, "tile_width": 256, "tile_height": 256, **image.save_options}
    try:
        image.render().tiffsave(str(tmp), **options)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _record(path: Path, image: DemoImage) -> dict[str, int]:
    return {"bytes": path.stat().st_size, "width": image.width, "height": image.height}


def _read_marker(images_dir: Path) -> dict[str, dict[str, int]]:
    """The per-file records of the marker, or none if it is missing, unreadable or stale."""
    try:
        marker = json.loads((images_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(marker, dict) or marker.get("demo_version") != DEMO_VERSION:
        return {}
    files = marker.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _write_marker(images_dir: Path, records: Mapping[str, Mapping[str, int]]) -> None:
    marker = {
        "demo_version": DEMO_VERSION,
        "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        "files": records,
    }
    path = images_dir / MARKER_NAME
    tmp = path.with_name(f"{MARKER_NAME}.{os.getpid()}.part")
    tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _is_complete(path: Path, image: DemoImage, records: Mapping[str, Mapping[str, int]]) -> bool:
    """Built by this DEMO_VERSION (per the marker), unchanged since, and its header opens."""
    record = records.get(image.name)
    if record is None or (record.get("width"), record.get("height")) != (image.width, image.height):
        return False
    try:
        if path.stat().st_size != record.get("bytes"):
            return False
        # revalidate: libvips' operation cache must not answer for a file replaced since.
        header = pyvips.Image.new_from_file(str(path), revalidate=True)
    except (OSError, pyvips.Error):
        return False
    return bool(header.width == image.width and header.height == image.height)


# --- noise building blocks -------------------------------------------------------------------


def _fbm(width: int, height: int, cells: Sequence[int], seed: int, gain: float = 0.55) -> pyvips.Image:
    """Fractal Perlin noise, float, roughly -1..1, one octave per cell size.

    Octaves of 128 pixels and more are smooth: they are made at 1/8 size (16+ pixels a
    cell), summed and upsampled once. Perlin itself is cheaper than an upsample, so smaller
    octaves are made at full size.
    """
    coarse: pyvips.Image | None = None
    total: pyvips.Image | None = None
    amplitude, weight = 1.0, 0.0
    for octave, cell in enumerate(cells):
        shrink = COARSE_SHRINK if cell >= 16 * COARSE_SHRINK else 1
        noise = (
            pyvips.Image.perlin(
                math.ceil(width / shrink),
                math.ceil(height / shrink),
                cell_size=max(2, round(cell / shrink)),
                seed=seed + 7919 * octave,
            )
            * amplitude
        )
        if shrink == 1:
            total = noise if total is None else total + noise
        else:
            coarse = noise if coarse is None else coarse + noise
        weight += amplitude
        amplitude *= gain
    if coarse is not None:
        coarse = _upsampled(coarse, COARSE_SHRINK, width, height)
        total = coarse if total is None else total + coarse
    assert total is not None, "at least one octave"
    return total * (2.0 / weight)  # perlin is about +-0.5


def _grain(width: int, height: int, seed: int, tile: int = 1000) -> pyvips.Image:
    """Fine Gaussian grain, sigma 1: one seeded tile, replicated.

    Full-size gaussnoise costs more than everything else in an image; grain repeating every
    1000 pixels (not a multiple of 256) is invisible under the other layers.
    """
    block = pyvips.Image.gaussnoise(tile, tile, sigma=1.0, mean=0.0, seed=seed).copy_memory()
    return block.replicate(math.ceil(width / tile), math.ceil(height / tile)).crop(0, 0, width, height)


def _streaks(width: int, height: int, seed: int, length: int) -> pyvips.Image:
    """Brush-stroke or fibre-like horizontal streaks: Gaussian noise stretched along x."""
    noise = pyvips.Image.gaussnoise(
        math.ceil(width / length) + 2, math.ceil(height / 2) + 2, sigma=1.0, mean=0.0, seed=seed
    )
    return noise.resize(length, vscale=2, kernel="cubic").crop(0, 0, width, height)


def _upsampled(image: pyvips.Image, factor: int, width: int, height: int) -> pyvips.Image:
    """Enlarge a low-resolution layer to width x height.

    Bilinear: everything made small here is smooth (16+ pixels a feature), and it is three
    times cheaper than bicubic.
    """
    return image.resize(factor, kernel="linear").crop(0, 0, width, height)


def _mirror_tiled(block: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """Cover width x height with copies of block, every other one mirrored so seams match."""
    block = block.copy_memory()
    flipped_h = block.fliphor().copy_memory()
    variants = [block, flipped_h, block.flipver().copy_memory(), flipped_h.flipver().copy_memory()]
    across, down = math.ceil(width / block.width), math.ceil(height / block.height)
    parts = [variants[(i % 2) + 2 * (j % 2)] for j in range(down) for i in range(across)]
    return pyvips.Image.arrayjoin(parts, across=across).crop(0, 0, width, height)


def _smoothstep(image: pyvips.Image, low: float, high: float) -> pyvips.Image:
    t = ((image - low) / (high - low)).clamp(min=0.0, max=1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: pyvips.Image | Sequence[float], b: pyvips.Image | Sequence[float], t: pyvips.Image) -> pyvips.Image:
    """a where t is 0, b where t is 1 (t one band; a and b images or constant colours)."""
    return (1.0 - t) * _operand(a) + t * _operand(b)


def _operand(value: pyvips.Image | Sequence[float]) -> pyvips.Image | list[float]:
    return value if isinstance(value, pyvips.Image) else [float(v) for v in value]


# --- painting.tif ----------------------------------------------------------------------------


def painting(width: int, height: int, seed: int = 1100) -> pyvips.Image:
    """An abstract oil painting: colour fields, shapes, brush strokes, craquelure, canvas weave.

    Colour varies slowly, so it is composed at a quarter of the size and upsampled once; the
    texture that gives deep zoom its detail is made at full size and multiplied in.
    """
    scale = 4
    colour = _painting_colour(math.ceil(width / scale), math.ceil(height / scale), seed)
    colour = _upsampled(colour, scale, width, height)
    relief = 1.0 + 0.09 * _paint_texture(width, height, seed + 10)
    cracks = _craquelure(width, height, seed + 20)
    return (colour * relief * (1.0 - 0.5 * cracks)).cast("uchar")


def _painting_colour(width: int, height: int, seed: int) -> pyvips.Image:
    """The painting's colour at low resolution, float sRGB: ochre-to-blue fields lit from the
    upper left, with soft shapes painted over them."""
    lightness = _fbm(width, height, [512, 128, 32, 8], seed + 1)
    a = _fbm(width, height, [512, 192, 48], seed + 2)
    b = _fbm(width, height, [384, 128, 40], seed + 3)
    pillows = pyvips.Image.worley(width, height, cell_size=24, seed=seed + 4) / 12.0  # paint lifting
    xy = pyvips.Image.xyz(width, height)
    r2 = ((xy[0] - width * 0.45) ** 2 + (xy[1] - height * 0.4) ** 2) / ((width**2 + height**2) / 4.0)
    light = 1.0 - 0.22 * r2 + 0.06 * xy[0] / width
    big_l = (52 + 22 * lightness - 3 * pillows) * light
    ground = big_l.bandjoin([14 + 18 * a, 22 + 26 * b]).copy(interpretation="lab").colourspace("srgb")
    shapes, alpha = _soft_shapes(width, height, seed + 30, scale=2)
    return _mix(ground, shapes, alpha).copy_memory()  # read by an upsampling kernel: compute once


def _paint_texture(width: int, height: int, seed: int) -> pyvips.Image:
    """Brush strokes in two directions, chosen by a slow field, plus weave and grain; about +-1."""
    across = _streaks(width, height, seed, length=40)
    along = _streaks(height, width, seed + 1, length=40).rot90()
    slow = _fbm(math.ceil(width / 8), math.ceil(height / 8), [128, 32], seed + 2)
    direction = _upsampled(slow, 8, width, height) > 0
    strokes = direction.ifthenelse(across, along)
    grain = _grain(width, height, seed + 3)
    return strokes * 0.6 + _weave(width, height) * 0.25 + grain * 0.25


def _weave(width: int, height: int, period: int = 7) -> pyvips.Image:
    """Canvas weave: a small periodic tile, replicated (no per-pixel trigonometry)."""
    xy = pyvips.Image.xyz(period * 8, period * 8) * (360.0 / period)
    tile = (xy[0].sin() * xy[1].sin()).copy_memory()
    return tile.replicate(math.ceil(width / tile.width), math.ceil(height / tile.height)).crop(0, 0, width, height)


def _craquelure(width: int, height: int, seed: int) -> pyvips.Image:
    """Fine age cracks, 0..1: the zero crossings of a mid-frequency noise field."""
    field_ = _fbm(width, height, [160, 40], seed, gain=0.35)
    return (field_.abs() < 0.018).ifthenelse(1.0, 0.0).gaussblur(0.5)


def _soft_shapes(
    width: int, height: int, seed: int, count: int = 70, scale: int = 8
) -> tuple[pyvips.Image, pyvips.Image]:
    """Soft-edged coloured discs and blocks (the composition) and their opacity, 0..0.6."""
    rng = np.random.default_rng(seed)
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    colours = pyvips.Image.black(w, h, bands=3)
    mask = pyvips.Image.black(w, h)
    for _ in range(count):
        colour = [int(c) for c in rng.integers(20, 236, size=3)]
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(w // 60 + 2, w // 8))
        if rng.random() < 0.6:
            colours = colours.draw_circle(colour, x, y, r, fill=True)
            mask = mask.draw_circle([255], x, y, r, fill=True)
        else:
            rh = int(rng.integers(r // 2, 2 * r))
            colours = colours.draw_rect(colour, x - r, y - rh // 2, 2 * r, rh, fill=True)
            mask = mask.draw_rect([255], x - r, y - rh // 2, 2 * r, rh, fill=True)
    colours = _upsampled(colours.gaussblur(1.2), scale, width, height)
    alpha = _upsampled(mask.gaussblur(2.0) * (0.6 / 255.0), scale, width, height).clamp(min=0.0, max=0.6)
    return colours, alpha


# --- large-panorama.tif ----------------------------------------------------------------------


def panorama(width: int, height: int, seed: int = 2200) -> pyvips.Image:
    """Mountain ranges at dusk, very wide.

    The scene (sky, clouds, ranges, haze) is computed over the whole canvas at a quarter of
    the size and upsampled; the fine texture is one block rendered once and mirror-tiled.
    Multiplying the two gives detail at every zoom level with no two tiles alike, in a
    fraction of the time a full-size noise field would take.
    """
    factor = 4
    scene = _landscape(math.ceil(width / factor), math.ceil(height / factor), seed)
    scene = _upsampled(scene, factor, width, height)
    detail = _mirror_tiled(_detail_block(*PANORAMA_BLOCK, seed + 50), width, height)
    # Band 3 of the scene says how rough each place is (smooth sky, textured ground).
    return (scene[0:3] * (1.0 + detail * scene[3])).cast("uchar")


def _detail_block(width: int, height: int, seed: int) -> pyvips.Image:
    """Fine relative texture, about +-1: small-scale noise, grass-like streaks, grain."""
    fine = _fbm(width, height, [48, 16, 5], seed, gain=0.7)
    streaks = _streaks(width, height, seed + 1, length=16)
    return fine * 0.6 + streaks * 0.25 + _grain(width, height, seed + 2) * 0.25


# Mountain ranges, far to near: colour, foot (fraction of the height), relief (same), haze
# (how much of the sky's colour mixes in), snow-capped, wooded.
RANGES = (
    ((150, 150, 185), 0.36, 0.22, 0.30, True, False),
    ((105, 110, 150), 0.46, 0.18, 0.22, True, False),
    ((70, 90, 90), 0.58, 0.12, 0.14, False, False),
    ((48, 70, 40), 0.72, 0.09, 0.06, False, True),
    ((34, 52, 26), 0.88, 0.07, 0.0, False, True),
)


def _landscape(width: int, height: int, seed: int) -> pyvips.Image:
    """The low-resolution scene: float sRGB 0..255 plus a roughness band (0.03 sky to 0.22 ground)."""
    y = pyvips.Image.xyz(width, height)[1]
    image = _sky(width, height, seed, y).bandjoin(0.03)
    haze = (215.0, 165.0, 150.0)
    # Each range shows in its own band of rows, so they can share one set of noise fields.
    texture = _fbm(width, height, [256, 64, 16, 4], seed + 1, gain=0.6)
    gullies = _gullies(width, height, seed + 2)
    slopes = 1.0 + 0.18 * texture + 0.1 * gullies
    # Tree crowns: ridged noise, dark along the lines between crowns.
    crowns = 1.0 - 0.5 * pyvips.Image.perlin(width, height, cell_size=6, seed=seed + 3).abs()
    ragged = 20.0 * _fbm(width, height, [64, 16], seed + 4) + 20.0 * gullies  # snowline, in pixels
    for index, (colour, foot, relief, hazing, snowy, wooded) in enumerate(RANGES):
        ridge = _ridge(width, foot * height, relief * height, seed + 10 * (index + 1)).zoom(1, height)
        below = y - ridge  # how far below the skyline, in pixels
        shade = slopes * crowns if wooded else slopes
        ground = shade * [c * (1.0 - hazing) + h * hazing for c, h in zip(colour, haze, strict=True)]
        if index < 3:  # valley mist: lighter towards the foot of the far ranges
            ground = _mix(ground, haze, 0.45 * _smoothstep(below, 0.08 * height, 0.35 * height))
        if snowy:  # snow on the peaks only, with a ragged snowline
            snowline = (foot - 0.6 * relief) * height + ragged
            ground = _mix(ground, (235.0, 228.0, 238.0), 0.9 * _smoothstep(snowline - y, -2.0, 2.0))
        cover = _smoothstep(below, -0.5, 0.5)  # an anti-aliased skyline
        image = _mix(image, ground.bandjoin(0.12 + 0.1 * index / len(RANGES)), cover)
    return image.copy_memory()  # read by an upsampling kernel: compute once


def _gullies(width: int, height: int, seed: int) -> pyvips.Image:
    """Ribs and gullies down a slope, about +-1: noise stretched 3x vertically."""
    noise = _fbm(width, math.ceil(height / 3), [40, 12, 4], seed)
    return noise.resize(1, vscale=3, kernel="linear").crop(0, 0, width, height)


def _sky(width: int, height: int, seed: int, y: pyvips.Image) -> pyvips.Image:
    """Dusk sky: deep blue at the top, warm down to the ranges, streaky clouds, a low sun."""
    t = _smoothstep(y, 0.0, 0.3 * height)
    sky = _mix((40.0, 60.0, 125.0), (250.0, 185.0, 140.0), t)
    # Clouds are stretched noise: made 4x narrower, then widened.
    clouds = _fbm(math.ceil(width / 4), height, [128, 48, 16, 6], seed + 1).resize(4, vscale=1)
    cover = _smoothstep(clouds.crop(0, 0, width, height), 0.1, 0.6) * (1.0 - t * 0.6)
    sky = _mix(sky, _mix((235.0, 215.0, 230.0), (150.0, 100.0, 120.0), t), cover * 0.8)
    return sky + _sun(width, height)


def _sun(width: int, height: int, scale: int = 8) -> pyvips.Image:
    """A low sun and its wide glow, added light; smooth, so made at 1/scale size."""
    xy = pyvips.Image.xyz(math.ceil(width / scale), math.ceil(height / scale)) * scale
    r2 = ((xy[0] - 0.62 * width) ** 2 + (xy[1] - 0.2 * height) ** 2) / (0.0004 * width * width)
    glow = (-r2).exp() * [255.0, 200.0, 120.0] + (-r2 * 0.05).exp() * [60.0, 30.0, 0.0]
    return _upsampled(glow, scale, width, height)


def _ridge(width: int, foot: float, relief: float, seed: int) -> pyvips.Image:
    """A one-row image: the y of a range's skyline at each x, float.

    Massifs (a slow envelope) times ridged noise (1 - |n|, for sharp peaks).
    """

    def row(cell: int, octave: int) -> pyvips.Image:
        mid = cell // 2  # sample mid-cell: Perlin noise is zero on its lattice rows
        noise = pyvips.Image.perlin(width, mid + 1, cell_size=max(2, cell), seed=seed + octave)
        return noise.crop(0, mid, width, 1)

    envelope = _smoothstep(row(width // 4, 0), -0.35, 0.35) * 0.7 + 0.3
    ridged = pyvips.Image.black(width, 1)
    amplitude, weight = 1.0, 0.0
    for octave, cell in enumerate([width // 12, width // 40, 48, 16, 6], start=1):
        ridged = ridged + (0.5 - row(cell, octave).abs()) * amplitude
        weight += amplitude
        amplitude *= 0.5
    peaks = ((ridged * (2.0 / weight) - 0.25) / 0.6).clamp(min=0.0, max=1.5)  # no plateaus
    return (foot - relief * envelope * (0.3 + 0.7 * peaks)).copy_memory()


# --- manuscript-gray.tif ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Script:
    """An invented blackletter alphabet: glyph coverage masks sharing one baseline.

    Row ``baseline`` of every glyph is the baseline; all glyphs have the same height.
    """

    glyphs: tuple[Alpha, ...]
    weights: npt.NDArray[np.float64]
    x_height: int
    baseline: int


def manuscript(width: int, height: int, seed: int = 3300) -> pyvips.Image:
    """A greyscale scan of a manuscript leaf on a dark backdrop, with a grey-scale target.

    Ruled lines of an invented blackletter script (drawn with a broad nib), a heading, a large
    initial, marginal notes, paper fibres, stains, foxing and show-through.
    """
    rng = np.random.default_rng(seed)
    leaf_box = (90, 80, width - 180, height - 340)  # x, y, w, h of the leaf
    ink = np.zeros((height, width), dtype=np.float32)
    ruling = np.zeros((height, width), dtype=np.uint8)
    _write_page(ink, ruling, rng, leaf_box)
    ink_image = pyvips.Image.new_from_array(ink)
    paper = _paper(width, height, seed + 1, ink_image) - pyvips.Image.new_from_array(ruling).gaussblur(0.7)
    density = 0.88 + 0.1 * _fbm(width, height, [512, 64], seed + 2)  # ink pooling and fading
    page = paper * (1.0 - ink_image * density) + ink_image * density * 38.0
    leaf = _leaf_mask(width, height, seed + 3, leaf_box)
    backdrop = 28 + 3 * _grain(width, height, seed + 4)
    scan = _mix(backdrop, page, leaf).cast("uchar")
    target = _grey_target(step=180, height=120)
    scan = scan.insert(target, leaf_box[0] + 60, leaf_box[1] + leaf_box[3] + 110)
    return scan.copy(interpretation="b-w")


def _write_page(
    ink: Alpha, ruling: npt.NDArray[np.uint8], rng: np.random.Generator, leaf_box: tuple[int, int, int, int]
) -> None:
    """Lay out the text into ``ink`` (coverage 0..1) and the dry-point ruling into ``ruling``."""
    px, py, pw, ph = leaf_box
    script = _make_script(rng, x_height=26)
    left, right = px + 330, px + pw - 270
    top, pitch = py + 420, 84
    baselines = list(range(top, py + ph - 380, pitch))
    _rule(ruling, baselines, (left, right), leaf_box)
    # A large framed initial whose foot sits on the fourth line; those lines are indented.
    initial = _framed(_render_glyph(_letter_strokes(rng, minims=2, capital=True), x_height=150, nib=0.5))
    initial_top = baselines[3] + 12 - initial.shape[0]
    _paste(ink, initial, left, initial_top)
    indent = initial.shape[1] + 30
    # A heading in a bigger hand, above the initial.
    big = _make_script(rng, x_height=44)
    _write_line(ink, big, rng, left + 40, initial_top - 45, right - 300, darkness=0.97)
    for i, baseline in enumerate(baselines):
        last = i == len(baselines) - 1
        _write_line(ink, script, rng, left + (indent if i < 4 else 0), baseline, (left + right) // 2 if last else right)
    # Marginal notes in a small hand.
    small = _make_script(rng, x_height=13)
    for baseline in baselines[5:30:9]:
        for row in range(4):
            _write_line(ink, small, rng, right + 40, baseline + row * 30, px + pw - 40, darkness=0.8)
    # The folio number in the top corner.
    _write_line(ink, script, rng, px + pw - 260, py + 160, px + pw - 150)


def _rule(
    ruling: npt.NDArray[np.uint8],
    baselines: Sequence[int],
    text_x: tuple[int, int],
    leaf_box: tuple[int, int, int, int],
) -> None:
    """Faint dry-point ruling (grey levels to darken): a line per baseline across the leaf,
    double bounding lines from top to bottom, and a pricking hole per line in the margin."""
    px, py, pw, ph = leaf_box
    left, right = text_x
    for y in baselines:
        ruling[y : y + 2, px + 20 : px + pw - 20] = 9
        ruling[y - 2 : y + 3, px + pw - 62 : px + pw - 57] = 30
    for x in (left - 14, left, right, right + 14):
        ruling[py + 10 : py + ph - 10, x : x + 2] = 8


def _make_script(rng: np.random.Generator, x_height: int, letters: int = 26) -> _Script:
    """A seeded alphabet of minim-based letters plus a point, and Zipf-like frequencies."""
    strokes = [_letter_strokes(rng, minims=int(rng.choice([1, 1, 2, 2, 3]))) for _ in range(letters)]
    strokes.append([[(0.0, 0.86), (0.08, 0.98)]])  # the point
    glyphs = tuple(_render_glyph(s, x_height, nib=0.24) for s in strokes)
    weights = 1.0 / np.arange(1, len(glyphs) + 1) ** 0.8
    weights[-1] = 0.02
    return _Script(glyphs, weights / weights.sum(), x_height, baseline=round(1.75 * x_height) + 4)


def _letter_strokes(rng: np.random.Generator, minims: int, capital: bool = False) -> list[list[tuple[float, float]]]:
    """Pen paths of one letter in x-height units (y 0 = top of the x-height, 1 = baseline)."""
    paths: list[list[tuple[float, float]]] = []
    xs = [0.1 + 0.42 * i for i in range(minims)]
    for i, x in enumerate(xs):
        top = -0.75 if (i == 0 and rng.random() < 0.22) or capital else 0.0
        bottom = 1.7 if i == minims - 1 and rng.random() < 0.15 else 0.92
        paths.append([(x - 0.12, top + 0.12), (x, top), (x, bottom), (x + 0.14, min(bottom + 0.08, 1.78))])
        if i + 1 < minims and rng.random() < 0.7:  # an arch joining this minim to the next
            paths.append([(x, 0.14), (x + 0.14, 0.0), (xs[i + 1], 0.08)])
    right = xs[-1]
    if rng.random() < 0.35 or capital:  # a bowl on the right
        paths.append([(right, 0.08), (right + 0.3, 0.0), (right + 0.4, 0.5), (right + 0.3, 1.0), (right, 0.94)])
    if rng.random() < 0.2:  # a cross-stroke at the top of the x-height
        paths.append([(xs[0] - 0.15, 0.02), (right + 0.25, 0.02)])
    if capital:
        paths.append([(xs[0] - 0.3, -0.4), (xs[0] - 0.3, 0.6), (xs[0] - 0.45, 0.9)])
    return paths


def _render_glyph(paths: Sequence[Sequence[tuple[float, float]]], x_height: int, nib: float) -> Alpha:
    """Coverage mask of pen paths drawn with a broad nib held at 40 degrees, anti-aliased.

    Each path segment sweeps the nib (a parallelogram) plus a hairline across it, tested on
    a supersampled grid and averaged down. Row ``round(1.75 * x_height) + 4`` is the baseline.
    """
    ss = 4 if x_height < 64 else 2
    pad = 0.35
    xmax = max(x for path in paths for x, _ in path)
    w = math.ceil((xmax + 2 * pad) * x_height) + 2
    h = math.ceil(2.5 * x_height) + 8
    unit = ss * x_height  # grid points per x-height
    top = 0.75 + 4.0 / x_height  # the x-height's top is 0.75 x-heights + 4 px below row 0
    gy, gx = np.mgrid[0 : h * ss, 0 : w * ss].astype(np.float32) / unit
    gx -= pad
    gy -= top
    angle = math.radians(40)
    nib_vector = np.array([math.cos(angle), -math.sin(angle)]) * nib
    inside = np.zeros(gx.shape, dtype=bool)
    for path in paths:
        for (x0, y0), (x1, y1) in itertools.pairwise(path):
            a, along = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
            hair = np.array([-along[1], along[0]]) / (np.hypot(*along) + 1e-9) * (1.2 / x_height)
            for across in (nib_vector, hair):
                origin = a - across / 2
                corners = np.array([origin, origin + along, origin + across, origin + along + across])
                # Test only the grid points in the parallelogram's bounding box.
                (c0, r0), (c1, r1) = corners.min(axis=0), corners.max(axis=0)
                window = np.s_[
                    max(0, int((r0 + top) * unit)) : int((r1 + top) * unit) + 2,
                    max(0, int((c0 + pad) * unit)) : int((c1 + pad) * unit) + 2,
                ]
                inside[window] |= _in_parallelogram(gx[window], gy[window], origin, along, across)
    coverage: Alpha = inside.reshape(h, ss, w, ss).mean(axis=(1, 3), dtype=np.float32)
    return coverage


def _in_parallelogram(
    gx: Alpha,
    gy: Alpha,
    origin: npt.NDArray[np.float64],
    u: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    det = u[0] * v[1] - u[1] * v[0]
    if abs(det) < 1e-9:
        return np.zeros(gx.shape, dtype=bool)
    dx, dy = gx - origin[0], gy - origin[1]
    s = (dx * v[1] - dy * v[0]) / det
    t = (u[0] * dy - u[1] * dx) / det
    inside: npt.NDArray[np.bool_] = (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
    return inside


# Glyph boxes have 0.35 x-heights of padding each side; overlapping them by this much gives
# blackletter's tight spacing.
GLYPH_OVERLAP = 0.55


def _write_line(
    ink: Alpha,
    script: _Script,
    rng: np.random.Generator,
    x: int,
    baseline: int,
    right: int,
    darkness: float = 0.95,
) -> None:
    """Fill one line with words of the script, from x to right, on a slightly wavering baseline."""
    space = int(0.7 * script.x_height)
    while True:
        word = rng.choice(len(script.glyphs) - 1, size=int(rng.integers(2, 9)), p=_letters_only(script))
        if rng.random() < 0.12:
            word = np.append(word, len(script.glyphs) - 1)  # end the word with a point
        overlap = int(GLYPH_OVERLAP * script.x_height)
        width = sum(script.glyphs[g].shape[1] - overlap for g in word)
        if x + width > right:
            return
        dy = int(rng.integers(-1, 2))
        tone = darkness * float(rng.uniform(0.85, 1.0))
        for g in word:
            glyph = script.glyphs[g]
            _paste(ink, glyph * tone, x, baseline - script.baseline + dy)
            x += glyph.shape[1] - overlap
        x += space


def _letters_only(script: _Script) -> npt.NDArray[np.float64]:
    weights: npt.NDArray[np.float64] = script.weights[:-1] / script.weights[:-1].sum()
    return weights


def _paste(ink: Alpha, glyph: Alpha, x: int, y: int) -> None:
    """Overlay glyph coverage into ink at (x, y), clipped to the canvas."""
    h, w = glyph.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, ink.shape[1]), min(y + h, ink.shape[0])
    if x0 < x1 and y0 < y1:
        region = ink[y0:y1, x0:x1]
        np.maximum(region, glyph[y0 - y : y1 - y, x0 - x : x1 - x], out=region)


def _framed(glyph: Alpha) -> Alpha:
    """The initial in a ruled box with a cross-hatched ground."""
    h, w = glyph.shape
    box = np.zeros((h + 40, w + 40), dtype=np.float32)
    yy, xx = np.mgrid[0 : h + 40, 0 : w + 40]
    box[((xx + yy) % 14 == 0) | ((xx - yy) % 14 == 0)] = 0.35  # hatching
    box[20 : 20 + h, 20 : 20 + w] = np.maximum(box[20 : 20 + h, 20 : 20 + w], glyph)
    for edge in (slice(0, 5), slice(-5, None)):
        box[edge, :] = 0.9
        box[:, edge] = 0.9
    return box


def _paper(width: int, height: int, seed: int, ink: pyvips.Image) -> pyvips.Image:
    """Laid paper tone: stains, fibres, grain, foxing, and the text of the other side showing."""
    stains = _fbm(width, height, [1500, 600, 200], seed)
    fibres = _streaks(width, height, seed + 1, length=30) * 0.6 + _streaks(height, width, seed + 2, 12).rot90() * 0.3
    grain = _grain(width, height, seed + 3)
    # Chain lines of laid paper vary along x only: one row, zoomed to the full height.
    chain = (pyvips.Image.xyz(width, 1)[0] * (360.0 / 160.0)).sin().zoom(1, height)
    foxing = _foxing(width, height, seed + 4)
    # The other side's text, mirrored and blurred through the paper (blurred at 1/4 size).
    show_through = _upsampled(ink.fliphor().resize(0.25).gaussblur(0.8), 4, width, height) * 7.0
    return 214 + 12 * stains + 2.5 * fibres + 3 * grain + 1.2 * chain - foxing - show_through


def _foxing(width: int, height: int, seed: int, scale: int = 8) -> pyvips.Image:
    """Brown age spots, as darkening in grey levels."""
    rng = np.random.default_rng(seed)
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    spots = pyvips.Image.black(w, h)
    for _ in range(40):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        spots = spots.draw_circle([float(rng.uniform(8, 30))], x, y, int(rng.integers(1, 6)), fill=True)
    return _upsampled(spots.gaussblur(1.5), scale, width, height)


def _leaf_mask(width: int, height: int, seed: int, page_box: tuple[int, int, int, int], scale: int = 4) -> pyvips.Image:
    """Where the leaf is, 0..1: its box with frayed, slightly wavy edges."""
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    inset = _box_distance(pyvips.Image.xyz(w, h) * scale, page_box)
    wobble = _fbm(w, h, [200, 50, 12], seed) * 6.0
    return _upsampled(_smoothstep(inset + wobble, -1.5, 1.5), scale, width, height).clamp(min=0.0, max=1.0)


def _box_distance(xy: pyvips.Image, box: tuple[int, int, int, int]) -> pyvips.Image:
    """Distance inside the box to its nearest edge (negative outside), per pixel."""
    px, py, pw, ph = box
    x, y = xy[0], xy[1]
    return (x - px).minpair(px + pw - x).minpair((y - py).minpair(py + ph - y))


def _grey_target(step: int, height: int, steps: int = 12) -> pyvips.Image:
    """A grey-scale scanning target: ``steps`` patches from near white to near black."""
    levels = np.round(245.0 - np.arange(steps) * (230.0 / (steps - 1))).astype(np.uint8)
    return pyvips.Image.new_from_array(np.repeat(levels, step)[np.newaxis, :].repeat(height, axis=0))


# --- photo-p3.tif ----------------------------------------------------------------------------


# The intended sRGB colours of the photo's colour chart, row by row: a classic 24-patch
# checker's values, except that the third row holds the sRGB primaries and secondaries at full
# saturation (the edges of the sRGB gamut, well inside P3's).
CHART = (
    (115, 82, 68),
    (194, 150, 130),
    (98, 122, 157),
    (87, 108, 67),
    (133, 128, 177),
    (103, 189, 170),
    (214, 126, 44),
    (80, 91, 166),
    (193, 90, 99),
    (94, 60, 108),
    (157, 188, 64),
    (224, 163, 46),
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (243, 243, 242),
    (200, 200, 200),
    (160, 160, 160),
    (122, 122, 121),
    (85, 85, 85),
    (52, 52, 52),
)


def photo_srgb(width: int, height: int, seed: int = 4400) -> pyvips.Image:
    """The photo as intended, in sRGB (uchar): colour chart and hue strip over a bokeh backdrop."""
    backdrop = _bokeh(width, height, seed)
    image = _colour_chart(backdrop, width, height, seed + 1)
    image = _hue_strip(image, width, height)
    noise = _grain(width, height, seed + 2) * 2.0  # sensor noise
    return (image + noise).cast("uchar").copy(interpretation="srgb")


def photo_p3(width: int, height: int, seed: int = 4400) -> pyvips.Image:
    """photo_srgb converted to Display P3; the P3 profile is attached and tiffsave embeds it."""
    return photo_srgb(width, height, seed).icc_transform("p3", input_profile="srgb", intent="relative")


def _bokeh(width: int, height: int, seed: int, scale: int = 4) -> pyvips.Image:
    """Out-of-focus lights (soft-edged discs, added) on a dark gradient, float sRGB."""
    rng = np.random.default_rng(seed)
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / h)[..., np.newaxis]
    lights = (1.0 - t) * np.array([20.0, 30.0, 60.0], np.float32) + t * np.array([60.0, 30.0, 40.0], np.float32)
    for _ in range(90):
        colour = rng.choice([0.0, 60.0, 255.0], size=3).astype(np.float32)
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, 40))
        softness = r / 5.0 + 1.0
        box = np.s_[max(0, y - 2 * r) : y + 2 * r, max(0, x - 2 * r) : x + 2 * r]  # the disc and its edge
        disc = np.clip((r - np.hypot(xx[box] - x, yy[box] - y)) / softness + 0.5, 0.0, 1.0)
        lights[box] += disc[..., np.newaxis] * colour * float(rng.uniform(0.15, 0.45))
    return _upsampled(pyvips.Image.new_from_array(lights), scale, width, height)


def _colour_chart(image: pyvips.Image, width: int, height: int, seed: int) -> pyvips.Image:
    """A 6x4 chart on a black card with a soft shadow; the patches have a fine fabric texture."""
    patch, gap = width // 14, width // 120
    card_w, card_h = 6 * (patch + gap) + gap, 4 * (patch + gap) + gap
    x0, y0 = (width - card_w) // 2, height // 8
    card = np.empty((card_h, card_w, 3), dtype=np.uint8)
    card[:] = (24, 24, 26)
    for i, colour in enumerate(CHART):
        x, y = gap + (i % 6) * (patch + gap), gap + (i // 6) * (patch + gap)
        card[y : y + patch, x : x + patch] = colour
    weave = _streaks(card_w, card_h, seed, length=6) * 2.0
    card_image = pyvips.Image.new_from_array(card) + weave
    image = image * (1.0 - 0.6 * _shadow(width, height, (x0 + 25, y0 + 30, card_w, card_h)))
    return image.insert(card_image, x0, y0)


def _shadow(width: int, height: int, box: tuple[int, int, int, int], scale: int = 4) -> pyvips.Image:
    """A soft drop shadow of a box, 0..1, made at 1/scale size."""
    x, y, w, h = (v // scale for v in box)
    small = (pyvips.Image.black(w, h) + 1.0).embed(x, y, math.ceil(width / scale), math.ceil(height / scale))
    return _upsampled(small.gaussblur(4.5), scale, width, height)


def _hue_strip(image: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """A hue sweep (left to right) fading to white (bottom), across the lower part."""
    top, strip_h = int(height * 0.72), int(height * 0.2)
    left, strip_w = width // 12, width - width // 6
    xy = pyvips.Image.xyz(strip_w, strip_h)
    hue = xy[0] * (255.0 / strip_w)
    saturation = 255.0 - xy[1] * (200.0 / strip_h)
    hsv = hue.bandjoin([saturation, pyvips.Image.black(strip_w, strip_h) + 250.0])
    rgb = hsv.cast("uchar").copy(interpretation="hsv").colourspace("srgb").cast("float")
    return image.insert(rgb, left, top)


# --- map-lzw.tif -----------------------------------------------------------------------------

SEA_LEVEL = -0.12

# Hypsometric tints, land from the coast up (position 0..1, sRGB).
LAND_TINTS = (
    (0.0, (120, 165, 105)),
    (0.25, (170, 195, 120)),
    (0.5, (225, 210, 150)),
    (0.75, (185, 140, 100)),
    (0.9, (150, 120, 110)),
    (1.0, (250, 250, 250)),
)
WATER_TINTS = ((0.0, (170, 210, 230)), (0.3, (110, 165, 210)), (1.0, (40, 80, 150)))


def logo(width: int, height: int) -> pyvips.Image:
    """The demo institution's logo: a deep-red disc with a gold ring and a white arch."""
    image = pyvips.Image.black(width, height, bands=3).new_from_image([255, 255, 255])
    cx, cy, r = width // 2, height // 2, min(width, height) // 2 - 8
    image = image.draw_circle([176, 32, 48], cx, cy, r, fill=True)
    image = image.draw_circle([214, 170, 60], cx, cy, r - 24, fill=True)
    image = image.draw_circle([176, 32, 48], cx, cy, r - 44, fill=True)
    arch = r // 2
    image = image.draw_circle([255, 255, 255], cx, cy + arch // 3, arch, fill=True)
    image = image.draw_rect([176, 32, 48], cx - arch, cy + arch // 3, 2 * arch, arch + 4, fill=True)
    return image.cast("uchar").copy(interpretation="srgb")


def relief_map(width: int, height: int, seed: int = 5500) -> pyvips.Image:
    """A shaded relief map: tinted elevation, contours, coast hatching, graticule, neat line."""
    elevation = _fbm(width, height, [1200, 600, 300, 150, 75, 36, 18, 8], seed, gain=0.5)
    elevation = elevation.copy_memory()  # read by several branches below; compute once
    land = elevation > SEA_LEVEL
    shade = _hillshade(elevation, exaggeration=900.0)
    height01 = ((elevation - SEA_LEVEL) / (0.75 - SEA_LEVEL)).clamp(min=0.0, max=1.0)
    depth01 = ((SEA_LEVEL - elevation) / (SEA_LEVEL + 0.8)).clamp(min=0.0, max=1.0)
    terrain = _lookup(height01, LAND_TINTS) * (0.55 + 0.6 * shade)
    water = _lookup(depth01, WATER_TINTS) * (0.9 + 0.15 * shade)
    # Old-map coast hatching: lines parallel to the coast, fading offshore.
    hatching = ((depth01 * 60.0 % 1.0) < 0.18).ifthenelse(1.0, 0.0) * (1.0 - _smoothstep(depth01, 0, 0.12))
    water = water * (1.0 - 0.25 * hatching)
    image = land.ifthenelse(terrain, water)
    contours = land & ((height01 * 16.0 % 1.0) < 0.07)
    image = contours.ifthenelse(image * 0.55 + [40.5, 22.5, 9.0], image)
    coast = (elevation - SEA_LEVEL).abs() < 0.004
    image = coast.ifthenelse([30.0, 50.0, 90.0], image)
    image = _graticule(image, width, height, step=500)
    image = _labels(image, width, height, seed + 1, land)
    return _neat_line(image.cast("uchar"), width, height).copy(interpretation="srgb")


def _hillshade(elevation: pyvips.Image, exaggeration: float) -> pyvips.Image:
    """Lambertian shading, 0..1, lit from the north-west."""
    sobel_x = pyvips.Image.new_from_list([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], scale=8)
    dx = elevation.conv(sobel_x, precision="float") * exaggeration
    dy = elevation.conv(sobel_x.rot90(), precision="float") * exaggeration
    light = (-0.5, -0.5, 0.707)
    lit = (-dx * light[0] - dy * light[1] + light[2]) / (dx * dx + dy * dy + 1.0) ** 0.5
    return lit.clamp(min=0.0, max=1.0)


def _lookup(position: pyvips.Image, stops: Sequence[tuple[float, tuple[int, int, int]]]) -> pyvips.Image:
    """Map 0..1 through a colour ramp (256-entry LUT), float sRGB."""
    x = np.linspace(0.0, 1.0, 256)
    at = [p for p, _ in stops]
    table = np.stack([np.interp(x, at, [c[band] for _, c in stops]) for band in range(3)], axis=-1)
    lut = pyvips.Image.new_from_array(table.reshape(1, 256, 3).astype(np.uint8))
    return (position * 255.0).cast("uchar").maplut(lut).cast("float")


def _graticule(image: pyvips.Image, width: int, height: int, step: int) -> pyvips.Image:
    """Thin grid lines every ``step`` pixels."""
    columns = np.zeros((1, width), dtype=np.uint8)
    rows = np.zeros((height, 1), dtype=np.uint8)
    for x in range(step, width, step):
        columns[0, x - 1 : x + 1] = 1
    for y in range(step, height, step):
        rows[y - 1 : y + 1, 0] = 1
    # One-pixel-wide masks zoomed out to the full size: no full-size drawing needed.
    lines = pyvips.Image.new_from_array(columns).zoom(1, height) | pyvips.Image.new_from_array(rows).zoom(width, 1)
    return _mix(image, (60.0, 60.0, 70.0), lines * 0.5)


def _labels(image: pyvips.Image, width: int, height: int, seed: int, land: pyvips.Image) -> pyvips.Image:
    """Place names in the manuscript's invented script, on land, dark brown."""
    rng = np.random.default_rng(seed)
    script = _make_script(rng, x_height=18)
    ink = np.zeros((height, width), dtype=np.float32)
    land_small = land.resize(1 / 50).numpy() > 128  # where labels may start, in 50-px cells
    cells = np.argwhere(land_small)
    for row, col in cells[rng.choice(len(cells), size=min(30, len(cells)), replace=False)]:
        x, y = int(col) * 50, int(row) * 50 + 25
        _write_line(ink, script, rng, x, y, min(x + int(rng.integers(150, 420)), width - 80))
    coverage = pyvips.Image.new_from_array(ink)
    return _mix(image, (60.0, 35.0, 20.0), coverage * 0.9)


MAP_PAPER = (245, 240, 225)


def _neat_line(image: pyvips.Image, width: int, height: int, margin: int = 40, bar: int = 12) -> pyvips.Image:
    """A paper border with a frame and an alternating black and white scale, as on printed maps."""
    border = np.empty((height, width, 3), dtype=np.uint8)
    border[:] = MAP_PAPER
    frame = margin - bar - 2
    border[frame : height - frame, frame : width - frame] = 20
    border[frame + 2 : height - frame - 2, frame + 2 : width - frame - 2] = MAP_PAPER
    for i, x in enumerate(range(margin, width - margin, 100)):
        if i % 2 == 0:
            border[margin - bar : margin, x : min(x + 100, width - margin)] = 20
            border[height - margin : height - margin + bar, x : min(x + 100, width - margin)] = 20
    for i, y in enumerate(range(margin, height - margin, 100)):
        if i % 2 == 0:
            border[y : min(y + 100, height - margin), margin - bar : margin] = 20
            border[y : min(y + 100, height - margin), width - margin : width - margin + bar] = 20
    inner = image.crop(margin, margin, width - 2 * margin, height - 2 * margin)
    return pyvips.Image.new_from_array(border).insert(inner, margin, margin)


# --- the IIIF validator image ----------------------------------------------------------------


def validator_image(png: Path) -> pyvips.Image:
    """The validator's PNG, unchanged; fails loudly if it is not the expected 1000x1000 RGB."""
    image = pyvips.Image.new_from_file(str(png))
    if (image.width, image.height) != VALIDATOR_SIZE or image.bands != 3 or image.format != "uchar":
        raise ValueError(
            f"{png.name}: expected {VALIDATOR_SIZE[0]}x{VALIDATOR_SIZE[1]} 8-bit RGB, got "
            f"{image.width}x{image.height}x{image.bands} {image.format}"
        )
    return image
