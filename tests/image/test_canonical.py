"""Canonical request paths (Image API 3.0 section 4.8, 2.1 section 4.7) and equivalent spellings (B12)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from iiifserver.config import Limits
from iiifserver.errors import BadRequest, NotImplementedFeature
from iiifserver.image.canonical import canonical_path
from iiifserver.image.planner import Resolved, resolve
from iiifserver.image.request import ApiVersion, parse_image_request
from iiifserver.image.source_info import Colour, Level, SourceFormat, SourceInfo

V2, V3 = ApiVersion.V2, ApiVersion.V3


def source(width: int, height: int, colour: Colour = Colour.RGB) -> SourceInfo:
    levels = [Level(width, height)]
    while levels[-1].width >= 512 and levels[-1].height >= 512:
        levels.append(Level(levels[-1].width // 2, levels[-1].height // 2, page=len(levels)))
    return SourceInfo(width, height, tuple(levels), 256, 256, colour, 3, False, False, SourceFormat.TIFF)


EXAMPLE = source(300, 200)  # the spec's example image
SQUARE = source(1000, 1000)
GRAY = source(1000, 1000, Colour.GRAY)
BIG = source(12000, 9000)
UNLIMITED = Limits(10**9, 10**9, 10**18)
MAX_WIDTH_200 = Limits(200, 200, 10**12)
TO_LIMITS = Limits(360, 360, 10**12, upscale_max_to_limits=True)
DEFAULT_LIMITS = Limits(10000, 10000, 25_000_000)


def resolve_path(path: str, info: SourceInfo, limits: Limits, version: ApiVersion) -> Resolved:
    region, size, rotation, quality_format = path.split("/")
    return resolve(parse_image_request(region, size, rotation, quality_format, version=version), info, limits)


def canonical(path: str, info: SourceInfo = EXAMPLE, limits: Limits = UNLIMITED, version: ApiVersion = V3) -> str:
    return canonical_path(resolve_path(path, info, limits, version), version)


# -- 3.0 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "info", "limits", "expected"),
    [
        # region: full if the full image is requested, otherwise x,y,w,h
        ("full/max/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("0,0,300,200/max/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("pct:0,0,100,100/max/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("0,0,999,999/max/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),  # cropped to full
        ("square/max/0/default.jpg", EXAMPLE, UNLIMITED, "50,0,200,200/max/0/default.jpg"),
        ("square/max/0/default.jpg", SQUARE, UNLIMITED, "full/max/0/default.jpg"),
        ("125,15,120,140/max/0/default.jpg", EXAMPLE, UNLIMITED, "125,15,120,140/max/0/default.jpg"),
        ("pct:41.6,7.5,40,70/max/0/default.jpg", EXAMPLE, UNLIMITED, "125,15,120,140/max/0/default.jpg"),
        ("125,15,200,200/max/0/default.jpg", EXAMPLE, UNLIMITED, "125,15,175,185/max/0/default.jpg"),
        ("pct:41.6,7.5,66.6,100/max/0/default.jpg", EXAMPLE, UNLIMITED, "125,15,175,185/max/0/default.jpg"),
        # size: max, ^max, w,h, ^w,h
        ("full/150,/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,100/0/default.jpg"),
        ("full/,150/0/default.jpg", EXAMPLE, UNLIMITED, "full/225,150/0/default.jpg"),
        ("full/pct:50/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,100/0/default.jpg"),
        ("full/225,100/0/default.jpg", EXAMPLE, UNLIMITED, "full/225,100/0/default.jpg"),
        ("full/!225,100/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,100/0/default.jpg"),
        ("full/300,/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("full/300,200/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("full/!300,300/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("full/pct:100/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("full/^360,/0/default.jpg", EXAMPLE, UNLIMITED, "full/^360,240/0/default.jpg"),
        ("full/^,240/0/default.jpg", EXAMPLE, UNLIMITED, "full/^360,240/0/default.jpg"),
        ("full/^pct:120/0/default.jpg", EXAMPLE, UNLIMITED, "full/^360,240/0/default.jpg"),
        ("full/^360,360/0/default.jpg", EXAMPLE, UNLIMITED, "full/^360,360/0/default.jpg"),
        ("full/^!360,360/0/default.jpg", EXAMPLE, UNLIMITED, "full/^360,240/0/default.jpg"),
        ("full/^360,100/0/default.jpg", EXAMPLE, UNLIMITED, "full/^360,100/0/default.jpg"),  # up in one side only
        ("full/^300,200/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),  # no upscaling: no ^
        ("full/^150,/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,100/0/default.jpg"),
        ("full/^max/0/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),  # ^max = max by default
        ("full/^max/0/default.jpg", EXAMPLE, TO_LIMITS, "full/^max/0/default.jpg"),  # 360x240
        ("full/^360,240/0/default.jpg", EXAMPLE, TO_LIMITS, "full/^max/0/default.jpg"),
        ("full/^360,/0/default.jpg", EXAMPLE, TO_LIMITS, "full/^max/0/default.jpg"),
        ("full/^359,/0/default.jpg", EXAMPLE, TO_LIMITS, "full/^359,239/0/default.jpg"),
        ("full/max/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/max/0/default.jpg"),  # 200x133
        ("full/200,/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/max/0/default.jpg"),
        ("full/200,133/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/max/0/default.jpg"),
        ("full/!1000,1000/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/max/0/default.jpg"),
        ("full/199,/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/199,133/0/default.jpg"),
        ("full/max/0/default.jpg", BIG, DEFAULT_LIMITS, "full/max/0/default.jpg"),  # 5773x4330
        ("full/5773,4330/0/default.jpg", BIG, DEFAULT_LIMITS, "full/max/0/default.jpg"),
        ("full/5000,/0/default.jpg", BIG, DEFAULT_LIMITS, "full/5000,3750/0/default.jpg"),
        # rotation: ! if mirrored, then an integer if possible, else section 4.7's float
        ("full/max/90.0/default.jpg", EXAMPLE, UNLIMITED, "full/max/90/default.jpg"),
        ("full/max/!0.0/default.jpg", EXAMPLE, UNLIMITED, "full/max/!0/default.jpg"),
        ("full/max/!180/default.jpg", EXAMPLE, UNLIMITED, "full/max/!180/default.jpg"),
        ("full/max/22.5/default.png", EXAMPLE, UNLIMITED, "full/max/22.5/default.png"),
        ("full/max/22.50/default.png", EXAMPLE, UNLIMITED, "full/max/22.5/default.png"),
        ("full/max/.5/default.png", EXAMPLE, UNLIMITED, "full/max/0.5/default.png"),
        ("full/max/360/default.jpg", EXAMPLE, UNLIMITED, "full/max/0/default.jpg"),
        ("full/max/!360/default.jpg", EXAMPLE, UNLIMITED, "full/max/!0/default.jpg"),
        ("full/max/0090/default.jpg", EXAMPLE, UNLIMITED, "full/max/90/default.jpg"),
        # more digits than the decimal context's 28: kept exactly, not rounded up to 360 (= 0)
        (
            "full/max/!359.99999999999999999999999999999990/default.png",
            EXAMPLE,
            UNLIMITED,
            "full/max/!359.9999999999999999999999999999999/default.png",
        ),
        (
            "full/max/0.00000000000000000000000000000000001/default.png",
            EXAMPLE,
            UNLIMITED,
            "full/max/0.00000000000000000000000000000000001/default.png",
        ),
        # quality: default stays default; format always explicit
        ("full/max/0/color.png", EXAMPLE, UNLIMITED, "full/max/0/color.png"),
        ("full/max/0/gray.webp", EXAMPLE, UNLIMITED, "full/max/0/gray.webp"),
        ("full/max/0/bitonal.tif", EXAMPLE, UNLIMITED, "full/max/0/bitonal.tif"),
        ("full/max/0/default.gif", GRAY, UNLIMITED, "full/max/0/default.gif"),  # not "gray"
        ("full/max/0/gray.jpg", GRAY, UNLIMITED, "full/max/0/gray.jpg"),
        # section 4.6's example
        ("125,15,120,140/90,/!345/gray.jpg", EXAMPLE, UNLIMITED, "125,15,120,140/90,105/!345/gray.jpg"),
    ],
)
def test_canonical_30(path: str, info: SourceInfo, limits: Limits, expected: str) -> None:
    assert canonical(path, info, limits) == expected
    assert canonical(expected, info, limits) == expected  # a fixed point


# -- 2.1 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "info", "limits", "expected"),
    [
        ("full/full/0/default.jpg", EXAMPLE, UNLIMITED, "full/full/0/default.jpg"),
        ("full/max/0/default.jpg", EXAMPLE, UNLIMITED, "full/full/0/default.jpg"),  # max is full here
        ("full/300,/0/default.jpg", EXAMPLE, UNLIMITED, "full/full/0/default.jpg"),
        ("full/max/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/200,/0/default.jpg"),  # "w," for max < full
        ("full/full/0/default.jpg", EXAMPLE, MAX_WIDTH_200, "full/200,/0/default.jpg"),
        ("full/150,/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,/0/default.jpg"),
        ("full/,150/0/default.jpg", EXAMPLE, UNLIMITED, "full/225,/0/default.jpg"),
        ("full/pct:50/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,/0/default.jpg"),
        ("full/!225,100/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,/0/default.jpg"),
        ("full/150,100/0/default.jpg", EXAMPLE, UNLIMITED, "full/150,/0/default.jpg"),  # keeps the ratio
        ("full/225,100/0/default.jpg", EXAMPLE, UNLIMITED, "full/225,100/0/default.jpg"),  # distorts: w,h
        ("full/600,/0/default.jpg", EXAMPLE, UNLIMITED, "full/600,/0/default.jpg"),  # above full: allowed
        ("full/pct:200/0/default.jpg", EXAMPLE, UNLIMITED, "full/600,/0/default.jpg"),
        ("square/full/0/default.jpg", SQUARE, UNLIMITED, "full/full/0/default.jpg"),  # 2.1's square note
        ("square/full/0/default.jpg", EXAMPLE, UNLIMITED, "50,0,200,200/full/0/default.jpg"),
        ("pct:41.6,7.5,40,70/full/0/default.jpg", EXAMPLE, UNLIMITED, "125,15,120,140/full/0/default.jpg"),
        ("full/full/!0.0/default.jpg", EXAMPLE, UNLIMITED, "full/full/!0/default.jpg"),
        ("full/full/22.50/default.png", EXAMPLE, UNLIMITED, "full/full/22.5/default.png"),
        ("full/full/360/gray.jpg", EXAMPLE, UNLIMITED, "full/full/0/gray.jpg"),
        ("125,15,120,140/90,/!345/gray.jpg", EXAMPLE, UNLIMITED, "125,15,120,140/90,/!345/gray.jpg"),
    ],
)
def test_canonical_21(path: str, info: SourceInfo, limits: Limits, expected: str) -> None:
    assert canonical(path, info, limits, V2) == expected
    assert canonical(expected, info, limits, V2) == expected


# -- B12: equivalent spellings, one canonical path ------------------------------------------------

EQUIVALENT = [
    ("000,0,512,512/max/0/default.jpg", "0,0,512,512/max/0/default.jpg", "0,0,0512,00512/max/0/default.jpg"),
    ("full/pct:50.0/0/default.jpg", "full/pct:50/0/default.jpg", "full/pct:050.000/0/default.jpg"),
    (
        "0,0,12000,9000/max/0/default.jpg",
        "full/max/0/default.jpg",
        "pct:0,0,100,100/max/0/default.jpg",
        "0,0,99999,99999/max/0/default.jpg",
    ),
    (
        "full/12000,/0/default.jpg",
        "full/max/0/default.jpg",
        "full/,9000/0/default.jpg",
        "full/12000,9000/0/default.jpg",
        "full/pct:100/0/default.jpg",
        "full/!12000,9000/0/default.jpg",
        "full/^max/0/default.jpg",
        "full/^12000,9000/0/default.jpg",
    ),
    ("full/max/!0/default.jpg", "full/max/!0.0/default.jpg", "full/max/!360/default.jpg", "full/max/!00/default.jpg"),
    ("full/max/0/default.jpg", "full/max/360/default.jpg", "full/max/0.0/default.jpg", "full/max/360.00/default.jpg"),
    ("full/max/22.5/default.png", "full/max/22.50/default.png", "full/max/022.5/default.png"),
    (
        "full/1200,/0/default.jpg",
        "full/,900/0/default.jpg",
        "full/pct:10/0/default.jpg",
        "full/!1200,1200/0/default.jpg",
    ),
    ("square/max/0/default.jpg", "1500,0,9000,9000/max/0/default.jpg", "pct:12.5,0,75,100/max/0/default.jpg"),
]


@pytest.mark.parametrize("version", [V3, V2])
@pytest.mark.parametrize("spellings", EQUIVALENT)
def test_equivalent_spellings_share_one_canonical_path(spellings: tuple[str, ...], version: ApiVersion) -> None:
    if version is V2:
        spellings = tuple(s for s in spellings if "^" not in s)
    paths = {canonical(s, BIG, UNLIMITED, version) for s in spellings}
    assert len(paths) == 1, paths


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0,0,512,512/max/0/default.jpg", "0,0,512,511/max/0/default.jpg"),
        ("full/max/0/default.jpg", "full/max/!0/default.jpg"),
        ("full/max/0/default.jpg", "full/max/0/color.jpg"),  # default is not resolved to its meaning
        ("full/max/0/default.jpg", "full/max/0/default.png"),
        ("full/1200,/0/default.jpg", "full/1200,901/0/default.jpg"),
        ("full/max/22.5/default.png", "full/max/22.6/default.png"),
        ("full/max/0.1/default.png", "full/max/0/default.png"),
    ],
)
def test_different_images_have_different_canonical_paths(a: str, b: str) -> None:
    assert canonical(a, BIG) != canonical(b, BIG)


def test_upscale_max_setting_changes_what_caret_max_names() -> None:
    small = source(300, 200)
    to_limits = Limits(3000, 3000, 10**8, upscale_max_to_limits=True)
    plain = Limits(3000, 3000, 10**8)
    assert canonical("full/^max/0/default.jpg", small, to_limits) == "full/^max/0/default.jpg"
    assert canonical("full/^3000,2000/0/default.jpg", small, to_limits) == "full/^max/0/default.jpg"
    # Without the setting, ^max means max: a 3000x2000 request must not be called ^max.
    assert canonical("full/^max/0/default.jpg", small, plain) == "full/max/0/default.jpg"
    assert canonical("full/^3000,2000/0/default.jpg", small, plain) == "full/^3000,2000/0/default.jpg"


# -- property: canonical(parse(canonical)) is a fixed point --------------------------------------


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, SourceInfo, Limits, ApiVersion]:
    width, height = draw(st.integers(1, 20000)), draw(st.integers(1, 20000))
    info = source(width, height)
    limits = Limits(
        draw(st.integers(1, 20000)),
        draw(st.integers(1, 20000)),
        draw(st.integers(1, 400_000_000)),
        draw(st.booleans()),
        draw(st.booleans()),
    )
    version = draw(st.sampled_from([V2, V3]))
    big = 2 * max(width, height)

    def num(hi: int = big) -> str:
        return str(draw(st.integers(0, hi)))

    def dec() -> str:
        return format(draw(st.decimals(0, 150, places=draw(st.integers(0, 40)))), "f")

    region = draw(
        st.sampled_from(["full", "square", f"{num()},{num()},{draw(st.integers(1, big))},{num()}", "pct:{},{},{},{}"])
    )
    if region.startswith("pct:"):
        region = region.format(dec(), dec(), dec(), dec())
    prefix = "^" if version is V3 and draw(st.booleans()) else ""
    size = prefix + draw(
        st.sampled_from(
            ["max", f"{num()},", f",{num()}", f"{num()},{num()}", f"!{num()},{num()}", "pct:{}"]
            + (["full"] if version is V2 and not prefix else [])
        )
    ).format(dec())
    degrees = draw(st.decimals(0, 360, places=draw(st.integers(0, 40))))
    rotation = draw(st.sampled_from(["", "!"])) + format(degrees, "f")
    quality_format = (
        draw(st.sampled_from(["default", "color", "gray", "bitonal"]))
        + "."
        + draw(st.sampled_from(["jpg", "png", "webp", "tif", "gif"]))
    )
    return f"{region}/{size}/{rotation}/{quality_format}", info, limits, version


@settings(max_examples=500, deadline=None)
@given(cases())
@example(("full/max/359.99999999999999999999999999999/default.jpg", EXAMPLE, UNLIMITED, V3))
@example(("full/^max/0/default.jpg", EXAMPLE, Limits(3000, 3000, 10**8), V3))
@example(("full/^3000,2000/0/default.jpg", EXAMPLE, Limits(3000, 3000, 10**8), V3))
@example(("full/^3000,2000/0/default.jpg", EXAMPLE, Limits(3000, 3000, 10**8, upscale_max_to_limits=True), V3))
def test_canonical_is_a_fixed_point_naming_the_same_image(case: tuple[str, SourceInfo, Limits, ApiVersion]) -> None:
    path, info, limits, version = case
    try:
        first = resolve_path(path, info, limits, version)
    except (BadRequest, NotImplementedFeature):
        return
    canon = canonical_path(first, version)
    again = resolve_path(canon, info, limits, version)
    assert canonical_path(again, version) == canon
    # The canonical path denotes the very same image, so equal canonical paths mean equal images.
    for field in ("region", "width", "height", "mirror", "degrees", "quality", "format", "upscaled"):
        assert getattr(again, field) == getattr(first, field), field
    assert first.output_size == again.output_size
