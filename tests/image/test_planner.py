"""Geometry of image requests against real pyramid shapes (Image API 3.0 section 4, implementation notes 3-5).

Sources are hand-built ``SourceInfo`` values; nothing here touches pixels. Expected values come
from the spec's examples and tables, from the implementation notes' algorithms (transcribed below,
independently of the planner) and from the rounding rules of the planner's docstring.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from iiifserver.config import Limits
from iiifserver.errors import BadRequest, NotImplementedFeature
from iiifserver.image.planner import (
    Box,
    Plan,
    Resolved,
    choose_level,
    level_scale,
    max_size,
    plan,
    resolve,
    rotated_size,
    round_half_up,
)
from iiifserver.image.request import ApiVersion, Format, ImageRequest, Quality, parse_image_request
from iiifserver.image.source_info import Colour, Level, SourceFormat, SourceInfo

V2, V3 = ApiVersion.V2, ApiVersion.V3


def pyramid(width: int, height: int, *, count: int) -> tuple[Level, ...]:
    """``count`` floor-halved levels (what libvips' tiffsave writes), as pages 0, 1, 2, ..."""
    levels = [Level(width, height, page=0)]
    while len(levels) < count:
        width, height = width // 2, height // 2
        levels.append(Level(width, height, page=len(levels)))
    return tuple(levels)


def source(width: int, height: int, levels: tuple[Level, ...] | None = None, colour: Colour = Colour.RGB) -> SourceInfo:
    return SourceInfo(
        width=width,
        height=height,
        levels=levels or (Level(width, height),),
        tile_width=256,
        tile_height=256,
        colour=colour,
        bands=1 if colour is Colour.GRAY else 3,
        has_alpha=False,
        has_icc=False,
        format=SourceFormat.TIFF,
    )


BIG = source(12000, 9000, pyramid(12000, 9000, count=7))  # down to 187x140
ODD = source(12001, 9001, pyramid(12001, 9001, count=7))  # 6000x4500 ... 187x140
VALIDATOR = source(1000, 1000, pyramid(1000, 1000, count=4))  # the validators' test image
EXAMPLE = source(300, 200)  # the spec's example image (its region/size examples are 300x200)
STRIP = source(1, 10000)
WIDE_STRIP = source(10000, 1)
GRAY = source(1000, 1000, pyramid(1000, 1000, count=4), colour=Colour.GRAY)

UNLIMITED = Limits(10**9, 10**9, 10**18)
DEFAULT_LIMITS = Limits(10000, 10000, 25_000_000)  # the server's default settings


def resolve_path(path: str, info: SourceInfo, limits: Limits = UNLIMITED, version: ApiVersion = V3) -> Resolved:
    region, size, rotation, quality_format = path.split("/")
    request = parse_image_request(region, size, rotation, quality_format, version=version)
    return resolve(request, info, limits)


def out(path: str, info: SourceInfo, limits: Limits = UNLIMITED, version: ApiVersion = V3) -> tuple[int, int]:
    resolved = resolve_path(path, info, limits, version)
    return resolved.width, resolved.height


def half_up(value: Fraction) -> int:
    """Round half up, exactly (the planner docstring's rule for derived dimensions)."""
    return math.floor(value + Fraction(1, 2))


def note4_max_size(width: int, height: int, max_width: int, max_height: int, max_area: int) -> tuple[int, int]:
    """Implementation note 4, transcribed verbatim (Python 3: ``/`` is true division)."""
    w, h = width, height
    if max_area and max_area < (w * h):
        scale = (float(max_area) / float(w * h)) ** 0.5
        w = int(w * scale)
        h = int(h * scale)
    if max_width:
        if not max_height:
            max_height = max_width
        if max_width < w:
            w = max_width
            h = int(float(height * max_width) / float(width) + 0.5)
        if max_height < h:
            h = max_height
            w = int(float(width * max_height) / float(height) + 0.5)
    return w, h


def note3_tiles(width: int, height: int, tw: int, th: int, s: int) -> list[tuple[int, int, int, int, int, int]]:
    """Implementation note 3 for every tile (n, m) of scale factor s: (xr, yr, wr, hr, ws, hs)."""
    tiles = []
    for m in range(-(-height // (th * s))):
        for n in range(-(-width // (tw * s))):
            xr = n * tw * s
            yr = m * th * s
            wr = tw * s
            if xr + wr > width:
                wr = width - xr
            hr = th * s
            if yr + hr > height:
                hr = height - yr
            ws = tw
            if xr + tw * s > width:
                ws = (width - xr + s - 1) // s
            hs = th
            if yr + th * s > height:
                hs = (height - yr + s - 1) // s
            tiles.append((xr, yr, wr, hr, ws, hs))
    return tiles


def level_extent(info: SourceInfo, level: Level, box: Box) -> tuple[float, float]:
    """The size of ``box`` (full-resolution pixels) measured in ``level``'s pixels."""
    return box.w * level.width / info.width, box.h * level.height / info.height


def assert_plan_sane(p: Plan, info: SourceInfo, resolved: Resolved) -> None:
    assert p.level in info.levels
    crop = p.crop
    assert crop.x >= 0
    assert crop.y >= 0
    assert crop.w >= 1
    assert crop.h >= 1
    assert crop.x + crop.w <= p.level.width
    assert crop.y + crop.h <= p.level.height
    assert (p.width, p.height) == (resolved.width, resolved.height)
    # The crop is the region, measured at the level, to within a pixel at each edge. A region that
    # starts in the strip a floor-rounded level dropped (82 rows -> 2 at 1/32 hold rows 0-63) is
    # taken from the level's last pixel.
    sx, sy = level_scale(info.width, p.level.width), level_scale(info.height, p.level.height)
    region = resolved.region
    assert abs(crop.x - min(region.x / sx, p.level.width - 1)) <= 1
    assert abs(crop.y - min(region.y / sy, p.level.height - 1)) <= 1
    assert abs(crop.x + crop.w - min((region.x + region.w) / sx, p.level.width)) <= 1
    assert abs(crop.y + crop.h - min((region.y + region.h) / sy, p.level.height)) <= 1


# -- fixtures are what they claim ---------------------------------------------------------------


def test_pyramid_shapes() -> None:
    assert [(lv.width, lv.height) for lv in BIG.levels] == [
        (12000, 9000),
        (6000, 4500),
        (3000, 2250),
        (1500, 1125),
        (750, 562),
        (375, 281),
        (187, 140),
    ]
    assert [(lv.width, lv.height) for lv in ODD.levels][1:] == [(lv.width, lv.height) for lv in BIG.levels][1:]
    assert BIG.scale_factors() == ODD.scale_factors() == (1, 2, 4, 8, 16, 32, 64)


# -- section 4.1 region examples (on the 300x200 example image) ---------------------------------


@pytest.mark.parametrize(
    ("region", "box"),
    [
        ("full", Box(0, 0, 300, 200)),
        ("square", Box(50, 0, 200, 200)),  # centred, as the spec suggests
        ("125,15,120,140", Box(125, 15, 120, 140)),
        ("pct:41.6,7.5,40,70", Box(125, 15, 120, 140)),  # the spec shows the same picture for both
        ("125,15,200,200", Box(125, 15, 175, 185)),  # "Returned image is 175,185 px"
        ("pct:41.6,7.5,66.6,100", Box(125, 15, 175, 185)),  # "Returned image is 175,185 px"
    ],
)
def test_spec_region_examples(region: str, box: Box) -> None:
    resolved = resolve_path(f"{region}/max/0/default.jpg", EXAMPLE)
    assert resolved.region == box
    assert (resolved.width, resolved.height) == (box.w, box.h)  # max: the region, not upscaled
    assert not resolved.upscaled


# -- section 4.2 size examples (300x200) --------------------------------------------------------

MAX_WIDTH_200 = Limits(200, 200, 10**12)  # "maxWidth of 200px" (maxHeight defaults to maxWidth)
MAX_WIDTH_360 = Limits(360, 360, 10**12, upscale_max_to_limits=True)


@pytest.mark.parametrize(
    ("size", "limits", "expected"),
    [
        ("max", MAX_WIDTH_200, (200, 133)),
        ("^max", MAX_WIDTH_360, (360, 240)),
        ("150,", UNLIMITED, (150, 100)),
        ("^360,", UNLIMITED, (360, 240)),
        (",150", UNLIMITED, (225, 150)),
        ("^,240", UNLIMITED, (360, 240)),  # the spec's ",^240" (IIIF/api#2070)
        ("pct:50", UNLIMITED, (150, 100)),
        ("^pct:120", UNLIMITED, (360, 240)),
        ("225,100", UNLIMITED, (225, 100)),
        ("^360,360", UNLIMITED, (360, 360)),
        ("!225,100", UNLIMITED, (150, 100)),  # "Returned image is 150,100 px"
        ("^!360,360", UNLIMITED, (360, 240)),  # "Returned image is 360,240 px"
        ("max", UNLIMITED, (300, 200)),
    ],
)
def test_spec_size_examples(size: str, limits: Limits, expected: tuple[int, int]) -> None:
    assert out(f"full/{size}/0/default.jpg", EXAMPLE, limits) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("full", (300, 200)),
        ("max", (300, 200)),
        ("150,", (150, 100)),
        (",150", (225, 150)),
        ("pct:50", (150, 100)),
        ("225,100", (225, 100)),
        ("!225,100", (150, 100)),
        ("600,", (600, 400)),  # 2.1: scaling above the full size needs no prefix
        ("pct:200", (600, 400)),
    ],
)
def test_spec_21_size_examples(size: str, expected: tuple[int, int]) -> None:
    assert out(f"full/{size}/0/default.jpg", EXAMPLE, version=V2) == expected


# -- every size form, with the docstring's rounding rules ---------------------------------------


@pytest.mark.parametrize(
    ("info", "path", "expected"),
    [
        # w, and ,h: the other side rounds half up
        (BIG, "full/1000,/0/default.jpg", (1000, 750)),
        (BIG, "full/,1000/0/default.jpg", (1333, 1000)),  # 1333.33
        (ODD, "full/1000,/0/default.jpg", (1000, 750)),  # 750.02
        (ODD, "full/,1000/0/default.jpg", (1333, 1000)),  # 1333.30
        (ODD, "full/6001,/0/default.jpg", (6001, 4501)),  # 4500.87
        (source(4, 3), "full/2,/0/default.jpg", (2, 2)),  # 1.5 rounds up
        (source(3, 4), "full/,2/0/default.jpg", (2, 2)),
        (source(5, 3), "full/3,/0/default.jpg", (3, 2)),  # 1.8
        (source(5, 3), "full/1,/0/default.jpg", (1, 1)),  # 0.6
        # pct:n: both sides round half up
        (source(3, 3), "full/pct:50/0/default.jpg", (2, 2)),  # 1.5
        (source(5, 7), "full/pct:30/0/default.jpg", (2, 2)),  # 1.5, 2.1
        (BIG, "full/pct:12.5/0/default.jpg", (1500, 1125)),
        (ODD, "full/pct:50/0/default.jpg", (6001, 4501)),  # 6000.5, 4500.5
        (ODD, "full/pct:0.01/0/default.jpg", (1, 1)),  # 1.2001, 0.9001
        (STRIP, "full/pct:50/0/default.jpg", (1, 5000)),  # 0.5 rounds up
        # w,h: exactly as asked, aspect ratio ignored
        (BIG, "full/100,700/0/default.jpg", (100, 700)),
        (BIG, "full/12000,9000/0/default.jpg", (12000, 9000)),
        # !w,h: the largest fit, never larger than the box
        (BIG, "full/!1000,1000/0/default.jpg", (1000, 750)),
        (BIG, "full/!1000,500/0/default.jpg", (667, 500)),  # 666.67
        (ODD, "full/!1000,1000/0/default.jpg", (1000, 750)),
        (source(3, 2), "full/!2,2/0/default.jpg", (2, 1)),  # 1.33
        (source(2, 3), "full/!2,2/0/default.jpg", (1, 2)),
        (source(1000, 333), "full/!500,500/0/default.jpg", (500, 167)),  # 166.5 rounds up, fits
        (source(999, 1000), "full/!500,500/0/default.jpg", (500, 500)),  # 500.5 would overflow the box
        (STRIP, "full/!100,100/0/default.jpg", (1, 100)),  # 0.01 -> at least one pixel
        (VALIDATOR, "full/!1000,1000/0/default.jpg", (1000, 1000)),
        # max: the region
        (ODD, "full/max/0/default.jpg", (12001, 9001)),
        (STRIP, "full/max/0/default.jpg", (1, 10000)),
        (STRIP, "full/1,/0/default.jpg", (1, 10000)),
    ],
)
def test_size_forms(info: SourceInfo, path: str, expected: tuple[int, int]) -> None:
    resolved = resolve_path(path, info)
    assert (resolved.width, resolved.height) == expected
    assert not resolved.upscaled


@given(
    st.integers(1, 20000),
    st.integers(1, 20000),
    st.integers(1, 20000),
    st.integers(1, 20000),
)
def test_confined_is_the_largest_fit(rw: int, rh: int, bw: int, bh: int) -> None:
    info = source(rw, rh)
    for prefix in ("", "^"):
        try:
            w, h = out(f"full/{prefix}!{bw},{bh}/0/default.jpg", info)
        except BadRequest:
            assert not prefix  # only an upscale without '^' is refused
            assert min(Fraction(bw, rw), Fraction(bh, rh)) > 1
            continue
        assert 1 <= w <= bw
        assert 1 <= h <= bh
        # as large as possible: one side meets the box (or the aspect ratio forbids more)
        assert w == bw or h == bh or (w == 1 or h == 1)
        # aspect ratio kept as closely as rounding allows
        scale = min(Fraction(bw, rw), Fraction(bh, rh))
        assert abs(w - rw * scale) <= 1
        assert abs(h - rh * scale) <= 1


# -- upscaling -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    ["1001,", ",1001", "1001,1000", "1000,1001", "2000,", "1100,1100", "!2000,3000", "!1001,1001", "pct:100.0001"],
)
def test_upscaling_without_caret_is_400_in_v3(size: str) -> None:
    # B08; the validators send exactly these against their 1000x1000 image and expect an error.
    with pytest.raises(BadRequest) as excinfo:
        resolve_path(f"full/{size}/0/default.jpg", VALIDATOR)
    assert excinfo.value.parameter == "size"
    assert excinfo.value.status == 400


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("^1001,", (1001, 1001)),
        ("^,1001", (1001, 1001)),
        ("^1001,1000", (1001, 1000)),
        ("^2000,3000", (2000, 3000)),
        ("^pct:150", (1500, 1500)),
        ("^!2000,500", (500, 500)),  # A1.5's example
        ("^!2000,3000", (2000, 2000)),  # A1.5's example
    ],
)
def test_upscaling_with_caret(size: str, expected: tuple[int, int]) -> None:
    resolved = resolve_path(f"full/{size}/0/default.jpg", VALIDATOR)
    assert (resolved.width, resolved.height) == expected
    assert resolved.upscaled is (max(expected) > 1000)


