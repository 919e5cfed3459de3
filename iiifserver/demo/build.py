"""Build the bundled demo image collection.

Owns: the list of demo images (name, size, generator, TIFF options) and writing them as tiled
pyramidal TIFFs into an images directory, once. Each image's recipe is its own module under
``iiifserver.demo.images``; the texture building blocks are in ``noise`` and the invented
script in ``script``. It is an offline tool (run before serving, never per request), so it
imports pyvips directly. Must not know: IIIF requests, HTTP, settings, how an image is drawn.

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

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyvips

from iiifserver.demo.images.logo import logo
from iiifserver.demo.images.manuscript import manuscript
from iiifserver.demo.images.painting import painting
from iiifserver.demo.images.panorama import panorama
from iiifserver.demo.images.photo import photo_p3, photo_srgb
from iiifserver.demo.images.relief_map import relief_map
from iiifserver.demo.images.validator import VALIDATOR_ID, VALIDATOR_SIZE, validator_image

DEMO_VERSION = 1
MARKER_NAME = ".demo-version"

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

Progress = Callable[[str], None]


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
