"""All geometry of an image request, before any pixel is touched.

Owns: resolving an ``ImageRequest`` against the image's dimensions and the server limits
(region box, output size, upscaling, rotation bounding box) into a ``Resolved`` request, and
turning that into a ``Plan`` for the renderer (which pyramid level, which crop box there) with
its cost: the pixels libvips must decode, and whether that makes it heavy work.
Every image-dependent error is raised here; the renderer never validates.
Must not know: pyvips, files, HTTP.

Rounding (the spec leaves it to the implementation): derived dimensions round half up;
``!w,h`` never exceeds its box; percent regions round both edges so adjacent regions tile.

Limits apply to the image returned, that is after rotation (attack cases C04, C05): a rotated
image is its bounding box, up to twice the area at 45 degrees and the sides swapped at 90. An
explicit size whose rotated box is over a limit is a 400, like any size over the limits; ``max``,
``^max`` and ``!w,h`` are clamped so that the rotated box fits, as they are clamped to the limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from iiifserver.config import Limits
from iiifserver.errors import BadRequest, Forbidden, NotImplementedFeature
from iiifserver.image.request import (
    ApiVersion,
    Format,
    ImageRequest,
    Quality,
    RegionKind,
    SizeKind,
    format_size,
)
from iiifserver.image.source_info import Colour, Level, SourceInfo


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request with every image-dependent value computed: the canonical request's content."""

    region: Box  # in full-resolution pixels, inside the image
    width: int  # output size before rotation
    height: int
    upscaled: bool  # the output is larger than the region in some dimension
    is_max: bool  # the size is what ``max`` (or ``^max`` when upscaled) gives for this region
    mirror: bool
    degrees: Decimal  # 0 <= degrees < 360
    quality: Quality  # as requested (``default`` stays ``default``: it is part of the URL)
    render_quality: Quality  # what the pixels are: COLOR, GRAY or BITONAL
    format: Format
    image_width: int
    image_height: int

    @property
    def is_full_region(self) -> bool:
        return self.region == Box(0, 0, self.image_width, self.image_height)

    @property
    def output_size(self) -> tuple[int, int]:
        """Size of the returned image, after rotation."""
        return rotated_size(self.width, self.height, self.degrees)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the renderer does: crop ``crop`` from ``level``, scale to ``width`` x ``height``, ..."""

    level: Level
    crop: Box  # in the level's pixels
    width: int
    height: int
    mirror: bool
    degrees: Decimal
    quality: Quality  # COLOR, GRAY or BITONAL
    format: Format
    source_colour: Colour
    source_has_icc: bool
    source_has_alpha: bool
    # What libvips must decode for it, in pixels (``decode_pixels``), and whether that, the
    # output or a free rotation make it heavy work (``heavy``): the service runs heavy plans in
    # their own lane so that they cannot hold up the tiles of pyramids.
    decode_pixels: int = 0
    heavy: bool = False


# A plan is heavy beyond these: an output (after rotation) over 4 MP, or a decode over 4 MP.
# A 256 px tile of a pyramid decodes at most 4 stored tiles (512 x 512 for 256 px tiles). Cited
# regions up to 2048 px a side and pct:50 of a photograph stay in the tile lane: at 1 MP, 2.5 %
# of the mixed workload's requests queued behind one heavy thread for seconds (docs/performance.md).
HEAVY_OUTPUT_PIXELS = 4 * 1024 * 1024
HEAVY_DECODE_PIXELS = 4 * 1024 * 1024


def round_half_up(value: Decimal | float) -> int:
    return int(Decimal(value).to_integral_value(rounding=ROUND_HALF_UP))


def resolve(request: ImageRequest, info: SourceInfo, limits: Limits) -> Resolved:
    """Check ``request`` against the image and the limits; compute region and output size."""
    region = resolve_region(request, info.width, info.height)
    # The parser bounds degrees to 0..360; Decimal's % would round a long 359.99... up to 360.
    degrees = request.rotation.degrees
    if degrees >= 360:
        degrees -= 360
    width, height, upscaled, is_max = resolve_size(request, region, limits, degrees)
    check_lossless_area(request, width, height, degrees, limits)
    if request.quality is Quality.DEFAULT:
        render_quality = Quality.GRAY if info.colour is Colour.GRAY else Quality.COLOR
    else:
        render_quality = request.quality
    return Resolved(
        region=region,
        width=width,
        height=height,
        upscaled=upscaled,
        is_max=is_max,
        mirror=request.rotation.mirror,
        degrees=degrees,
        quality=request.quality,
        render_quality=render_quality,
        format=request.format,
        image_width=info.width,
        image_height=info.height,
    )


def resolve_region(request: ImageRequest, width: int, height: int) -> Box:
    region = request.region
    if region.kind is RegionKind.FULL:
        return Box(0, 0, width, height)
    if region.kind is RegionKind.SQUARE:
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side, side)
    if region.kind is RegionKind.PIXELS:
        assert region.pixels is not None
        x, y, w, h = region.pixels
        x1, y1 = x + w, y + h
    else:
        assert region.percent is not None
        px, py, pw, ph = region.percent
        # Round both edges, so that regions sharing an edge in percent share it in pixels.
        x = round_half_up(px * width / 100)
        y = round_half_up(py * height / 100)
        x1 = round_half_up((px + pw) * width / 100)
        y1 = round_half_up((py + ph) * height / 100)
    if x >= width or y >= height:
        raise BadRequest("region lies outside the image", parameter="region")
    # Partly outside: cropped at the image edge (section 4.1).
    box = Box(x, y, min(x1, width) - x, min(y1, height) - y)
    if box.w < 1 or box.h < 1:
        raise BadRequest("region is smaller than one pixel", parameter="region")
    return box


def max_size(width: int, height: int, limits: Limits) -> tuple[int, int]:
    """The largest size within the limits, keeping the aspect ratio (implementation note 4)."""
    w, h = width, height
    if limits.max_area < w * h:
        # floor(w * sqrt(maxArea / (w * h))) in exact integers (floats can land just below a whole
        # number): floor(sqrt(q)) == isqrt(floor(q)).
        w, h = max(1, math.isqrt(limits.max_area * w // h)), max(1, math.isqrt(limits.max_area * h // w))
    if limits.max_width < w:
        w, h = limits.max_width, max(1, round_half_up(Decimal(height * limits.max_width) / width))
    if limits.max_height < h:
        h, w = limits.max_height, max(1, round_half_up(Decimal(width * limits.max_height) / height))
    if w * h > limits.max_area:
        # Re-deriving the short side from the aspect ratio (rounded half up, at least 1 px) can
        # overshoot maxArea, and ``max`` must never be refused: floor the short side instead.
        if w >= h:
            h = max(1, limits.max_area // w)
            w = min(w, limits.max_area // h)
        else:
            w = max(1, limits.max_area // h)
            h = min(h, limits.max_area // w)
    return w, h


def upscaled_max_size(width: int, height: int, limits: Limits) -> tuple[int, int]:
    """``^max``: the region scaled (up or down) to the largest size within the limits."""
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_area:
        return max_size(width, height, limits)  # no upscaling possible: exactly ``max``
    # Find the binding limit with exact fractions and meet it exactly: truncating
    # width * (maxWidth / width) could miss it by one (3 px * 333.33... -> 999, not 1000).
    by_width = Fraction(limits.max_width, width)
    by_height = Fraction(limits.max_height, height)
    if Fraction(limits.max_area, width * height) < min(by_width, by_height) ** 2:
        w, h = math.isqrt(limits.max_area * width // height), math.isqrt(limits.max_area * height // width)
    elif by_width <= by_height:
        w, h = limits.max_width, round_half_up(Decimal(height * limits.max_width) / width)
    else:
        w, h = round_half_up(Decimal(width * limits.max_height) / height), limits.max_height
    return max_size(max(1, w), max(1, h), limits)  # guard against rounding past a limit


def resolve_size(
    request: ImageRequest, region: Box, limits: Limits, degrees: Decimal = Decimal(0)
) -> tuple[int, int, bool, bool]:
    """Output (width, height, upscaled, is_max) before rotation by ``degrees``. Raises 400 / 501.

    The image rotated by ``degrees`` must be within the limits too: clamped sizes are fitted to
    them, explicit ones refused.
    """
    size = request.size
    rw, rh = region.w, region.h
    v2 = request.version is ApiVersion.V2
    plain_max = max_size(rw, rh, limits)
    clamp = False  # max and !w,h are clamped to the limits; explicit sizes are refused
    match size.kind:
        case SizeKind.MAX | SizeKind.FULL:
            if size.upscale and limits.upscale_max_to_limits:
                w, h = upscaled_max_size(rw, rh, limits)
            else:
                w, h = plain_max
            clamp = True
        case SizeKind.WIDTH:
            assert size.width is not None
            w = size.width
            h = round_half_up(Decimal(rh * w) / rw)
        case SizeKind.HEIGHT:
            assert size.height is not None
            h = size.height
            w = round_half_up(Decimal(rw * h) / rh)
        case SizeKind.EXACT:
            assert size.width is not None
            assert size.height is not None
            w, h = size.width, size.height
        case SizeKind.CONFINED:
            assert size.width is not None
            assert size.height is not None
            # Fit the box even if that upscales: without '^' that is then refused below, as
            # both official validators expect for '!2000,3000' on a 1000x1000 image.
            w, h = _confined(rw, rh, size.width, size.height, may_upscale=True)
            clamp = True
        case SizeKind.PERCENT:
            assert size.percent is not None
            w = round_half_up(rw * size.percent / 100)
            h = round_half_up(rh * size.percent / 100)
    if clamp:
        w, h = max_size(w, h, limits)
        w, h = _fit_rotated(rw, rh, w, h, degrees, limits)
    if w < 1 or h < 1:
        raise BadRequest(f"size {_fmt(request)} gives an image smaller than one pixel", parameter="size")
    upscaled = w > rw or h > rh
    if upscaled:
        if not size.upscale and not v2:
            raise BadRequest(
                f"size {_fmt(request)} is larger than the region ({rw}x{rh}); "
                "Image API 3.0 requires the '^' prefix to upscale",
                parameter="size",
            )
        if not limits.allow_upscaling:
            raise NotImplementedFeature("upscaling is not enabled on this server", parameter="size")
    if w > limits.max_width or h > limits.max_height or w * h > limits.max_area:
        raise BadRequest(
            f"size {w}x{h} is larger than this server allows (maxWidth {limits.max_width}, "
            f"maxHeight {limits.max_height}, maxArea {limits.max_area})",
            parameter="size",
        )
    out_w, out_h = rotated_size(w, h, degrees)
    if not within(out_w, out_h, limits):
        raise BadRequest(
            f"size {w}x{h} rotated by {degrees} degrees is {out_w}x{out_h}, larger than this server allows "
            f"(maxWidth {limits.max_width}, maxHeight {limits.max_height}, maxArea {limits.max_area})",
            parameter="rotation",
        )
    # ``max`` and ``^max`` are the canonical names of these two sizes (section 4.8).
    # ``^max`` names the upscaled size only where ``^max`` requests it (upscale_max_to_limits).
    is_max = (w, h) == plain_max or (
        upscaled and limits.upscale_max_to_limits and (w, h) == upscaled_max_size(rw, rh, limits)
    )
    return w, h, upscaled, is_max


# Formats a full-size copy in which is an exact copy of the master: what download terms limit.
LOSSLESS_FORMATS = frozenset({Format.PNG, Format.TIF})


def check_lossless_area(request: ImageRequest, width: int, height: int, degrees: Decimal, limits: Limits) -> None:
    """Refuse (403) a lossless output larger than ``limits.max_lossless_pixels`` (0: no such limit).

    A policy on top of the size limits, kept out of ``resolve_size``: info.json cannot say it (its
    limits are per image, not per format), so ``max`` is never made smaller for it; a client that
    asks too much is told to pick a lossy format or a smaller size.
    """
    cap = limits.max_lossless_pixels
    if cap <= 0 or request.format not in LOSSLESS_FORMATS:
        return
    out_w, out_h = rotated_size(width, height, degrees)
    if out_w * out_h > cap:
        raise Forbidden(
            f"a {request.format.value} image of {out_w}x{out_h} pixels is larger than this server serves in "
            f"lossless formats ({cap} pixels); ask for jpg or webp, or a smaller size",
            parameter="format",
        )


def within(width: int, height: int, limits: Limits) -> bool:
    return width <= limits.max_width and height <= limits.max_height and width * height <= limits.max_area


def _fit_rotated(rw: int, rh: int, w: int, h: int, degrees: Decimal, limits: Limits) -> tuple[int, int]:
    """The largest size of at most ``w`` x ``h``, shaped like the ``rw`` x ``rh`` region, whose
    bounding box rotated by ``degrees`` is within the limits (``w`` x ``h`` when it already is).

    The box grows with either side, so a bisection over the long side finds it; the short side
    is derived as everywhere else (half up, at least 1 px). Sizes of 1 px that still do not fit
    are left for the caller's check to refuse.
    """
    if within(*rotated_size(w, h, degrees), limits):
        return w, h
    wide = w >= h

    def size(long: int) -> tuple[int, int]:
        if wide:
            return long, min(h, max(1, round_half_up(Decimal(rh * long) / rw)))
        return min(w, max(1, round_half_up(Decimal(rw * long) / rh))), long

    lo, hi = 1, w if wide else h  # size(lo) is the answer when nothing larger fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if within(*rotated_size(*size(mid), degrees), limits):
            lo = mid
        else:
            hi = mid - 1
    return size(lo)


def _confined(rw: int, rh: int, bw: int, bh: int, *, may_upscale: bool) -> tuple[int, int]:
    """The largest rw:rh-shaped size inside bw x bh (and inside rw x rh unless upscaling)."""
    if not may_upscale:
        bw, bh = min(bw, rw), min(bh, rh)
    if bw * rh <= bh * rw:  # width is the binding side
        return bw, max(1, min(bh, round_half_up(Decimal(rh * bw) / rw)))
    return max(1, min(bw, round_half_up(Decimal(rw * bh) / rh))), bh


def rotated_size(width: int, height: int, degrees: Decimal) -> tuple[int, int]:
    """Bounding box of a rotated ``width`` x ``height`` image (implementation note 5)."""
    d = degrees % 360
    if d % 180 == 0:
        return width, height
    if d % 90 == 0:
        return height, width
    rad = math.radians(float(d))
    c, s = abs(math.cos(rad)), abs(math.sin(rad))
    return max(1, round(width * c + height * s)), max(1, round(height * c + width * s))


def plan(resolved: Resolved, info: SourceInfo) -> Plan:
    """Pick the smallest pyramid level that still has the requested resolution, and crop there."""
    region = resolved.region
    level = choose_level(info, region, resolved.width, resolved.height)
    sx = level_scale(info.width, level.width)
    sy = level_scale(info.height, level.height)
    x0, x1 = _crop_span(region.x, region.w, sx, level.width)
    y0, y1 = _crop_span(region.y, region.h, sy, level.height)
    # A region that reaches the image's edge reaches the level's: a level rounded up (JPEG 2000's
    # are, 1601 -> 801) holds the edge in a last pixel that the rounding of the span can drop.
    if region.x + region.w == info.width:
        x1 = level.width
    if region.y + region.h == info.height:
        y1 = level.height
    crop = Box(x0, y0, x1 - x0, y1 - y0)
    decode = decode_pixels(info, level, crop)
    out_w, out_h = resolved.output_size
    heavy = out_w * out_h > HEAVY_OUTPUT_PIXELS or decode > HEAVY_DECODE_PIXELS or resolved.degrees % 90 != 0
    return Plan(
        level=level,
        crop=crop,
        width=resolved.width,
        height=resolved.height,
        mirror=resolved.mirror,
        degrees=resolved.degrees,
        quality=resolved.render_quality,
        format=resolved.format,
        source_colour=info.colour,
        source_has_icc=info.has_icc,
        source_has_alpha=info.has_alpha,
        decode_pixels=decode,
        heavy=heavy,
    )


def decode_pixels(info: SourceInfo, level: Level, crop: Box) -> int:
    """Pixels libvips decodes to produce ``crop`` of ``level``: the stored tiles it touches, or,
    for an untiled source, the whole level.

    A JPEG or PNG is decoded from its top down (and a random-access crop of one decodes it
    all); a strip TIFF is read whole strips at a time, and many (the 40 MP scans served under
    ``plain_max_pixels``) hold one strip: a 256 px tile of one costs as much as the whole image.
    """
    if not info.is_tiled:
        return level.width * level.height
    tw, th = info.tile_width, info.tile_height
    x0, y0 = crop.x // tw * tw, crop.y // th * th
    x1 = min(level.width, -(-(crop.x + crop.w) // tw) * tw)
    y1 = min(level.height, -(-(crop.y + crop.h) // th) * th)
    return (x1 - x0) * (y1 - y0)


def level_scale(full: int, level: int) -> float:
    """Full-resolution pixels per pixel of a level ``level`` pixels across, of an image ``full``.

    A level that is the image halved k times, rounded either way, is exactly 2**k: libvips
    floors each halving (8007 -> 1000 at 1/8, holding 8000 columns), so its pixel i is
    full-resolution pixels [8i, 8i + 8), and the fraction of a pixel the rounding dropped is
    missing at its far edge. Spreading it over the whole level (8007 / 1000) put tile
    boundaries up to a pixel off the stored grid at that end: those tiles were rendered instead
    of passed through, from content up to a level pixel away. Any other level: its own ratio.
    """
    ratio = full / level
    factor = 1 << max(0, round(math.log2(ratio)))
    return float(factor) if level in (full // factor, -(-full // factor)) else ratio


def _crop_span(start: int, length: int, scale: float, size: int) -> tuple[int, int]:
    """Level pixels [a, b) for full-resolution pixels [start, start + length); ``scale`` = full / level."""
    a = min(size - 1, round(start / scale))
    b = min(size, round((start + length) / scale))
    if b <= a:
        # Narrower than one level pixel: take the pixel that holds its centre, not the next one.
        a = min(size - 1, int((start + length / 2) / scale))
        b = a + 1
    return a, b


def choose_level(info: SourceInfo, region: Box, width: int, height: int) -> Level:
    """The smallest level at which the region is at least ``width`` x ``height`` pixels.

    Levels are often floor-rounded halves (12001 -> 6000) and viewers ask for ceil-rounded tile
    sizes (12000 / 64 = 187.5 -> 188 from the 187 px level), so a level that falls short of the
    output by up to one pixel still counts: the stretch is invisible, and decoding the level
    above would cost four times as much.
    """
    best = info.levels[0]
    for level in info.levels[1:]:
        level_w = region.w * level.width / info.width
        level_h = region.h * level.height / info.height
        if level_w + 1 >= width and level_h + 1 >= height and level.width < best.width:
            best = level
    return best


def _fmt(request: ImageRequest) -> str:
    return repr(format_size(request.size))