@pytest.mark.parametrize("size", ["^1001,", "^,1001", "^pct:120", "^!2000,3000", "^1000,1001"])
def test_caret_when_upscaling_is_off_is_501(size: str) -> None:
    limits = Limits(10000, 10000, 10**8, allow_upscaling=False)
    with pytest.raises(NotImplementedFeature) as excinfo:
        resolve_path(f"full/{size}/0/default.jpg", VALIDATOR, limits)
    assert excinfo.value.status == 501
    assert excinfo.value.parameter == "size"


@pytest.mark.parametrize(
    ("size", "expected"),
    [("^500,", (500, 500)), ("^pct:50", (500, 500)), ("^max", (1000, 1000)), ("^!600,700", (600, 600))],
)
def test_caret_that_does_not_upscale_is_fine_when_upscaling_is_off(size: str, expected: tuple[int, int]) -> None:
    limits = Limits(10000, 10000, 10**8, allow_upscaling=False)
    resolved = resolve_path(f"full/{size}/0/default.jpg", VALIDATOR, limits)
    assert (resolved.width, resolved.height) == expected
    assert not resolved.upscaled


def test_caret_max_upscales_only_when_configured() -> None:
    small = source(300, 200)
    limits = Limits(3000, 3000, 10**8)
    assert out("full/^max/0/default.jpg", small, limits) == (300, 200)  # the default: same as max
    to_limits = Limits(3000, 3000, 10**8, upscale_max_to_limits=True)
    resolved = resolve_path("full/^max/0/default.jpg", small, to_limits)
    assert (resolved.width, resolved.height) == (3000, 2000)
    assert resolved.upscaled
    assert resolved.is_max
    off = Limits(3000, 3000, 10**8, allow_upscaling=False, upscale_max_to_limits=True)
    with pytest.raises(NotImplementedFeature):
        resolve_path("full/^max/0/default.jpg", small, off)


