"""The IIIF Image API request grammar, both directions.

Owns: turning the raw URL segments of an image request into a frozen ``ImageRequest``
(and back), identifier percent-decoding, and the number syntax of spec section 4.7.
Must not know: images, files, limits or HTTP. Everything that depends on the image
(region inside the image, upscaling, limits) is checked by ``planner.py``.

Numbers are parsed with ASCII-only regular expressions, never ``int()``/``float()`` on raw
input: those accept Arabic-Indic digits, ``+5``, `` 7 ``, ``1_000``, ``nan`` and ``1e9``.
Fractions are kept as ``Decimal`` so that formatting them back is exact.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from urllib.parse import quote, unquote_to_bytes

from iiifserver.errors import BadRequest, URITooLong


class ApiVersion(Enum):
    V2 = "2"
    V3 = "3"


class RegionKind(Enum):
    FULL = "full"
    SQUARE = "square"
    PIXELS = "pixels"
    PERCENT = "percent"


class SizeKind(Enum):
    MAX = "max"
    FULL = "full"  # Image API 2.1 only
    WIDTH = "w,"
    HEIGHT = ",h"
    EXACT = "w,h"
    CONFINED = "!w,h"
    PERCENT = "pct:n"


class Quality(Enum):
    DEFAULT = "default"
    COLOR = "color"
    GRAY = "gray"
    BITONAL = "bitonal"


class Format(Enum):
    JPG = "jpg"
    PNG = "png"
    WEBP = "webp"
    TIF = "tif"
    GIF = "gif"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


_MEDIA_TYPES = {
    Format.JPG: "image/jpeg",
    Format.PNG: "image/png",
    Format.WEBP: "image/webp",
    Format.TIF: "image/tiff",
    Format.GIF: "image/gif",
}


@dataclass(frozen=True, slots=True)
class Region:
    kind: RegionKind
    # PIXELS: x, y, w, h as ints; PERCENT: as Decimals; unused otherwise.
    pixels: tuple[int, int, int, int] | None = None
    percent: tuple[Decimal, Decimal, Decimal, Decimal] | None = None


@dataclass(frozen=True, slots=True)
class Size:
    kind: SizeKind
    upscale: bool = False
    width: int | None = None
    height: int | None = None
    percent: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    mirror: bool
    degrees: Decimal

    @property
    def is_right_angle(self) -> bool:
        return self.degrees % 90 == 0


@dataclass(frozen=True, slots=True)
class ImageRequest:
    region: Region
    size: Size
    rotation: Rotation
    quality: Quality
    format: Format
    version: ApiVersion = ApiVersion.V3


# Identifiers longer than this (in UTF-8 bytes) are refused before any filesystem call.
MAX_IDENTIFIER_BYTES = 1024

# Bounded digit runs: int() raises ValueError beyond 4300 digits (a 500, not a 400), and no
# image needs more than a few; 64 still lets absurd sizes reach the planner's clamp or 400.
_DIGITS = r"[0-9]{1,64}"
_INT = _DIGITS
# Section 4.7: decimal digits and "." only. ".5" is tolerated (it canonicalises to 0.5).
_FLOAT = rf"(?:{_DIGITS}(?:\.{_DIGITS})?|\.{_DIGITS})"
_REGION_PX = re.compile(rf"({_INT}),({_INT}),({_INT}),({_INT})", re.ASCII)
_REGION_PCT = re.compile(rf"pct:({_FLOAT}),({_FLOAT}),({_FLOAT}),({_FLOAT})", re.ASCII)
_SIZE_W = re.compile(rf"({_INT}),", re.ASCII)
_SIZE_H = re.compile(rf",({_INT})", re.ASCII)
_SIZE_WH = re.compile(rf"({_INT}),({_INT})", re.ASCII)
_SIZE_CONFINED = re.compile(rf"!({_INT}),({_INT})", re.ASCII)
_SIZE_PCT = re.compile(rf"pct:({_FLOAT})", re.ASCII)
_ROTATION = re.compile(rf"(!?)({_FLOAT})", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def decode_identifier(raw: str | bytes) -> str:
    """Percent-decode one raw path segment exactly once, as strict UTF-8, NFC-normalised.

    ``%2F`` becomes ``/`` (sub-folders); a second round of decoding is never applied, so
    ``%252F`` stays the literal text ``%2F``. Control characters and invalid UTF-8 are refused.
    """
    raw_bytes = raw.encode("latin-1") if isinstance(raw, str) else raw
    if not raw_bytes:
        raise BadRequest("empty identifier", parameter="identifier")
    decoded = unquote_to_bytes(raw_bytes)
    if len(decoded) > MAX_IDENTIFIER_BYTES:
        raise URITooLong(f"identifier longer than {MAX_IDENTIFIER_BYTES} bytes", parameter="identifier")
    try:
        text = decoded.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("identifier is not valid UTF-8", parameter="identifier") from None
    if _CONTROL.search(text):
        raise BadRequest("identifier contains control characters", parameter="identifier")
    # One documented rule for composed/decomposed spellings: NFC everywhere.
    return unicodedata.normalize("NFC", text)


def encode_identifier(identifier: str) -> str:
    """Percent-encode an identifier for use as one URL path segment (section 9)."""
    return quote(identifier, safe="!$&'()*+,;=:-._~")


def parse_image_request(
    region: str, size: str, rotation: str, quality_format: str, version: ApiVersion = ApiVersion.V3
) -> ImageRequest:
    """Parse the four trailing segments of an image request. Raises ``BadRequest``."""
    quality, fmt = parse_quality_format(quality_format)
    return ImageRequest(
        region=parse_region(region),
        size=parse_size(size, version),
        rotation=parse_rotation(rotation),
        quality=quality,
        format=fmt,
        version=version,
    )


# The request deep-zoom viewers make most (OpenSeadragon, Leaflet-IIIF, hence Mirador and UV):
# a pixel region, "w," or "w,h", no rotation, default.jpg, spelled without leading zeros or
# percent-escapes. Nine digits bound every number far below int()'s limit.
_TILE_REQUEST = re.compile(
    rb"(0|[1-9][0-9]{0,8}),(0|[1-9][0-9]{0,8}),([1-9][0-9]{0,8}),([1-9][0-9]{0,8})"
    rb"/([1-9][0-9]{0,8}),([1-9][0-9]{0,8})?/0/default\.jpg"
)
_NO_ROTATION = Rotation(mirror=False, degrees=Decimal(0))


def parse_tile_request(params: bytes, version: ApiVersion = ApiVersion.V3) -> ImageRequest | None:
    """The raw ``region/size/rotation/quality.format`` of a plain tile request, parsed without
    the general grammar; None for any other spelling (``parse_image_request`` then decides).
    Whatever it parses, ``parse_image_request`` parses to the same ``ImageRequest``."""
    m = _TILE_REQUEST.fullmatch(params)
    if m is None:
        return None
    x, y, w, h, width, height = m.groups()
    size = (
        Size(SizeKind.WIDTH, width=int(width))
        if height is None
        else Size(SizeKind.EXACT, width=int(width), height=int(height))
    )
    region = Region(RegionKind.PIXELS, pixels=(int(x), int(y), int(w), int(h)))
    return ImageRequest(region, size, _NO_ROTATION, Quality.DEFAULT, Format.JPG, version)


def parse_region(text: str) -> Region:
    if text == "full":
        return Region(RegionKind.FULL)
    if text == "square":
        return Region(RegionKind.SQUARE)
    if m := _REGION_PX.fullmatch(text):
        x, y, w, h = (int(g) for g in m.groups())
        if w == 0 or h == 0:
            raise BadRequest(f"width and height must be greater than 0 in {text!r}", parameter="region")
        return Region(RegionKind.PIXELS, pixels=(x, y, w, h))
    if m := _REGION_PCT.fullmatch(text):
        px, py, pw, ph = (Decimal(g) for g in m.groups())
        if pw == 0 or ph == 0:
            raise BadRequest(f"width and height must be greater than 0 in {text!r}", parameter="region")
        if px >= 100 or py >= 100:
            raise BadRequest(f"region {text!r} lies outside the image", parameter="region")
        return Region(RegionKind.PERCENT, percent=(px, py, pw, ph))
    raise BadRequest(f"cannot parse {_show(text)}", parameter="region")


def parse_size(text: str, version: ApiVersion = ApiVersion.V3) -> Size:
    upscale = text.startswith("^")
    body = text[1:] if upscale else text
    if upscale and version is ApiVersion.V2:
        raise BadRequest("'^' (upscaling) is not part of Image API 2.1", parameter="size")
    if body == "max":
        return Size(SizeKind.MAX, upscale)
    if body == "full":
        if version is ApiVersion.V3:
            raise BadRequest("'full' is not a size in Image API 3.0; use 'max'", parameter="size")
        return Size(SizeKind.FULL)
    size: Size
    if m := _SIZE_W.fullmatch(body):
        size = Size(SizeKind.WIDTH, upscale, width=int(m[1]))
    elif m := _SIZE_H.fullmatch(body):
        size = Size(SizeKind.HEIGHT, upscale, height=int(m[1]))
    elif m := _SIZE_WH.fullmatch(body):
        size = Size(SizeKind.EXACT, upscale, width=int(m[1]), height=int(m[2]))
    elif m := _SIZE_CONFINED.fullmatch(body):
        size = Size(SizeKind.CONFINED, upscale, width=int(m[1]), height=int(m[2]))
    elif m := _SIZE_PCT.fullmatch(body):
        pct = Decimal(m[1])
        if pct == 0:
            raise BadRequest("pct:0 gives an empty image", parameter="size")
        if pct > 100 and not upscale and version is ApiVersion.V3:
            raise BadRequest(f"{text!r} upscales; Image API 3.0 requires '^pct:'", parameter="size")
        return Size(SizeKind.PERCENT, upscale, percent=pct)
    else:
        raise BadRequest(f"cannot parse {_show(text)}", parameter="size")
    if size.width == 0 or size.height == 0:
        raise BadRequest(f"{text!r} gives an empty image", parameter="size")
    return size


def parse_rotation(text: str) -> Rotation:
    m = _ROTATION.fullmatch(text)
    if not m:
        raise BadRequest(f"cannot parse {_show(text)}", parameter="rotation")
    degrees = Decimal(m[2])
    if degrees > 360:
        raise BadRequest(f"{text!r} is outside 0 to 360", parameter="rotation")
    return Rotation(mirror=bool(m[1]), degrees=degrees)


def parse_quality_format(text: str) -> tuple[Quality, Format]:
    quality_text, dot, format_text = text.rpartition(".")
    if not dot:
        raise BadRequest(f"expected quality.format, got {_show(text)}", parameter="format")
    try:
        quality = Quality(quality_text)
    except ValueError:
        raise BadRequest(f"unknown quality {_show(quality_text)}", parameter="quality") from None
    try:
        fmt = Format(format_text)
    except ValueError:
        raise BadRequest(f"unsupported format {_show(format_text)}", parameter="format") from None
    return quality, fmt


def format_decimal(value: Decimal) -> str:
    """Section 4.7 form: no exponent, no trailing zeros, a leading 0 below 1."""
    # Not normalize(): it rounds to the context's 28 digits, so the value would not round-trip.
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_region(region: Region) -> str:
    if region.kind is RegionKind.FULL:
        return "full"
    if region.kind is RegionKind.SQUARE:
        return "square"
    if region.kind is RegionKind.PIXELS:
        assert region.pixels is not None
        return ",".join(str(v) for v in region.pixels)
    assert region.percent is not None
    return "pct:" + ",".join(format_decimal(v) for v in region.percent)


def format_size(size: Size) -> str:
    prefix = "^" if size.upscale else ""
    match size.kind:
        case SizeKind.MAX:
            body = "max"
        case SizeKind.FULL:
            body = "full"
        case SizeKind.WIDTH:
            body = f"{size.width},"
        case SizeKind.HEIGHT:
            body = f",{size.height}"
        case SizeKind.EXACT:
            body = f"{size.width},{size.height}"
        case SizeKind.CONFINED:
            body = f"!{size.width},{size.height}"
        case SizeKind.PERCENT:
            assert size.percent is not None
            body = f"pct:{format_decimal(size.percent)}"
    return prefix + body


def format_rotation(rotation: Rotation) -> str:
    return ("!" if rotation.mirror else "") + format_decimal(rotation.degrees)


def format_image_request(request: ImageRequest) -> str:
    """The four trailing segments, as the request spelled them (not canonicalised)."""
    return "/".join(
        (
            format_region(request.region),
            format_size(request.size),
            format_rotation(request.rotation),
            f"{request.quality.value}.{request.format.value}",
        )
    )


def _show(text: str) -> str:
    """Quote client text for an error message, bounded and without control characters."""
    clipped = text if len(text) <= 40 else text[:40] + "..."
    return repr(_CONTROL.sub("?", clipped))
