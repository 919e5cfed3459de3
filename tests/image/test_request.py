"""The image request grammar, both directions (Image API 3.0 sections 4.1-4.7 and 9; 2.1 section 4).

Spec examples are copied verbatim from the spec text. Error rows follow attack-cases.md group B
(B01-B04, B10, B11) and the identifier rows A03, A08 and A10-A14.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from iiifserver.errors import BadRequest, IIIFError, URITooLong
from iiifserver.image.request import (
    MAX_IDENTIFIER_BYTES,
    ApiVersion,
    Format,
    ImageRequest,
    Quality,
    Region,
    RegionKind,
    Rotation,
    Size,
    SizeKind,
    decode_identifier,
    encode_identifier,
    format_decimal,
    format_image_request,
    format_region,
    format_rotation,
    format_size,
    parse_image_request,
    parse_quality_format,
    parse_region,
    parse_rotation,
    parse_size,
    parse_tile_request,
)

V2, V3 = ApiVersion.V2, ApiVersion.V3
D = Decimal


def parse_path(path: str, version: ApiVersion = V3) -> ImageRequest:
    region, size, rotation, quality_format = path.split("/")
    return parse_image_request(region, size, rotation, quality_format, version=version)


def px(x: int, y: int, w: int, h: int) -> Region:
    return Region(RegionKind.PIXELS, pixels=(x, y, w, h))


def pct(x: str, y: str, w: str, h: str) -> Region:
    return Region(RegionKind.PERCENT, percent=(D(x), D(y), D(w), D(h)))


FULL = Region(RegionKind.FULL)
SQUARE = Region(RegionKind.SQUARE)
MAX = Size(SizeKind.MAX)
NO_ROTATION = Rotation(mirror=False, degrees=D(0))


# -- spec examples, verbatim --------------------------------------------------------------------

# (path after ".../", region, size, rotation, quality, format)
SPEC_30_EXAMPLES = [
    # 4.1 Region
    ("full/max/0/default.jpg", FULL, MAX, NO_ROTATION, Quality.DEFAULT, Format.JPG),
    ("square/max/0/default.jpg", SQUARE, MAX, NO_ROTATION, Quality.DEFAULT, Format.JPG),
    ("125,15,120,140/max/0/default.jpg", px(125, 15, 120, 140), MAX, NO_ROTATION, Quality.DEFAULT, Format.JPG),
    (
        "pct:41.6,7.5,40,70/max/0/default.jpg",
        pct("41.6", "7.5", "40", "70"),
        MAX,
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    ("125,15,200,200/max/0/default.jpg", px(125, 15, 200, 200), MAX, NO_ROTATION, Quality.DEFAULT, Format.JPG),
    (
        "pct:41.6,7.5,66.6,100/max/0/default.jpg",
        pct("41.6", "7.5", "66.6", "100"),
        MAX,
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    # 4.2 Size
    ("full/^max/0/default.jpg", FULL, Size(SizeKind.MAX, True), NO_ROTATION, Quality.DEFAULT, Format.JPG),
    ("full/150,/0/default.jpg", FULL, Size(SizeKind.WIDTH, width=150), NO_ROTATION, Quality.DEFAULT, Format.JPG),
    (
        "full/^360,/0/default.jpg",
        FULL,
        Size(SizeKind.WIDTH, True, width=360),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    ("full/,150/0/default.jpg", FULL, Size(SizeKind.HEIGHT, height=150), NO_ROTATION, Quality.DEFAULT, Format.JPG),
    # The spec's example spells this ",^240", a typo for the table's "^,h" form (IIIF/api#2070).
    (
        "full/^,240/0/default.jpg",
        FULL,
        Size(SizeKind.HEIGHT, True, height=240),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    (
        "full/pct:50/0/default.jpg",
        FULL,
        Size(SizeKind.PERCENT, percent=D(50)),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    (
        "full/^pct:120/0/default.jpg",
        FULL,
        Size(SizeKind.PERCENT, True, percent=D(120)),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    (
        "full/225,100/0/default.jpg",
        FULL,
        Size(SizeKind.EXACT, width=225, height=100),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    (
        "full/^360,360/0/default.jpg",
        FULL,
        Size(SizeKind.EXACT, True, width=360, height=360),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    (
        "full/!225,100/0/default.jpg",
        FULL,
        Size(SizeKind.CONFINED, width=225, height=100),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    (
        "full/^!360,360/0/default.jpg",
        FULL,
        Size(SizeKind.CONFINED, True, width=360, height=360),
        NO_ROTATION,
        Quality.DEFAULT,
        Format.JPG,
    ),
    # 4.3 Rotation
    ("full/max/180/default.jpg", FULL, MAX, Rotation(False, D(180)), Quality.DEFAULT, Format.JPG),
    ("full/max/90/default.jpg", FULL, MAX, Rotation(False, D(90)), Quality.DEFAULT, Format.JPG),
    ("full/max/22.5/default.png", FULL, MAX, Rotation(False, D("22.5")), Quality.DEFAULT, Format.PNG),
    ("full/max/!0/default.jpg", FULL, MAX, Rotation(True, D(0)), Quality.DEFAULT, Format.JPG),
    ("full/max/!180/default.jpg", FULL, MAX, Rotation(True, D(180)), Quality.DEFAULT, Format.JPG),
    # 4.4 Quality
    ("full/max/0/color.jpg", FULL, MAX, NO_ROTATION, Quality.COLOR, Format.JPG),
    ("full/max/0/gray.jpg", FULL, MAX, NO_ROTATION, Quality.GRAY, Format.JPG),
    ("full/max/0/bitonal.jpg", FULL, MAX, NO_ROTATION, Quality.BITONAL, Format.JPG),
    # 4.5 Format
    ("full/max/0/default.tif", FULL, MAX, NO_ROTATION, Quality.DEFAULT, Format.TIF),
    # 4.6 Order of implementation
    (
        "125,15,120,140/90,/!345/gray.jpg",
        px(125, 15, 120, 140),
        Size(SizeKind.WIDTH, width=90),
        Rotation(True, D(345)),
        Quality.GRAY,
        Format.JPG,
    ),
    # 9 URI encoding (the parameter part of the table's paths that carry a format)
    (
        "0,10,100,200/pct:50/90/default.png",
        px(0, 10, 100, 200),
        Size(SizeKind.PERCENT, percent=D(50)),
        Rotation(False, D(90)),
        Quality.DEFAULT,
        Format.PNG,
    ),
    (
        "pct:10,10,80,80/50,/22.5/color.jpg",
        pct("10", "10", "80", "80"),
        Size(SizeKind.WIDTH, width=50),
        Rotation(False, D("22.5")),
        Quality.COLOR,
        Format.JPG,
    ),
    ("full/max/270/gray.jpg", FULL, MAX, Rotation(False, D(270)), Quality.GRAY, Format.JPG),
]


@pytest.mark.parametrize(("path", "region", "size", "rotation", "quality", "fmt"), SPEC_30_EXAMPLES)
def test_spec_30_examples_parse(
    path: str, region: Region, size: Size, rotation: Rotation, quality: Quality, fmt: Format
) -> None:
    assert parse_path(path) == ImageRequest(region, size, rotation, quality, fmt, V3)


@pytest.mark.parametrize("path", [row[0] for row in SPEC_30_EXAMPLES])
def test_spec_30_examples_format_back(path: str) -> None:
    assert format_image_request(parse_path(path)) == path


SPEC_21_EXAMPLES = [
    ("full/full/0/default.jpg", FULL, Size(SizeKind.FULL)),
    ("square/full/0/default.jpg", SQUARE, Size(SizeKind.FULL)),
    ("125,15,120,140/full/0/default.jpg", px(125, 15, 120, 140), Size(SizeKind.FULL)),
    ("pct:41.6,7.5,40,70/full/0/default.jpg", pct("41.6", "7.5", "40", "70"), Size(SizeKind.FULL)),
    ("full/max/0/default.jpg", FULL, MAX),
    ("full/150,/0/default.jpg", FULL, Size(SizeKind.WIDTH, width=150)),
    ("full/,150/0/default.jpg", FULL, Size(SizeKind.HEIGHT, height=150)),
    ("full/pct:50/0/default.jpg", FULL, Size(SizeKind.PERCENT, percent=D(50))),
    ("full/225,100/0/default.jpg", FULL, Size(SizeKind.EXACT, width=225, height=100)),
    ("full/!225,100/0/default.jpg", FULL, Size(SizeKind.CONFINED, width=225, height=100)),
    # 2.1 allows scaling above the full size without any prefix.
    ("full/pct:200/0/default.jpg", FULL, Size(SizeKind.PERCENT, percent=D(200))),
]


@pytest.mark.parametrize(("path", "region", "size"), SPEC_21_EXAMPLES)
def test_spec_21_examples_parse_and_format_back(path: str, region: Region, size: Size) -> None:
    request = parse_path(path, V2)
    assert request == ImageRequest(region, size, NO_ROTATION, Quality.DEFAULT, Format.JPG, V2)
    assert format_image_request(request) == path


# -- Image API 2.1 vs 3.0 -------------------------------------------------------------------------


def test_size_full_is_v2_only() -> None:
    assert parse_size("full", V2) == Size(SizeKind.FULL)
    with pytest.raises(BadRequest) as excinfo:
        parse_size("full", V3)
    assert excinfo.value.parameter == "size"
    assert "max" in excinfo.value.detail  # it tells the client what to use instead


@pytest.mark.parametrize("text", ["^max", "^150,", "^,150", "^pct:50", "^pct:200", "^225,100", "^!360,360", "^full"])
def test_caret_is_refused_in_v2(text: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        parse_size(text, V2)
    assert excinfo.value.parameter == "size"
    assert excinfo.value.status == 400


# "pct:120" is verbatim the section 4.2 example "Size by Percent Above Maximum"; the table says n
# MUST NOT exceed 100 without "^", so the example needs "^pct:120" (tested with the examples above).
@pytest.mark.parametrize("text", ["pct:200", "pct:100.1", "pct:120", "pct:100.0000001"])
def test_pct_above_100_needs_caret_in_v3(text: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        parse_size(text, V3)
    assert excinfo.value.parameter == "size"
    assert "^" in excinfo.value.detail
    assert parse_size("^" + text, V3) == Size(SizeKind.PERCENT, True, percent=D(text[4:]))
    assert parse_size(text, V2) == Size(SizeKind.PERCENT, percent=D(text[4:]))


@pytest.mark.parametrize("text", ["pct:100", "pct:100.0", "pct:99.99"])
def test_pct_up_to_100_is_fine_without_caret(text: str) -> None:
    assert parse_size(text, V3).percent == D(text[4:])


def test_spec_typo_comma_caret_is_not_in_the_grammar() -> None:
    # Section 4.2's example ".../full/,^240/..." contradicts its own table (^,h); IIIF/api#2070.
    with pytest.raises(BadRequest):
        parse_size(",^240", V3)
    assert parse_size("^,240", V3) == Size(SizeKind.HEIGHT, True, height=240)


# -- each parameter, both directions ------------------------------------------------------------

REGIONS = [
    ("full", FULL, "full"),
    ("square", SQUARE, "square"),
    ("0,0,512,512", px(0, 0, 512, 512), "0,0,512,512"),
    ("000,0,512,512", px(0, 0, 512, 512), "0,0,512,512"),
    ("007,08,0512,00512", px(7, 8, 512, 512), "7,8,512,512"),
    ("99999,99999,10,10", px(99999, 99999, 10, 10), "99999,99999,10,10"),  # outside: the planner's job
    ("0,0,99999999999999999999,1", px(0, 0, 99999999999999999999, 1), "0,0,99999999999999999999,1"),
    ("pct:0,0,100,100", pct("0", "0", "100", "100"), "pct:0,0,100,100"),
    ("pct:50.0,0.50,.5,050", pct("50", "0.5", "0.5", "50"), "pct:50,0.5,0.5,50"),
    ("pct:41.6,7.5,66.6,100", pct("41.6", "7.5", "66.6", "100"), "pct:41.6,7.5,66.6,100"),
    ("pct:0,0,200,200", pct("0", "0", "200", "200"), "pct:0,0,200,200"),  # partly outside: cropped later
    ("pct:99.999,0,1,1", pct("99.999", "0", "1", "1"), "pct:99.999,0,1,1"),
]


@pytest.mark.parametrize(("text", "expected", "formatted"), REGIONS)
def test_region(text: str, expected: Region, formatted: str) -> None:
    region = parse_region(text)
    assert region == expected
    assert format_region(region) == formatted
    assert parse_region(formatted) == region


SIZES = [
    ("max", MAX, "max"),
    ("^max", Size(SizeKind.MAX, True), "^max"),
    ("150,", Size(SizeKind.WIDTH, width=150), "150,"),
    ("0150,", Size(SizeKind.WIDTH, width=150), "150,"),
    ("^360,", Size(SizeKind.WIDTH, True, width=360), "^360,"),
    (",150", Size(SizeKind.HEIGHT, height=150), ",150"),
    ("^,240", Size(SizeKind.HEIGHT, True, height=240), "^,240"),
    ("pct:50", Size(SizeKind.PERCENT, percent=D(50)), "pct:50"),
    ("pct:50.0", Size(SizeKind.PERCENT, percent=D(50)), "pct:50"),
    ("pct:050.500", Size(SizeKind.PERCENT, percent=D("50.5")), "pct:50.5"),
    ("pct:.5", Size(SizeKind.PERCENT, percent=D("0.5")), "pct:0.5"),
    ("pct:0.0001", Size(SizeKind.PERCENT, percent=D("0.0001")), "pct:0.0001"),  # < 1 px: the planner's job
    ("^pct:120", Size(SizeKind.PERCENT, True, percent=D(120)), "^pct:120"),
    ("225,100", Size(SizeKind.EXACT, width=225, height=100), "225,100"),
    ("^360,360", Size(SizeKind.EXACT, True, width=360, height=360), "^360,360"),
    ("!225,100", Size(SizeKind.CONFINED, width=225, height=100), "!225,100"),
    ("^!360,360", Size(SizeKind.CONFINED, True, width=360, height=360), "^!360,360"),
    ("9999999999,", Size(SizeKind.WIDTH, width=9999999999), "9999999999,"),  # too big: the planner's job
]


@pytest.mark.parametrize(("text", "expected", "formatted"), SIZES)
def test_size(text: str, expected: Size, formatted: str) -> None:
    size = parse_size(text, V3)
    assert size == expected
    assert format_size(size) == formatted
    assert parse_size(formatted, V3) == size


ROTATIONS = [
    ("0", Rotation(False, D(0)), "0"),
    ("90", Rotation(False, D(90)), "90"),
    ("180", Rotation(False, D(180)), "180"),
    ("270", Rotation(False, D(270)), "270"),
    ("360", Rotation(False, D(360)), "360"),
    ("22.5", Rotation(False, D("22.5")), "22.5"),
    ("!0", Rotation(True, D(0)), "!0"),
    ("!180", Rotation(True, D(180)), "!180"),
    ("!0.0", Rotation(True, D(0)), "!0"),
    ("0.0", Rotation(False, D(0)), "0"),
    ("090", Rotation(False, D(90)), "90"),
    ("22.50", Rotation(False, D("22.5")), "22.5"),
    (".5", Rotation(False, D("0.5")), "0.5"),
    ("!.5", Rotation(True, D("0.5")), "!0.5"),
    ("0.90", Rotation(False, D("0.9")), "0.9"),
    ("359.999", Rotation(False, D("359.999")), "359.999"),
    ("360.000", Rotation(False, D(360)), "360"),
]


@pytest.mark.parametrize(("text", "expected", "formatted"), ROTATIONS)
def test_rotation(text: str, expected: Rotation, formatted: str) -> None:
    rotation = parse_rotation(text)
    assert rotation == expected
    assert format_rotation(rotation) == formatted
    assert parse_rotation(formatted) == rotation


@pytest.mark.parametrize(
    ("text", "right_angle"),
    [("0", True), ("90", True), ("!270", True), ("360", True), ("22.5", False), ("89.9", False)],
)
def test_rotation_right_angle(text: str, right_angle: bool) -> None:
    assert parse_rotation(text).is_right_angle is right_angle


@pytest.mark.parametrize("quality", ["default", "color", "gray", "bitonal"])
@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("jpg", "image/jpeg"), ("png", "image/png"), ("tif", "image/tiff"), ("gif", "image/gif"), ("webp", "image/webp")],
)
def test_quality_format(quality: str, fmt: str, media_type: str) -> None:
    parsed_quality, parsed_format = parse_quality_format(f"{quality}.{fmt}")
    assert parsed_quality is Quality(quality)
    assert parsed_format is Format(fmt)
    assert parsed_format.media_type == media_type  # section 4.5 table


# -- section 4.7: decimal formatting ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("0.5"), "0.5"),
        (D(".5"), "0.5"),
        (D("0.90"), "0.9"),
        (D("00.9"), "0.9"),
        (D("100"), "100"),
        (D("100.00"), "100"),
        (D("1E+2"), "100"),
        (D("0"), "0"),
        (D("0.000"), "0"),
        (D("22.5"), "22.5"),
        (D("0.000001"), "0.000001"),
        (D("1E-7"), "0.0000001"),
        (D("41.6"), "41.6"),
        # No rounding to the decimal context's 28 digits: the value goes back out as it came in.
        (D("0.1234567890123456789012345678901"), "0.1234567890123456789012345678901"),
        (D("12345678901234567890.1234567891"), "12345678901234567890.1234567891"),
    ],
)
def test_format_decimal(value: Decimal, text: str) -> None:
    assert format_decimal(value) == text
    assert re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", text)  # digits and ".", no trailing zeros
    assert D(text) == value


# -- error table ---------------------------------------------------------------------------------

# (parameter, text) pairs; every one must be a 400 that names the parameter.
ERRORS = [
    # B01: non-ASCII digits
    ("size", "١٢٣,"),
    ("size", "１００,"),
    ("size", "²,"),
    ("size", ",١٢٣"),
    ("size", "pct:５０"),
    ("size", "!١٠,١٠"),
    ("region", "١,2,3,4"),
    ("region", "0,0,１００,100"),
    ("region", "pct:٥,0,10,10"),
    ("rotation", "٩٠"),
    ("rotation", "9٠"),
    ("rotation", "²"),
    # B02: signs, spaces, underscores, hex
    ("size", "+5,"),
    ("size", " 7,"),
    ("size", "7 ,"),
    ("size", "1_000,"),
    ("size", "0x10,"),
    ("size", "-5,"),
    ("size", "5,-5"),
    ("region", "+1,0,10,10"),
    ("region", "-1,0,10,10"),
    ("region", "0,0,1_0,10"),
    ("region", " 0,0,10,10"),
    ("region", "0,0,10,10 "),
    # B03: float() spellings
    ("size", "pct:nan"),
    ("size", "pct:inf"),
    ("size", "pct:1e3"),
    ("size", "pct:-5"),
    ("size", "pct:+5"),
    ("size", "pct:5."),
    ("size", "pct:Infinity"),
    ("region", "pct:nan,0,10,10"),
    ("region", "pct:0,0,1e2,10"),
    ("rotation", "+90"),
    ("rotation", "-0"),
    ("rotation", "nan"),
    ("rotation", "inf"),
    ("rotation", "90."),
    ("rotation", "0x5A"),
    ("rotation", " 90"),
    # B04: rotation range and shape
    ("rotation", "361"),
    ("rotation", "360.1"),
    ("rotation", "360.0000001"),
    ("rotation", "-90"),
    ("rotation", "!"),
    ("rotation", "1e2"),
    ("rotation", "!!90"),
    ("rotation", "90!"),
    ("rotation", "9 0"),
    ("rotation", "!-90"),
    ("rotation", ""),
    # B10: v3 size full, random strings (the validators use chr(48..122))
    ("size", "full"),
    ("size", "FULL"),
    ("size", "Max"),
    ("size", "max,"),
    ("size", "!max"),
    ("size", "^^max"),
    ("size", "^"),
    ("size", "!"),
    ("size", ","),
    ("size", ",,"),
    ("size", "!225,"),
    ("size", "!,100"),
    ("size", "pct:"),
    ("size", "pct:50,"),
    ("size", "0,"),  # zero-sized
    ("size", ",0"),
    ("size", "0,0"),
    ("size", "!0,100"),
    ("size", "pct:0"),
    ("size", "pct:0.0"),
    ("size", "10,10,10"),
    ("size", "a;=>"),
    ("size", "@[\\]^"),
    ("size", "_`xyz"),
    ("region", "Full"),
    ("region", "squares"),
    ("region", "0,0,10"),
    ("region", "0,0,10,10,10"),
    ("region", "0,0,0,10"),  # zero width
    ("region", "0,0,10,0"),
    ("region", "pct:0,0,0,10"),
    ("region", "pct:0,0,10,0.0"),
    ("region", "pct:100,0,10,10"),  # starts at the right edge: entirely outside
    ("region", "pct:0,100.0,10,10"),
    ("region", "pct:0,0,10"),
    ("region", "pct:"),
    ("region", "pct0,0,10,10"),
    ("region", "px:0,0,10,10"),
    ("region", "0;0;10;10"),
    ("region", "a;=>"),
    ("region", "<=>?@"),
    ("region", "\\`[]"),
    ("quality", "grey.jpg"),
    ("quality", "colour.jpg"),
    ("quality", "Default.jpg"),
    ("quality", "native.jpg"),  # Image API 1.x
    ("quality", ".jpg"),
    ("quality", "info.JSON"),
    ("quality", "default.jpg.png"),
    ("quality", "default.jpg.extra"),  # the quality is read first: "default.jpg" is not one
    ("format", "default.JPG"),
    ("format", "default.jpeg"),
    ("format", "default.jp2"),  # section 4.5 lists it; this server does not produce it
    ("format", "default.pdf"),
    ("format", "default.bmp"),
    ("format", "default."),
    ("format", "default"),
    ("format", "default.json"),
    # B11: empty segments
    ("region", ""),
    ("size", ""),
    ("format", ""),
]


def _error_of(fn: Callable[[Any], object], arg: object, kind: type[IIIFError] = BadRequest) -> IIIFError | None:
    """The error ``fn(arg)`` raises (only ``kind`` is caught: anything else fails the test), or None."""
    try:
        fn(arg)
    except kind as error:
        return error
    return None


_PARSERS: dict[str, Callable[[str], object]] = {
    "region": parse_region,
    "size": lambda text: parse_size(text, V3),
    "rotation": parse_rotation,
    "quality": parse_quality_format,
    "format": parse_quality_format,
}


@pytest.mark.parametrize(("parameter", "text"), ERRORS)
def test_bad_parameter_is_400_naming_the_parameter(parameter: str, text: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        _PARSERS[parameter](text)
    error = excinfo.value
    assert error.status == 400
    assert error.parameter == parameter
    assert str(error).startswith(f"{parameter}: ")


@pytest.mark.parametrize(("parameter", "text"), ERRORS)
def test_bad_parameter_through_parse_image_request(parameter: str, text: str) -> None:
    segments = {"region": "full", "size": "max", "rotation": "0", "quality_format": "default.jpg"}
    segments["quality_format" if parameter in ("quality", "format") else parameter] = text
    with pytest.raises(BadRequest) as excinfo:
        parse_image_request(segments["region"], segments["size"], segments["rotation"], segments["quality_format"])
    assert excinfo.value.parameter == parameter


@pytest.mark.parametrize("digits", [25, 4400, 10_000])
@pytest.mark.parametrize(
    ("parameter", "template"),
    [
        ("region", "0,0,{n},1"),
        ("region", "{n},0,1,1"),
        ("region", "pct:0,0,{n},1"),
        ("size", "{n},"),
        ("size", "^,{n}"),
        ("size", "^!{n},{n}"),
        ("size", "^pct:{n}"),
        ("rotation", "{n}"),
    ],
)
def test_long_numbers_never_escape_as_python_errors(parameter: str, template: str, digits: int) -> None:
    # int() refuses more than 4300 digits with ValueError; that must not become a 500.
    error = _error_of(_PARSERS[parameter], template.format(n="9" * digits))
    if error is None:
        assert digits < 100  # only plausible lengths are accepted
    else:
        assert error.parameter == parameter


def test_long_leading_zeros_still_a_small_number() -> None:
    assert parse_size("0000000000000000000000000000150,", V3) == Size(SizeKind.WIDTH, width=150)


def test_error_messages_do_not_echo_control_characters() -> None:
    with pytest.raises(BadRequest) as excinfo:
        parse_region("\x00\r\nSet-Cookie: x")
    assert not re.search(r"[\x00-\x1f\x7f]", str(excinfo.value))
    with pytest.raises(BadRequest) as excinfo:
        parse_size("9" * 5000)
    assert len(str(excinfo.value)) < 200  # clipped


# -- identifiers (section 9; attack cases A03, A08, A10-A14) -------------------------------------

IDENTIFIERS = [
    (b"abcd1234", "abcd1234"),
    (b"ark:%2F12025%2F654xz321", "ark:/12025/654xz321"),  # A08, section 9
    (b"urn:foo:a123,456", "urn:foo:a123,456"),
    (
        b"urn:sici:1046-8188(199501)13:1%253C69:FTTHBI%253E2.0.TX;2-4",
        "urn:sici:1046-8188(199501)13:1%3C69:FTTHBI%3E2.0.TX;2-4",
    ),
    (b"http:%2F%2Fexample.com%2F%3F54%23a", "http://example.com/?54#a"),
    (b"%252e%252e%252fetc%252fpasswd", "%2e%2e%2fetc%2fpasswd"),  # A03: decoded exactly once
    (b"%252F", "%2F"),
    (b"67352ccc%2Dd1b0", "67352ccc-d1b0"),  # the validators' %2D case
    (b"a%20b", "a b"),
    (b"%E4%B8%AD%E6%96%87", "中文"),
    (b"100%", "100%"),  # a lone percent sign is not an escape
    (b"%zz", "%zz"),
]


@pytest.mark.parametrize(("raw", "identifier"), IDENTIFIERS)
def test_decode_identifier(raw: bytes, identifier: str) -> None:
    assert decode_identifier(raw) == identifier
    assert decode_identifier(raw.decode("latin-1")) == identifier  # a raw segment as str


@pytest.mark.parametrize(
    ("identifier", "encoded"),
    [
        ("ark:/12025/654xz321", "ark:%2F12025%2F654xz321"),
        ("urn:foo:a123,456", "urn:foo:a123,456"),
        (
            "urn:sici:1046-8188(199501)13:1%3C69:FTTHBI%3E2.0.TX;2-4",
            "urn:sici:1046-8188(199501)13:1%253C69:FTTHBI%253E2.0.TX;2-4",
        ),
        ("http://example.com/?54#a", "http:%2F%2Fexample.com%2F%3F54%23a"),
        ("bb157hs6068", "bb157hs6068"),
        ("[frob]@x", "%5Bfrob%5D%40x"),
    ],
)
def test_encode_identifier_section_9_table(identifier: str, encoded: str) -> None:
    assert encode_identifier(identifier) == encoded
    assert decode_identifier(encoded.encode("ascii")) == identifier


def test_nfc_and_nfd_spellings_are_one_identifier() -> None:  # A12
    nfc = decode_identifier(b"caf%C3%A9")
    nfd = decode_identifier(b"cafe%CC%81")
    assert nfc == nfd == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", nfc)


@pytest.mark.parametrize(
    "raw",
    [
        b"a%00b",  # A10
        b"a\x00b",
        b"%FF",  # A11
        b"%C3%28",
        b"abc%ED%A0%80",  # an encoded surrogate
        b"%C0%AF",  # overlong "/"
        b"a%0D%0ASet-Cookie:x",  # A13
        b"a%0Ab",
        b"a%0Db",
        b"a%09b",
        b"a%7Fb",  # DEL
        b"a%C2%85b",  # NEL (C1)
        b"a\x7fb",
        b"",
    ],
)
def test_bad_identifier_is_400(raw: bytes) -> None:
    with pytest.raises(BadRequest) as excinfo:
        decode_identifier(raw)
    assert excinfo.value.parameter == "identifier"
    assert excinfo.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        b"a" * (MAX_IDENTIFIER_BYTES + 1),
        b"%41" * (MAX_IDENTIFIER_BYTES + 1),
        "é".encode() * (MAX_IDENTIFIER_BYTES // 2 + 1),
        b"x" * 100_000,
    ],
)
def test_overlong_identifier_is_414(raw: bytes) -> None:  # A14
    with pytest.raises(URITooLong) as excinfo:
        decode_identifier(raw)
    assert excinfo.value.status == 414
    assert excinfo.value.parameter == "identifier"


def test_identifier_at_the_length_limit_is_fine() -> None:
    assert decode_identifier(b"a" * MAX_IDENTIFIER_BYTES) == "a" * MAX_IDENTIFIER_BYTES
    assert decode_identifier(b"%41" * MAX_IDENTIFIER_BYTES) == "A" * MAX_IDENTIFIER_BYTES


# Cc covers C0, DEL and C1, which are refused by design (A13); Cs cannot be encoded as UTF-8.
_IDENTIFIER_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=60
)


@given(_IDENTIFIER_TEXT)
@example("ark:/12025/654xz321")
@example("%2F%252F/..//?#[]@")
@example("cafe\u0301")
def test_encode_identifier_round_trip(identifier: str) -> None:
    encoded = encode_identifier(identifier)
    # Only unreserved characters, sub-delims, ":" and %XX escapes: section 9's to-encode set
    # ("/ ? # [ ] @ %") and anything outside US-ASCII never appear raw.
    assert re.fullmatch(r"(?:[A-Za-z0-9!$&'()*+,;=:\-._~]|%[0-9A-F]{2})+", encoded)
    assert decode_identifier(encoded.encode("ascii")) == unicodedata.normalize("NFC", identifier)


@given(st.binary(max_size=80))
def test_decode_identifier_never_raises_anything_else(raw: bytes) -> None:
    error = _error_of(decode_identifier, raw, IIIFError)
    if error is not None:
        assert error.status in (400, 414)
        return
    text = decode_identifier(raw)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", text)
    assert unicodedata.is_normalized("NFC", text)


# -- properties ----------------------------------------------------------------------------------

_VALIDATOR_JUNK = st.text(alphabet=[chr(c) for c in range(48, 123)], min_size=3, max_size=6)
_GRAMMAR_BITS = st.sampled_from(
    ["full", "square", "max", "^", "!", "pct:", ",", ".", "0", "5", "9", "00", "12", "360", "default", ".jpg", "-"]
)
_NEAR_GRAMMAR = st.lists(_GRAMMAR_BITS, max_size=8).map("".join)
_ANY_TEXT = st.text(max_size=30) | _VALIDATOR_JUNK | _NEAR_GRAMMAR


@settings(max_examples=300)
@given(_ANY_TEXT, st.sampled_from(["region", "size", "size_v2", "rotation", "quality_format"]))
def test_random_text_only_ever_raises_bad_request(text: str, parameter: str) -> None:
    parser = {
        "region": parse_region,
        "size": lambda t: parse_size(t, V3),
        "size_v2": lambda t: parse_size(t, V2),
        "rotation": parse_rotation,
        "quality_format": parse_quality_format,
    }[parameter]
    error = _error_of(parser, text)
    if error is None:
        assert text.isascii()  # accepted numbers are ASCII digits only
    else:
        assert error.status == 400
        assert error.parameter in ("region", "size", "rotation", "quality", "format")


_NON_ASCII_DIGIT = st.characters(categories=["Nd", "No"]).filter(lambda c: not c.isascii())


@given(
    st.sampled_from(
        [
            ("region", "0,0,512,512"),
            ("region", "pct:50,0,25.5,10"),
            ("size", "150,"),
            ("size", ",150"),
            ("size", "^pct:50"),
            ("size", "225,100"),
            ("size", "^!225,100"),
            ("rotation", "22.5"),
            ("rotation", "!90"),
        ]
    ),
    st.data(),
)
def test_one_non_ascii_digit_spoils_any_number(case: tuple[str, str], data: st.DataObject) -> None:
    parameter, text = case
    parser = _PARSERS[parameter]
    parser(text)  # the original is fine
    i = data.draw(st.sampled_from([i for i, c in enumerate(text) if c.isdigit()]))
    spoiled = text[:i] + data.draw(_NON_ASCII_DIGIT) + text[i + 1 :]
    with pytest.raises(BadRequest) as excinfo:
        parser(spoiled)
    assert excinfo.value.parameter == parameter


def _number(integer: bool) -> st.SearchStrategy[str]:
    digits = st.text(alphabet="0123456789", min_size=1, max_size=6)
    if integer:
        return digits
    fraction = st.text(alphabet="0123456789", min_size=1, max_size=6)
    return st.one_of(digits, st.tuples(digits, fraction).map(".".join), fraction.map(lambda f: "." + f))


_REGION_TEXT = st.one_of(
    st.sampled_from(["full", "square"]),
    st.lists(_number(True), min_size=4, max_size=4).map(",".join),
    st.lists(_number(False), min_size=4, max_size=4).map(lambda v: "pct:" + ",".join(v)),
)
_SIZE_TEXT = st.tuples(
    st.sampled_from(["", "^"]),
    st.one_of(
        st.just("max"),
        _number(True).map(lambda n: n + ","),
        _number(True).map(lambda n: "," + n),
        st.tuples(_number(True), _number(True)).map(",".join),
        st.tuples(_number(True), _number(True)).map(lambda t: "!" + ",".join(t)),
        _number(False).map(lambda n: "pct:" + n),
    ),
).map("".join)
_ROTATION_TEXT = st.tuples(st.sampled_from(["", "!"]), _number(False)).map("".join)
_QUALITY_FORMAT_TEXT = st.tuples(
    st.sampled_from([q.value for q in Quality]), st.sampled_from([f.value for f in Format])
).map(".".join)


@settings(max_examples=300)
@given(_REGION_TEXT, _SIZE_TEXT, _ROTATION_TEXT, _QUALITY_FORMAT_TEXT, st.sampled_from([V2, V3]))
def test_format_of_parse_is_idempotent(
    region: str, size: str, rotation: str, quality_format: str, version: ApiVersion
) -> None:
    try:
        request = parse_image_request(region, size, rotation, quality_format, version=version)
    except BadRequest:
        return
    formatted = format_image_request(request)
    again = parse_path(formatted, version)
    assert again == request
    assert format_image_request(again) == formatted
    # The formatted spelling is the section 4.7 one: no leading zeros on integers, no trailing zeros.
    assert not re.search(r"(^|[,:!^])0[0-9]", formatted)
    assert not re.search(r"\.[0-9]*0(?![0-9])", formatted)


# -- the plain tile request, parsed without the general grammar --------------------------------


def _general(params: bytes, version: ApiVersion) -> ImageRequest | None:
    """What the general grammar makes of raw parameters (as the endpoint decodes them); None
    when it refuses them."""
    segments = params.split(b"/")
    if len(segments) != 4:
        return None
    try:
        region, size, rotation, quality_format = (unquote_to_bytes(s).decode("utf-8") for s in segments)
        return parse_image_request(region, size, rotation, quality_format, version)
    except (IIIFError, UnicodeDecodeError):
        return None


@pytest.mark.parametrize("version", list(ApiVersion))
def test_tile_requests_parse_to_what_the_grammar_gives(version: ApiVersion) -> None:
    expected = {
        b"0,0,256,256/256,/0/default.jpg": (
            Region(RegionKind.PIXELS, pixels=(0, 0, 256, 256)),
            Size(SizeKind.WIDTH, width=256),
        ),
        b"11776,8960,224,40/224,40/0/default.jpg": (
            Region(RegionKind.PIXELS, pixels=(11776, 8960, 224, 40)),
            Size(SizeKind.EXACT, width=224, height=40),
        ),
        b"0,8192,8192,808/256,/0/default.jpg": (
            Region(RegionKind.PIXELS, pixels=(0, 8192, 8192, 808)),
            Size(SizeKind.WIDTH, width=256),
        ),
        b"999999999,1,1,999999999/1,999999999/0/default.jpg": (
            Region(RegionKind.PIXELS, pixels=(999999999, 1, 1, 999999999)),
            Size(SizeKind.EXACT, width=1, height=999999999),
        ),
    }
    for params, (region, size) in expected.items():
        parsed = parse_tile_request(params, version)
        assert parsed == ImageRequest(region, size, Rotation(False, Decimal(0)), Quality.DEFAULT, Format.JPG, version)
        assert parsed == _general(params, version)
        assert format_image_request(parsed) == params.decode()


@pytest.mark.parametrize(
    "params",
    [
        b"00,0,256,256/256,/0/default.jpg",  # leading zeros: valid, but not the plain spelling
        b"0,0,0256,256/256,/0/default.jpg",
        b"0,0,256,256/0256,/0/default.jpg",
        b"0,0,0,256/256,/0/default.jpg",  # zero width: the grammar's 400
        b"0,0,256,256/0,/0/default.jpg",
        b"0,0,256,256/256,0/0/default.jpg",
        b"1000000000,0,256,256/256,/0/default.jpg",  # ten digits
        b"0,0,256,256/2560000000,/0/default.jpg",
        b"0,0,256,256/^256,/0/default.jpg",
        b"0,0,256,256/!256,256/0/default.jpg",
        b"0,0,256,256/,256/0/default.jpg",
        b"0,0,256,256/max/0/default.jpg",
        b"0,0,256,256/full/0/default.jpg",
        b"0,0,256,256/pct:50/0/default.jpg",
        b"full/256,/0/default.jpg",
        b"square/256,/0/default.jpg",
        b"pct:0,0,50,50/256,/0/default.jpg",
        b"0,0,256,256/256,/90/default.jpg",
        b"0,0,256,256/256,/!0/default.jpg",
        b"0,0,256,256/256,/0.0/default.jpg",
        b"0,0,256,256/256,/00/default.jpg",
        b"0,0,256,256/256,/0/color.jpg",
        b"0,0,256,256/256,/0/gray.jpg",
        b"0,0,256,256/256,/0/default.png",
        b"0,0,256,256/256,/0/default.jpeg",
        b"0,0,256,256/256,/0/default.JPG",
        b"0%2C0%2C256%2C256/256,/0/default.jpg",  # escaped: the endpoint decodes it first
        b"0,0,256,256/256%2C/0/default.jpg",
        b"0,0,256,256/256,/0/default%2Ejpg",
        b"0,0,256,256/256,/0/default.jpg/",
        b"0,0,256,256/256,/0/default.jpg?x",
        b"/0,0,256,256/256,/0/default.jpg",
        b"0,0,256,256/256,/0",
        b"0,0,256,256,/256,/0/default.jpg",
        b"0,0,256/256,/0/default.jpg",
        b" 0,0,256,256/256,/0/default.jpg",
        b"0,0,256,256/256,\n/0/default.jpg",
        b"\xd9\xa1,0,256,256/256,/0/default.jpg",
        b"",
    ],
)
@pytest.mark.parametrize("version", list(ApiVersion))
def test_every_other_spelling_is_left_to_the_grammar(params: bytes, version: ApiVersion) -> None:
    assert parse_tile_request(params, version) is None


_PIECES = [b"0", b"1", b"7", b"00", b"256", b"999999999", b"1000000000", b",", b",", b"/", b"/", b"^", b"!"]
_PIECES += [b".", b"default", b"color", b"jpg", b"png", b"max", b"full", b"pct:", b"%2C", b"%30", b"0.5", b"-1"]


@settings(max_examples=3000, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=24), version=st.sampled_from(list(ApiVersion)))
@example(pieces=[b"0", b",", b"0", b",", b"256", b",", b"256", b"/", b"256", b",", b"/", b"0", b"/"], version=V3)
def test_tile_parse_never_differs_from_the_grammar(pieces: list[bytes], version: ApiVersion) -> None:
    params = b"".join(pieces)
    for candidate in (params, params + b"default.jpg", params + b"/0/default.jpg"):
        parsed = parse_tile_request(candidate, version)
        assert parsed is None or parsed == _general(candidate, version)


_NUMBER = st.integers(min_value=0, max_value=999_999_999)
_POSITIVE = st.integers(min_value=1, max_value=999_999_999)


@settings(max_examples=1000, deadline=None)
@given(
    region=st.tuples(_NUMBER, _NUMBER, _POSITIVE, _POSITIVE),
    width=_POSITIVE,
    height=st.none() | _POSITIVE,
    version=st.sampled_from(list(ApiVersion)),
)
def test_every_plain_tile_spelling_is_parsed(
    region: tuple[int, int, int, int], width: int, height: int | None, version: ApiVersion
) -> None:
    params = "{},{},{},{}/{},{}/0/default.jpg".format(*region, width, "" if height is None else height).encode()
    parsed = parse_tile_request(params, version)
    assert parsed is not None
    assert parsed == _general(params, version)