@pytest.mark.parametrize(
    ("region", "limits", "expected"),
    [
        # the binding limit is met exactly, not missed by a rounding error
        ("0,0,3,3", Limits(1000, 1000, 10**12, upscale_max_to_limits=True), (1000, 1000)),
        ("0,0,300,200", Limits(1000, 1000, 10**12, upscale_max_to_limits=True), (1000, 667)),
        ("0,0,200,300", Limits(1000, 1000, 10**12, upscale_max_to_limits=True), (667, 1000)),
        ("0,0,7,3", Limits(1000, 1000, 10**12, upscale_max_to_limits=True), (1000, 429)),
        ("0,0,300,200", Limits(1000, 500, 10**12, upscale_max_to_limits=True), (750, 500)),
        ("0,0,300,200", Limits(10000, 10000, 25_000_000, upscale_max_to_limits=True), (6123, 4082)),
        ("0,0,100,100", Limits(10000, 10000, 1_000_000, upscale_max_to_limits=True), (1000, 1000)),
        ("0,0,122,1", Limits(122, 1, 122, upscale_max_to_limits=True), (122, 1)),  # already at the limits
        ("0,0,61,1", Limits(122, 1, 122, upscale_max_to_limits=True), (61, 1)),  # maxHeight binds first
        ("0,0,61,2", Limits(10**6, 10**6, 488, upscale_max_to_limits=True), (122, 4)),  # area binds: scale 2
        ("0,0,61,2", Limits(10**6, 10**6, 500, upscale_max_to_limits=True), (123, 4)),  # 2.02: floored
    ],
)
def test_caret_max_reaches_the_limits(region: str, limits: Limits, expected: tuple[int, int]) -> None:
    w, h = out(f"{region}/^max/0/default.jpg", BIG, limits)
    assert (w, h) == expected
    assert w <= limits.max_width
    assert h <= limits.max_height
    assert w * h <= limits.max_area


@given(
    st.integers(1, 20000), st.integers(1, 20000), st.integers(1, 20000), st.integers(1, 20000), st.integers(1, 10**9)
)
@example(3, 3, 1000, 1000, 10**9)
@example(61, 1, 122, 1, 122)
def test_caret_max_is_the_largest_size_within_the_limits(rw: int, rh: int, mw: int, mh: int, area: int) -> None:
    limits = Limits(mw, mh, area, upscale_max_to_limits=True)
    resolved = resolve_path("full/^max/0/default.jpg", source(rw, rh), limits)
    w, h = resolved.width, resolved.height
    assert 1 <= w <= mw
    assert 1 <= h <= mh
    assert w * h <= area
    assert resolved.is_max
    # nothing larger fits: a limit is reached, or one more pixel on each side would break maxArea
    assert w == mw or h == mh or (w + 1) * (h + 1) > area
    # and it keeps the region's aspect ratio, to rounding
    if min(w, h) > 1:
        assert abs(Fraction(w, h) - Fraction(rw, rh)) <= Fraction(rw, rh) * (Fraction(1, w) + Fraction(1, h))


@pytest.mark.parametrize("size", ["1001,", "pct:150", "!2000,3000", "1000,1001"])
def test_v2_upscales_without_prefix_but_not_when_disabled(size: str) -> None:
    resolved = resolve_path(f"full/{size}/0/default.jpg", VALIDATOR, version=V2)
    assert resolved.upscaled
    off = Limits(10000, 10000, 10**8, allow_upscaling=False)
    with pytest.raises(NotImplementedFeature):
        resolve_path(f"full/{size}/0/default.jpg", VALIDATOR, off, version=V2)


# -- limits (maxWidth, maxHeight, maxArea; implementation note 4) -------------------------------


