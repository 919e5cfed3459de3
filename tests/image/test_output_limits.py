"""Download limits: ``max_lossless_pixels`` (png and tif outputs) and ``max_full_pixels`` (what
``max`` may give, in any format), in the planner and through the app, with info.json truthful."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
import pyvips
from PIL import Image

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Limits, Settings, SettingsError, load_settings
from iiifserver.errors import Forbidden
from iiifserver.image.planner import resolve
from iiifserver.image.request import ApiVersion, parse_image_request
from iiifserver.image.source_info import Colour, Level, SourceFormat, SourceInfo

IMAGE = SourceInfo(
    width=5000,
    height=5000,
    levels=(Level(5000, 5000),),
    tile_width=256,
    tile_height=256,
    colour=Colour.RGB,
    bands=3,
    has_alpha=False,
    has_icc=False,
    format=SourceFormat.TIFF,
)
LOSSLESS_1MP = Limits(10_000, 10_000, 25_000_000, max_lossless_pixels=1_000_000)


def size_of(path: str, limits: Limits) -> tuple[int, int]:
    region, size, rotation, quality_format = path.split("/")
    resolved = resolve(
        parse_image_request(region, size, rotation, quality_format, version=ApiVersion.V3), IMAGE, limits
    )
    return resolved.width, resolved.height


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # Lossy formats are not limited by it; lossless ones up to the cap are served.
        ("full/max/0/default.jpg", (5000, 5000)),
        ("full/max/0/default.webp", (5000, 5000)),
        ("full/1000,/0/default.png", (1000, 1000)),
        ("full/1000,/0/default.tif", (1000, 1000)),
        ("0,0,1000,1000/max/0/default.png", (1000, 1000)),
        ("0,0,256,256/256,/0/default.png", (256, 256)),
        # gif is not among the lossless formats a full-size copy is made in.
        ("full/2000,/0/default.gif", (2000, 2000)),
    ],
)
def test_within_the_lossless_cap_or_lossy(path: str, expected: tuple[int, int]) -> None:
    assert size_of(path, LOSSLESS_1MP) == expected


@pytest.mark.parametrize(
    "path",
    [
        "full/max/0/default.png",  # max is not shrunk for a format: refused
        "full/max/0/default.tif",
        "full/1001,/0/default.png",
        "0,0,2000,2000/max/0/color.png",
        "full/1000,/45/default.png",  # 1000x1000 rotated by 45 degrees is 1414x1414
    ],
)
def test_over_the_lossless_cap_is_403_naming_the_format(path: str) -> None:
    with pytest.raises(Forbidden) as caught:
        size_of(path, LOSSLESS_1MP)
    assert caught.value.status == 403
    assert caught.value.parameter == "format"
    assert "1000000 pixels" in caught.value.detail


def test_no_lossless_cap_by_default() -> None:
    assert Settings().max_lossless_pixels == 0
    assert size_of("full/max/0/default.png", Settings().limits) == (5000, 5000)


@pytest.mark.parametrize(
    ("max_area", "max_full_pixels", "advertised"),
    [
        (25_000_000, 0, 25_000_000),  # 0: only the general limits
        (25_000_000, 4_000_000, 4_000_000),
        (1_000_000, 4_000_000, 1_000_000),  # never raises max_area
    ],
)
def test_max_full_pixels_lowers_the_enforced_and_advertised_area(
    max_area: int, max_full_pixels: int, advertised: int
) -> None:
    limits = Settings(max_area=max_area, max_full_pixels=max_full_pixels).limits
    assert limits.max_area == advertised
    w, h = size_of("full/max/0/default.jpg", limits)
    assert w * h <= advertised
    assert (w, h) == ((5000, 5000) if advertised >= 25_000_000 else (w, w))


@pytest.mark.parametrize("name", ["max_full_pixels", "max_lossless_pixels"])
def test_negative_caps_are_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(None, overrides={name: -1})


# --- through the app -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limit-images")
    base = pyvips.Image.perlin(1000, 800, cell_size=64, uchar=True)
    base.bandjoin([base, base]).copy(interpretation="srgb").tiffsave(
        str(root / "pic.tif"), tile=True, pyramid=True, compression="jpeg", Q=85
    )
    return root


def get(images: Path, path: str, **settings: Any) -> tuple[int, bytes]:
    app = create_app(Settings(images=images, memory_cache_mb=0, disk_cache_mb=0, **settings))

    async def one() -> tuple[int, list[tuple[str, str]], bytes]:
        return await call(app, path)

    status, _, body = asyncio.run(one())
    return status, body


def dimensions(body: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(body)) as img:
        return img.size


def test_http_full_max_respects_max_full_pixels_and_info_says_so(images: Path) -> None:
    caps = {"max_full_pixels": 200_000}
    info = orjson.loads(get(images, "/iiif/3/pic/info.json", **caps)[1])
    assert info["maxArea"] == 200_000
    status, body = get(images, "/iiif/3/pic/full/max/0/default.jpg", **caps)
    assert status == 200
    w, h = dimensions(body)
    assert w * h <= 200_000
    assert (w, h) == (500, 400)
    assert all(s["width"] * s["height"] <= 200_000 for s in info["sizes"])
    # An explicit size cannot go round it.
    assert get(images, "/iiif/3/pic/full/1000,/0/default.jpg", **caps)[0] == 400
    # Tiles stay as they were: regions at full resolution are what deep zoom needs.
    assert get(images, "/iiif/3/pic/0,0,256,256/256,/0/default.jpg", **caps)[0] == 200


def test_http_lossless_cap(images: Path) -> None:
    caps = {"max_lossless_pixels": 100_000}
    status, body = get(images, "/iiif/3/pic/full/max/0/default.png", **caps)
    assert status == 403
    assert b"format" in body
    assert b"/" not in body.split(b":", 1)[1]  # names no path
    assert get(images, "/iiif/3/pic/full/max/0/default.jpg", **caps)[0] == 200
    status, body = get(images, "/iiif/3/pic/full/300,/0/default.png", **caps)
    assert status == 200
    assert dimensions(body) == (300, 240)
    info = orjson.loads(get(images, "/iiif/3/pic/info.json", **caps)[1])
    assert info["maxArea"] == 25_000_000  # a per-format policy is not an image limit


def test_http_default_serves_a_lossless_full_size_copy(images: Path) -> None:
    status, body = get(images, "/iiif/3/pic/full/max/0/default.png")
    assert status == 200
    assert dimensions(body) == (1000, 800)