@pytest.mark.parametrize(
    ("info", "path"),
    [
        (BIG, "full/10001,/0/default.jpg"),
        (BIG, "full/,10001/0/default.jpg"),  # width 13335 too
        (source(20000, 20000), "full/,10001/0/default.jpg"),
        (source(20000, 20000), "full/10001,10000/0/default.jpg"),
        (BIG, "full/6000,4500/0/default.jpg"),  # 27,000,000 > maxArea
        (BIG, "full/pct:50/0/default.jpg"),  # the same size
        (BIG, "full/5774,4331/0/default.jpg"),
        (BIG, "full/^20000,/0/default.jpg"),
        (VALIDATOR, "full/^pct:1000.1/0/default.jpg"),
        (VALIDATOR, "full/^9999999999,/0/default.jpg"),  # B07 / C01
        (VALIDATOR, "full/^,9999999999/0/default.jpg"),
        (VALIDATOR, "full/^100000,100000/0/default.jpg"),
        (VALIDATOR, "full/^pct:10000/0/default.jpg"),
        (VALIDATOR, "full/^pct:99999999999999999999/0/default.jpg"),
    ],
)
def test_explicit_sizes_above_the_limits_are_400(info: SourceInfo, path: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        resolve_path(path, info, DEFAULT_LIMITS)
    assert excinfo.value.parameter == "size"


@pytest.mark.parametrize(
    ("info", "limits"),
    [
        (BIG, DEFAULT_LIMITS),
        (ODD, DEFAULT_LIMITS),
        (BIG, Limits(4000, 4000, 10**12)),
        (BIG, Limits(4000, 2000, 10**12)),
        (source(9000, 12000), Limits(4000, 4000, 10**12)),
        (BIG, Limits(10**9, 10**9, 1_000_000)),
        (ODD, Limits(10**9, 10**9, 1_000_000)),
        (EXAMPLE, MAX_WIDTH_200),
        (STRIP, DEFAULT_LIMITS),
        (source(100000, 5000), DEFAULT_LIMITS),
        (source(30000, 30000), DEFAULT_LIMITS),
    ],
)
def test_max_is_clamped_with_implementation_note_4(info: SourceInfo, limits: Limits) -> None:
    expected = note4_max_size(info.width, info.height, limits.max_width, limits.max_height, limits.max_area)
    resolved = resolve_path("full/max/0/default.jpg", info, limits)
    assert (resolved.width, resolved.height) == expected
    assert resolved.is_max
    assert not resolved.upscaled
    assert max_size(info.width, info.height, limits) == expected


def test_max_of_default_settings_on_12000x9000() -> None:
    # scale sqrt(25e6 / 108e6) = 0.48113: 5773.5 -> 5773, 4330.1 -> 4330 (floored, so within maxArea)
    assert out("full/max/0/default.jpg", BIG, DEFAULT_LIMITS) == (5773, 4330)


@pytest.mark.parametrize(
    ("info", "path"),
    [
        (BIG, "full/!20000,20000/0/default.jpg"),
        (BIG, "full/^!20000,20000/0/default.jpg"),
        (BIG, "full/!13000,13000/0/default.jpg"),
        (BIG, "full/^max/0/default.jpg"),
        (BIG, "full/^!99999999999,99999999999/0/default.jpg"),  # B07: clamped, not refused
    ],
)
def test_max_and_confined_are_clamped_to_the_limits(info: SourceInfo, path: str) -> None:
    resolved = resolve_path(path, info, DEFAULT_LIMITS)
    assert (resolved.width, resolved.height) == (5773, 4330)  # exactly what max gives
    assert resolved.is_max


@given(
    st.integers(1, 60000),
    st.integers(1, 60000),
    st.integers(1, 20000),
    st.integers(1, 20000),
    st.integers(1, 400_000_000),
)
@example(8802, 55, 6979, 10**9, 304719)  # note 4's maxWidth step re-derives h = 44 and overshoots maxArea
@example(100000, 1, 10**9, 10**9, 10000)  # a side pinned at one pixel
@example(122, 1, 122, 1, 122)
@settings(max_examples=300)
def test_max_is_always_served_within_the_limits(width: int, height: int, mw: int, mh: int, area: int) -> None:
    """``max`` is required at every compliance level: it is clamped, never refused (section 4.2)."""
    limits = Limits(mw, mh, area)
    w, h = out("full/max/0/default.jpg", source(width, height), limits)
    assert 1 <= w <= min(width, mw)
    assert 1 <= h <= min(height, mh)
    assert w * h <= area
    # close to implementation note 4 (which can overshoot maxArea by rounding a side up)
    nw, nh = note4_max_size(width, height, mw, mh, area)
    if nw * nh <= area and nw <= mw and nh <= mh and min(nw, nh) >= 1:
        assert abs(w - nw) <= 1  # the planner floors exactly where note 4's floats may err
        assert abs(h - nh) <= 1
    else:
        assert abs(w - nw) <= 1 or abs(h - nh) <= 1 or min(w, h) == 1


# -- regions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "region", "box"),
    [
        (BIG, "11000,8000,5000,5000", Box(11000, 8000, 1000, 1000)),  # partly outside: cropped
        (BIG, "0,0,99999999999999999999,1", Box(0, 0, 12000, 1)),  # B07: clamped
        (BIG, "11999,8999,99999,99999", Box(11999, 8999, 1, 1)),
        (BIG, "0,0,12000,9000", Box(0, 0, 12000, 9000)),
        (BIG, "square", Box(1500, 0, 9000, 9000)),
        (source(9000, 12000), "square", Box(0, 1500, 9000, 9000)),
        (ODD, "square", Box(1500, 0, 9001, 9001)),
        (STRIP, "square", Box(0, 4999, 1, 1)),
        (VALIDATOR, "square", Box(0, 0, 1000, 1000)),
        (BIG, "pct:0,0,100,100", Box(0, 0, 12000, 9000)),
        (BIG, "pct:50,50,50,50", Box(6000, 4500, 6000, 4500)),
        (BIG, "pct:50,50,100,100", Box(6000, 4500, 6000, 4500)),  # partly outside: cropped
        (BIG, "pct:0,0,200,200", Box(0, 0, 12000, 9000)),
        (ODD, "pct:50,50,50,50", Box(6001, 4501, 6000, 4500)),  # 6000.5 rounds half up
        (ODD, "pct:0,0,50,50", Box(0, 0, 6001, 4501)),  # so the two halves share the edge
        (VALIDATOR, "pct:99.9,99.9,1,1", Box(999, 999, 1, 1)),
        (VALIDATOR, "pct:33.33,0,33.34,100", Box(333, 0, 334, 1000)),
    ],
)
def test_regions(info: SourceInfo, region: str, box: Box) -> None:
    assert resolve_path(f"{region}/max/0/default.jpg", info).region == box


@pytest.mark.parametrize(
    ("info", "region"),
    [
        (BIG, "12000,0,10,10"),  # starts at the right edge
        (BIG, "0,9000,10,10"),
        (BIG, "99999,99999,10,10"),  # B05
        (BIG, "99999999999999999999,0,1,1"),
        (VALIDATOR, "pct:99.99,0,1,1"),  # 999.9 rounds to the edge: no pixel left
        (VALIDATOR, "pct:0,0,0.01,100"),  # 0.1 px wide
        (VALIDATOR, "pct:0,0,100,0.04"),
        (STRIP, "1,0,1,1"),
    ],
)
def test_regions_outside_or_empty_are_400(info: SourceInfo, region: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        resolve_path(f"{region}/max/0/default.jpg", info)
    assert excinfo.value.parameter == "region"


@given(st.integers(1, 30000), st.lists(st.decimals(0, 100, places=3), min_size=2, max_size=6, unique=True))
def test_adjacent_percent_regions_tile_without_gaps(width: int, cuts: list[Decimal]) -> None:
    """Docstring rule: percent regions round both edges, so regions sharing an edge share it in pixels."""
    info = source(width, 10)
    edges = sorted(cuts)
    boxes = []
    for left, right in itertools.pairwise(edges):
        try:
            boxes.append(resolve_path(f"pct:{left},0,{right - left},100/max/0/default.jpg", info).region)
        except BadRequest:
            boxes.append(None)  # rounded to nothing
    placed = [b for b in boxes if b is not None]
    for a, b in itertools.pairwise(placed):
        assert a.x + a.w == b.x  # no gap, no overlap


# -- sizes smaller than one pixel (B06), huge numbers (B07) ---------------------------------------


@pytest.mark.parametrize(
    ("info", "path"),
    [
        (VALIDATOR, "full/pct:0.0001/0/default.jpg"),
        (VALIDATOR, "full/pct:0.04/0/default.jpg"),  # 0.4 px
        (STRIP, "full/,1/0/default.jpg"),  # width 0.0001
        (STRIP, "full/pct:1/0/default.jpg"),  # width 0.01
        (WIDE_STRIP, "full/1,/0/default.jpg"),
        (WIDE_STRIP, "full/^1,/0/default.jpg"),
        (VALIDATOR, "full/9999999999,/0/default.jpg"),  # B07 without '^': an upscale
    ],
)
def test_tiny_and_huge_sizes_are_400(info: SourceInfo, path: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        resolve_path(path, info, DEFAULT_LIMITS)
    assert excinfo.value.parameter == "size"


# -- rotation (implementation note 5) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rotation", "size", "degrees", "mirror"),
    [
        ("0", (300, 200), 0, False),
        ("90", (200, 300), 90, False),
        ("180", (300, 200), 180, False),
        ("270", (200, 300), 270, False),
        ("360", (300, 200), 0, False),  # 360 is 0
        ("!0", (300, 200), 0, True),
        ("!90", (200, 300), 90, True),
        ("!360", (300, 200), 0, True),
        ("22.5", (354, 300), Decimal("22.5"), False),  # 353.70, 299.59
        ("45", (354, 354), 45, False),  # 353.55
        ("!345", (342, 271), 345, True),  # 341.53, 270.83
        ("0.5", (302, 203), Decimal("0.5"), False),  # 301.72, 202.61
        ("359.5", (302, 203), Decimal("359.5"), False),
    ],
)
def test_rotated_bounding_box(rotation: str, size: tuple[int, int], degrees: Decimal, mirror: bool) -> None:
    resolved = resolve_path(f"full/max/{rotation}/default.png", EXAMPLE)
    assert (resolved.width, resolved.height) == (300, 200)  # the size before rotation
    assert resolved.output_size == size
    assert resolved.degrees == degrees
    assert resolved.mirror is mirror
    assert 0 <= resolved.degrees < 360


def test_degrees_are_kept_exactly() -> None:
    # Decimal's % 360 rounds to 28 digits and would turn this into 360, i.e. 0.
    long = "359.99999999999999999999999999999999"
    assert resolve_path(f"full/max/{long}/default.png", EXAMPLE).degrees == Decimal(long)


@given(st.integers(1, 5000), st.integers(1, 5000), st.decimals(0, 360, places=2))
def test_rotated_size_follows_implementation_note_5(w: int, h: int, degrees: Decimal) -> None:
    rw, rh = rotated_size(w, h, degrees)
    n = math.radians(float(degrees))
    exact_w = abs(w * math.cos(n)) + abs(h * math.sin(n))
    exact_h = abs(h * math.cos(n)) + abs(w * math.sin(n))
    assert abs(rw - exact_w) <= 0.5 + 1e-6 or rw == 1
    assert abs(rh - exact_h) <= 0.5 + 1e-6 or rh == 1
    assert rw >= 1
    assert rh >= 1


def test_max_of_a_square_rotated_45_degrees_is_fitted_to_max_area() -> None:
    square = source(20000, 20000)
    resolved = resolve_path("full/max/45/default.png", square, DEFAULT_LIMITS)
    # 5000x5000 (max unrotated) would turn into 7071x7071, 50 MP: the largest square whose box
    # fits 25 MP is 3535 (4999.2 -> 4999); 3536 gives 5000.7 -> 5001, 25.01 MP.
    assert (resolved.width, resolved.height) == (3535, 3535)
    assert resolved.output_size == (4999, 4999)
    assert rotated_size(3536, 3536, Decimal(45)) == (5001, 5001)
    assert not resolved.is_max  # canonically 3535,3535: asking that gives the same image


# -- quality -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "quality", "render"),
    [
        (VALIDATOR, "default", Quality.COLOR),
        (GRAY, "default", Quality.GRAY),
        (VALIDATOR, "color", Quality.COLOR),
        (GRAY, "color", Quality.COLOR),  # section 4.4: color MUST work on a gray image
        (VALIDATOR, "gray", Quality.GRAY),
        (GRAY, "gray", Quality.GRAY),
        (VALIDATOR, "bitonal", Quality.BITONAL),
        (GRAY, "bitonal", Quality.BITONAL),
    ],
)
def test_quality_resolution(info: SourceInfo, quality: str, render: Quality) -> None:
    resolved = resolve_path(f"full/max/0/{quality}.png", info)
    assert resolved.quality is Quality(quality)  # "default" stays default: it is part of the URL
    assert resolved.render_quality is render
    assert resolved.format is Format.PNG
    p = plan(resolved, info)
    assert p.quality is render
    assert p.source_colour is info.colour


# -- level choice and crop box -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "level_index", "crop"),
    [
        ("full/max/0/default.jpg", 0, Box(0, 0, 12000, 9000)),
        ("full/pct:50/0/default.jpg", 1, Box(0, 0, 6000, 4500)),
        ("full/pct:25/0/default.jpg", 2, Box(0, 0, 3000, 2250)),
        ("full/3000,/0/default.jpg", 2, Box(0, 0, 3000, 2250)),
        ("full/3001,/0/default.jpg", 2, Box(0, 0, 3000, 2250)),  # one pixel short still counts
        ("full/3002,/0/default.jpg", 1, Box(0, 0, 6000, 4500)),
        ("full/2999,/0/default.jpg", 2, Box(0, 0, 3000, 2250)),
        ("full/187,/0/default.jpg", 6, Box(0, 0, 187, 140)),
        ("full/100,/0/default.jpg", 6, Box(0, 0, 187, 140)),
        ("full/188,/0/default.jpg", 6, Box(0, 0, 187, 140)),  # 187.5 exactly: ceil is what viewers send
        ("full/189,/0/default.jpg", 5, Box(0, 0, 375, 281)),
        ("full/1000,100/0/default.jpg", 3, Box(0, 0, 1500, 1125)),  # distorted: the wider need decides
        ("full/100,1000/0/default.jpg", 3, Box(0, 0, 1500, 1125)),
        ("6000,4500,6000,4500/max/0/default.jpg", 0, Box(6000, 4500, 6000, 4500)),
        ("6000,4500,6000,4500/750,/0/default.jpg", 3, Box(750, 562, 750, 563)),
        ("1024,1024,512,512/256,256/0/default.jpg", 1, Box(512, 512, 256, 256)),
        ("1024,1024,512,512/^1024,1024/0/default.jpg", 0, Box(1024, 1024, 512, 512)),
    ],
)
def test_plan_level_and_crop(path: str, level_index: int, crop: Box) -> None:
    resolved = resolve_path(path, BIG)
    p = plan(resolved, BIG)
    assert p.level == BIG.levels[level_index]
    assert p.crop == crop
    assert_plan_sane(p, BIG, resolved)


@pytest.mark.parametrize(
    ("full", "level", "scale"),
    [
        (12000, 12000, 1.0),
        (12000, 6000, 2.0),
        (12000, 187, 64.0),  # floor-rounded: 187.5
        (12000, 188, 64.0),  # ceil-rounded
        (8007, 1000, 8.0),  # 1000.875: the level holds 8000 columns
        (8007, 1001, 8.0),
        (9000, 562, 16.0),
        (1, 1, 1.0),
        (12000, 189, 12000 / 189),  # not a halving of the image: its own ratio
        (12000, 3333, 12000 / 3333),
        (1000, 600, 1000 / 600),  # between levels
    ],
)
def test_level_scale_of_halved_levels_is_the_power_of_two(full: int, level: int, scale: float) -> None:
    assert level_scale(full, level) == scale


def test_tiles_of_a_floor_rounded_level_stay_on_its_grid() -> None:
    """8007 / 8 = 1000.875 -> 1000: the level's tile at 768 is the image's 6144, up to its end.

    With 8007 / 1000 full pixels per level pixel the crops drifted off the stored grid towards
    the far edge (6144 / 8.007 = 767.3 -> 767), and those tiles were rendered.
    """
    info = source(8007, 5003, pyramid(8007, 5003, count=6))
    for path, crop in (
        ("6144,0,1863,2048/233,256/0/default.jpg", Box(768, 0, 232, 256)),  # 233 = ceil(232.875)
        ("4096,4096,2048,907/256,114/0/default.jpg", Box(512, 512, 256, 113)),
        ("0,0,2048,2048/256,256/0/default.jpg", Box(0, 0, 256, 256)),
    ):
        resolved = resolve_path(path, info)
        p = plan(resolved, info)
        assert p.level == info.levels[3], path
        assert p.crop == crop, path
        assert_plan_sane(p, info, resolved)


def test_a_region_in_the_strip_a_floor_rounded_level_dropped_takes_its_last_pixel() -> None:
    """82 rows at 1/32 are 2 level rows holding rows 0-63; row 65 is in neither (found by Hypothesis)."""
    levels = tuple(
        Level(w, h, page=i) for i, (w, h) in enumerate([(50, 82), (25, 41), (12, 20), (6, 10), (3, 5), (1, 2)])
    )
    info = source(50, 82, levels)
    tiny = Limits(max_width=1, max_height=1, max_area=1)
    resolved = resolve_path("pct:0,79,1,1/max/0/default.jpg", info, tiny)
    p = plan(resolved, info)
    assert (p.level, p.crop) == (levels[-1], Box(0, 1, 1, 1))
    assert_plan_sane(p, info, resolved)


def test_a_region_at_the_edge_of_a_ceil_rounded_level_takes_its_last_pixel() -> None:
    """JPEG 2000 levels round up (1601 -> 801 -> 401): level pixel 800 holds image column 1600
    alone. The edge tile 1024..1601 at 1/2 is 289 level pixels, not 288 stretched to 289."""
    levels = tuple(Level(-(-1601 >> r), -(-1201 >> r), page=r) for r in range(4))
    info = source(1601, 1201, levels)
    for path, crop in (
        ("1024,1024,577,177/289,/0/default.png", Box(512, 512, 289, 89)),
        ("1024,0,577,1024/145,256/0/default.png", Box(256, 0, 145, 256)),
        ("0,0,1024,1024/256,/0/default.png", Box(0, 0, 256, 256)),
    ):
        resolved = resolve_path(path, info)
        p = plan(resolved, info)
        assert p.crop == crop, path
        assert (p.width, p.height) == (crop.w, crop.h), path  # an exact crop: nothing stretched
        assert_plan_sane(p, info, resolved)


@pytest.mark.parametrize(("x", "crop_x"), [(0, 0), (5, 0), (7, 0), (8, 1), (13, 1), (15, 1)])
def test_a_region_narrower_than_a_level_pixel_crops_the_pixel_holding_it(x: int, crop_x: int) -> None:
    info = source(16, 8, pyramid(16, 8, count=4))  # down to 2x1: one level pixel is 8x8
    resolved = resolve_path(f"{x},0,1,1/1,1/0/default.jpg", info)
    p = plan(resolved, info)
    assert p.level == Level(2, 1, page=3)
    assert p.crop == Box(crop_x, 0, 1, 1)


def test_plan_carries_the_rest_of_the_request() -> None:
    resolved = resolve_path("0,0,1000,1000/500,/!90/gray.webp", BIG)
    p = plan(resolved, BIG)
    assert (p.width, p.height, p.mirror, p.degrees) == (500, 500, True, 90)
    assert p.quality is Quality.GRAY
    assert p.format is Format.WEBP
    assert p.level == BIG.levels[1]


def test_single_level_sources_plan_from_level_0() -> None:
    for info in (STRIP, WIDE_STRIP, EXAMPLE):
        resolved = resolve_path("full/pct:50/0/default.jpg" if info is STRIP else "full/max/0/default.jpg", info)
        p = plan(resolved, info)
        assert p.level == info.levels[0]
        assert_plan_sane(p, info, resolved)


def test_choose_level_prefers_the_smallest_sufficient_level() -> None:
    box = Box(0, 0, 12000, 9000)
    assert choose_level(BIG, box, 12000, 9000) == BIG.levels[0]
    assert choose_level(BIG, box, 6001, 4501) == BIG.levels[1]
    assert choose_level(BIG, box, 6002, 4501) == BIG.levels[0]
    assert choose_level(BIG, box, 1, 1) == BIG.levels[-1]
    # levels listed in any order: still the smallest sufficient one
    shuffled = source(12000, 9000, (BIG.levels[0], BIG.levels[3], BIG.levels[1], BIG.levels[2]))
    assert choose_level(shuffled, box, 1400, 1000) == BIG.levels[3]


_PYRAMIDS = {"12000x9000": BIG, "12001x9001": ODD}


@pytest.mark.parametrize("tile", [256, 512, 1024])
@pytest.mark.parametrize("name", list(_PYRAMIDS))
def test_every_deep_zoom_tile_with_ws_hs(name: str, tile: int) -> None:
    """OpenSeadragon's 3.0 requests: ``xr,yr,wr,hr/ws,hs/0/default.jpg`` (implementation note 3)."""
    info = _PYRAMIDS[name]
    failures = []
    count = 0
    for index, s in enumerate(info.scale_factors()):
        level = info.levels[index]
        for xr, yr, wr, hr, ws, hs in note3_tiles(info.width, info.height, tile, tile, s):
            count += 1
            resolved = resolve_path(f"{xr},{yr},{wr},{hr}/{ws},{hs}/0/default.jpg", info, DEFAULT_LIMITS)
            p = plan(resolved, info)
            assert (resolved.width, resolved.height) == (ws, hs)
            assert not resolved.upscaled
            assert_plan_sane(p, info, resolved)
            if p.level != level or abs(p.crop.w - ws) > 1 or abs(p.crop.h - hs) > 1:
                failures.append((s, (xr, yr, wr, hr), (ws, hs), (p.level.width, p.level.height), p.crop))
    assert count > 1000 // (tile // 256) ** 2
    assert not failures, failures[:5]


@pytest.mark.parametrize("tile", [256, 512, 1024])
@pytest.mark.parametrize("name", list(_PYRAMIDS))
def test_every_deep_zoom_tile_with_ws_comma(name: str, tile: int) -> None:
    """OpenSeadragon's 2.x requests: ``xr,yr,wr,hr/ws,/0/default.jpg``.

    The height is then derived from the aspect ratio (rounded half up), and on a pyramid of odd
    size the ceil in ``ws`` can push it more than one pixel past the matching level's extent of
    the region (e.g. 12001x9001, s=32, tile 8192,0,3809,8192 -> 120x258 against 119.0x255.7).
    Such a tile is served from the next larger level, by the one-pixel rule of ``choose_level``.
    """
    info = _PYRAMIDS[name]
    failures = []
    finer = 0
    for index, s in enumerate(info.scale_factors()):
        for xr, yr, wr, hr, ws, hs in note3_tiles(info.width, info.height, tile, tile, s):
            resolved = resolve_path(f"{xr},{yr},{wr},{hr}/{ws},/0/default.jpg", info, DEFAULT_LIMITS)
            p = plan(resolved, info)
            assert_plan_sane(p, info, resolved)
            derived = half_up(Fraction(hr * ws, wr))
            assert (resolved.width, resolved.height) == (ws, derived)
            assert abs(derived - hs) <= 2
            level = info.levels[index]
            level_w, level_h = level_extent(info, level, resolved.region)
            expected = level
            if level_w + 1 < ws or level_h + 1 < derived:
                expected = info.levels[index - 1]
                finer += 1
            if p.level != expected:
                failures.append((s, (xr, yr, wr, hr), ws, (p.level.width, p.level.height)))
            elif expected is level and (abs(p.crop.w - ws) > 1 or abs(p.crop.h - hs) > 1):
                failures.append((s, (xr, yr, wr, hr), ws, p.crop))
    assert not failures, failures[:5]
    if info is BIG:
        assert finer == 0  # an even pyramid: every tile comes from its own level
    else:
        assert finer <= 40  # only right-edge tiles of the odd pyramid


# -- properties ----------------------------------------------------------------------------------


@st.composite
def pyramids(draw: st.DrawFn) -> SourceInfo:
    width = draw(st.integers(1, 40000))
    height = draw(st.integers(1, 40000))
    count = draw(st.integers(1, 9))
    levels = [Level(width, height)]
    for page in range(1, count):
        w, h = levels[-1].width // 2, levels[-1].height // 2
        if w < 1 or h < 1:
            break
        levels.append(Level(w, h, page=page))
    colour = draw(st.sampled_from(Colour))
    return source(width, height, tuple(levels), colour)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    return Limits(
        draw(st.integers(1, 20000)),
        draw(st.integers(1, 20000)),
        draw(st.integers(1, 400_000_000)),
        draw(st.booleans()),
        draw(st.booleans()),
    )


def _num(draw: st.DrawFn, hi: int) -> str:
    return str(draw(st.integers(0, hi)))


def _pct(draw: st.DrawFn) -> str:
    return format(draw(st.decimals(0, 150, places=draw(st.integers(0, 4)))), "f")


@st.composite
def requests(draw: st.DrawFn, info: SourceInfo) -> ImageRequest:
    big = 2 * max(info.width, info.height)
    region = draw(st.sampled_from(["full", "square", "px", "pct"]))
    if region == "px":
        region = ",".join((_num(draw, big), _num(draw, big), str(draw(st.integers(1, big))), _num(draw, big)))
    elif region == "pct":
        region = "pct:" + ",".join(_pct(draw) for _ in range(4))
    prefix = draw(st.sampled_from(["", "^"]))
    form = draw(st.sampled_from(["max", "w,", ",h", "w,h", "!w,h", "pct"]))
    w, h = _num(draw, big), _num(draw, big)
    size = (
        prefix
        + {
            "max": "max",
            "w,": f"{w},",
            ",h": f",{h}",
            "w,h": f"{w},{h}",
            "!w,h": f"!{w},{h}",
            "pct": f"pct:{_pct(draw)}",
        }[form]
    )
    rotation = draw(st.sampled_from(["", "!"])) + draw(
        st.sampled_from(["0", "90", "180", "270", "22.5", "360", "45", "14", "359.9"])
    )
    quality = draw(st.sampled_from(Quality)).value
    version = draw(st.sampled_from([V2, V3])) if not prefix else V3
    return parse_image_request(region, size, rotation, f"{quality}.jpg", version=version)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_accepted_requests_respect_the_limits_and_plan_inside_the_level(data: st.DataObject) -> None:
    info = data.draw(pyramids())
    lim = data.draw(limits())
    try:
        request = data.draw(requests(info))
    except BadRequest:
        return  # a syntax error (e.g. a zero size): the parser's business
    try:
        resolved = resolve(request, info, lim)
    except (BadRequest, NotImplementedFeature):  # anything else (including other IIIFErrors) is a bug
        return
    w, h = resolved.width, resolved.height
    assert 1 <= w <= lim.max_width
    assert 1 <= h <= lim.max_height
    assert w * h <= lim.max_area
    out_w, out_h = resolved.output_size  # the image returned, after rotation, is within them too
    assert out_w <= lim.max_width
    assert out_h <= lim.max_height
    assert out_w * out_h <= lim.max_area
    region = resolved.region
    assert 0 <= region.x < info.width
    assert 0 <= region.y < info.height
    assert region.w >= 1
    assert region.h >= 1
    assert region.x + region.w <= info.width
    assert region.y + region.h <= info.height
    if resolved.upscaled:
        assert lim.allow_upscaling
        assert request.size.upscale or request.version is V2
    p = plan(resolved, info)
    assert_plan_sane(p, info, resolved)
    # the chosen level has the output's resolution, less at most one pixel ...
    level_w, level_h = level_extent(info, p.level, region)
    if p.level is not info.levels[0]:
        assert level_w + 1 >= w
        assert level_h + 1 >= h
    # ... and no smaller level has it
    for level in info.levels:
        if level.width < p.level.width:
            lw, lh = level_extent(info, level, region)
            assert lw + 1 < w or lh + 1 < h


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_max_never_fails_on_a_valid_region(data: st.DataObject) -> None:
    info = data.draw(pyramids())
    lim = data.draw(limits())
    region = data.draw(st.sampled_from(["full", "square"]))
    for size in ("max", "^max"):
        for version in (V2, V3) if size == "max" else (V3,):
            request = parse_image_request(region, size, "0", "default.jpg", version=version)
            try:
                resolved = resolve(request, info, lim)
            except NotImplementedFeature:
                assert size == "^max"
                assert lim.upscale_max_to_limits
                assert not lim.allow_upscaling
                continue
            assert resolved.is_max
            assert resolved.width * resolved.height <= lim.max_area


def test_full_size_is_clamped_like_max_in_v2() -> None:
    assert out("full/full/0/default.jpg", BIG, DEFAULT_LIMITS, V2) == (5773, 4330)
    assert out("full/full/0/default.jpg", EXAMPLE, version=V2) == (300, 200)


def test_resolved_knows_the_full_region() -> None:
    request = parse_image_request("full", "max", "0", "default.jpg")
    resolved = resolve(request, BIG, DEFAULT_LIMITS)
    assert isinstance(resolved, Resolved)
    assert resolved.image_width == 12000
    assert resolved.image_height == 9000
    assert resolved.is_full_region
    assert not resolve_path("0,0,11999,9000/max/0/default.jpg", BIG).is_full_region


@pytest.mark.parametrize("quarters", range(50))
def test_round_half_up(quarters: int) -> None:
    assert round_half_up(Decimal(quarters) / 4) == half_up(Fraction(quarters, 4))


# -- limits count after rotation (attack cases C04, C05) -----------------------------------------

PANORAMA = source(14000, 3500)  # the "large-panorama" shape, one level


@pytest.mark.parametrize(
    ("path", "box"),
    [
        ("0,0,14000,3500/10000,/14/default.jpg", (10308, 4845)),  # 50 MP under maxArea 25 MP
        ("0,0,14000,3499/10000,/44/default.webp", (8929, 8744)),  # 78 MP
        ("full/10000,/45/default.jpg", (8839, 8839)),
        ("full/pct:70/30/default.jpg", (9712, 7022)),
        ("full/10000,2500/!30/default.png", (9910, 7165)),
    ],
)
def test_explicit_sizes_whose_rotated_box_is_over_the_limits_are_400(path: str, box: tuple[int, int]) -> None:
    region, size, _, quality = path.split("/")
    unrotated = resolve_path(f"{region}/{size}/0/{quality}", PANORAMA, DEFAULT_LIMITS)  # within the limits
    assert rotated_size(unrotated.width, unrotated.height, resolve_path(path, PANORAMA).degrees) == box
    with pytest.raises(BadRequest, match="larger than this server allows") as caught:
        resolve_path(path, PANORAMA, DEFAULT_LIMITS)
    assert caught.value.parameter == "rotation"
    assert caught.value.status == 400


# Limits that tell width from height, so that a swap shows.
NARROW = Limits(max_width=8000, max_height=4000, max_area=10**9)


@pytest.mark.parametrize(
    ("rotation", "accepted"),
    [("0", True), ("180", True), ("!0", True), ("!180", True), ("90", False), ("270", False), ("!90", False)],
)
def test_quarter_turns_swap_the_sides_before_the_limits_are_checked(rotation: str, accepted: bool) -> None:
    wide = source(8000, 4000)
    if accepted:
        resolved = resolve_path(f"full/8000,4000/{rotation}/default.jpg", wide, NARROW)
        assert resolved.output_size == (8000, 4000)
    else:
        with pytest.raises(BadRequest, match="rotated by"):
            resolve_path(f"full/8000,4000/{rotation}/default.jpg", wide, NARROW)
    # The size asked for counts as well as the image returned: 4000x8000 is too tall either way.
    with pytest.raises(BadRequest, match="larger than this server allows"):
        resolve_path(f"full/4000,8000/{rotation}/default.jpg", source(4000, 8000), NARROW)


@pytest.mark.parametrize(
    ("rotation", "size", "output"),
    [
        ("0", (8000, 4000), (8000, 4000)),
        ("180", (8000, 4000), (8000, 4000)),
        ("90", (4000, 2000), (2000, 4000)),
        ("!270", (4000, 2000), (2000, 4000)),
    ],
)
def test_max_of_quarter_turns_is_fitted_to_the_swapped_limits(
    rotation: str, size: tuple[int, int], output: tuple[int, int]
) -> None:
    wide = source(16000, 8000)
    for spelling in ("max", "!20000,20000"):
        resolved = resolve_path(f"full/{spelling}/{rotation}/default.jpg", wide, NARROW)
        assert (resolved.width, resolved.height) == size
        assert resolved.output_size == output


def test_max_of_the_panorama_at_any_angle_stays_within_the_limits() -> None:
    for degrees in ("14", "44", "45", "22.5", "90", "135", "333.3", "359.99"):
        for mirror in ("", "!"):
            resolved = resolve_path(f"full/max/{mirror}{degrees}/default.jpg", PANORAMA, DEFAULT_LIMITS)
            w, h = resolved.output_size
            assert w <= 10000
            assert h <= 10000
            assert w * h <= 25_000_000
            # and it is the largest such size: one more pixel on the long side does not fit
            bigger = rotated_size(
                resolved.width + 1, round_half_up(Decimal(3500 * (resolved.width + 1)) / 14000), resolved.degrees
            )
            assert resolved.width == 10000 or bigger[0] * bigger[1] > 25_000_000 or max(bigger) > 10000


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 30000),
    st.integers(1, 30000),
    st.decimals(0, 359, places=1),
    st.integers(1, 12000),
    st.integers(1, 12000),
    st.integers(1, 60_000_000),
)
def test_fitted_max_is_the_largest_within_the_limits_after_rotation(
    width: int, height: int, degrees: Decimal, mw: int, mh: int, area: int
) -> None:
    limits = Limits(mw, mh, area)
    info = source(width, height)
    refused: BadRequest | None = None
    try:
        resolved = resolve_path(f"full/max/{degrees}/default.png", info, limits)
    except BadRequest as exc:
        refused = exc
    if refused is not None:
        # Only when not even a 1 px wide image fits once rotated (a long thin box at an angle).
        assert refused.parameter == "rotation"
        return
    w, h = resolved.output_size
    assert w <= mw
    assert h <= mh
    assert w * h <= area
    unrotated_max = max_size(width, height, limits)
    assert resolved.width <= unrotated_max[0]
    assert resolved.height <= unrotated_max[1]
    assert resolved.is_max is (rotated_size(*max_size(width, height, limits), degrees) == (w, h))


# -- predicted size == rendered size -------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation",
    ["0", "90", "180", "270", "!0", "!90", "!270", "14", "!44", "45", "22.5", "0.5", "359.5", "123.4", "!300", "89.99"],
)
def test_the_rendered_image_has_the_planned_size(rotation: str, tmp_path: Path) -> None:
    """The planner checks the limits against ``output_size``; the renderer must produce exactly it."""
    import pyvips

    from iiifserver.image.render import EncodeOptions, render

    path = tmp_path / "odd.tif"
    pyvips.Image.black(97, 61, bands=3).tiffsave(str(path), tile=True, tile_width=64, tile_height=64)
    info = source(97, 61)
    for size in ("max", "50,", "33,77"):
        resolved = resolve_path(f"full/{size}/{rotation}/default.png", info, version=V2)
        body = render(path, SourceFormat.TIFF, plan(resolved, info), EncodeOptions())
        image = pyvips.Image.new_from_buffer(body, "")
        assert (image.width, image.height) == resolved.output_size, (size, rotation)


# -- decode cost and lane choice -----------------------------------------------------------------


def untiled(width: int, height: int, fmt: SourceFormat = SourceFormat.TIFF) -> SourceInfo:
    return replace(source(width, height), tile_width=0, tile_height=0, format=fmt)


STRIP_40MP = untiled(7300, 5480)  # a single-strip scan under plain_max_pixels (40 MP)


@pytest.mark.parametrize(
    ("info", "path", "decode", "heavy"),
    [
        # a stored tile of a pyramid: that tile only
        (BIG, "0,0,256,256/256,/0/default.jpg", 256 * 256, False),
        (BIG, "1024,1024,1024,1024/256,/0/default.jpg", 256 * 256, False),  # at level 2
        # unaligned: the four tiles it touches
        (BIG, "100,100,256,256/256,/0/default.jpg", 512 * 512, False),
        # an edge tile: the level ends before the tile grid does
        (BIG, "11776,8960,224,40/224,/0/default.jpg", 224 * 40, False),
        # the whole image small: a small level, whole
        (BIG, "full/187,/0/default.jpg", 187 * 140, False),
        # a big region at full resolution: many tiles, heavy
        (BIG, "0,0,4096,4096/1000,/0/default.jpg", 1024 * 1024, False),  # at level 2
        (source(12000, 9000), "0,0,4096,4096/1000,/0/default.jpg", 4096 * 4096, True),  # no level to read
        (source(12000, 9000), "0,0,2048,2048/1000,/0/default.jpg", 2048 * 2048, False),  # 4 MP exactly
        # a large output, however cheap to decode (an upscale: the output is over 4 MP)
        (BIG, "full/1200,/0/default.jpg", 1500 * 1125, False),
        (BIG, "0,0,1000,1000/^2100,/0/default.jpg", 1024 * 1024, True),
        # a free rotation: heavy whatever its size
        (BIG, "0,0,256,256/256,/22.5/default.jpg", 256 * 256, True),
        (BIG, "0,0,256,256/256,/!90/default.jpg", 256 * 256, False),
        # untiled sources are decoded whole: a 256 px tile of a 40 MP strip TIFF is heavy ...
        (STRIP_40MP, "0,0,256,256/256,/0/default.jpg", 7300 * 5480, True),
        (untiled(6000, 4000, SourceFormat.JPEG), "0,0,512,512/256,/0/default.jpg", 24_000_000, True),
        (untiled(6000, 4000, SourceFormat.PNG), "full/100,/0/default.jpg", 24_000_000, True),
        # ... a small one is not
        (untiled(1600, 1200), "0,0,256,256/256,/0/default.jpg", 1600 * 1200, False),
    ],
)
def test_decode_cost_and_heavy_plans(info: SourceInfo, path: str, decode: int, heavy: bool) -> None:
    p = plan(resolve_path(path, info), info)
    assert p.decode_pixels == decode
    assert p.heavy is heavy


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_cost_covers_the_crop(data: st.DataObject) -> None:
    info = data.draw(pyramids())
    try:
        request = data.draw(requests(info))
        resolved = resolve(request, info, UNLIMITED)
    except (BadRequest, NotImplementedFeature):
        return
    p = plan(resolved, info)
    assert p.crop.w * p.crop.h <= p.decode_pixels <= p.level.width * p.level.height
