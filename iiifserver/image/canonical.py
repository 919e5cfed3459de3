"""Canonical form of an image request (Image API 3.0 section 4.8, 2.1 section 4.7).

Owns: formatting a ``Resolved`` request as the canonical ``region/size/rotation/quality.format``
path of either API version. Equivalent spellings (``000,0,512,512``, ``pct:50.0``, ``0,0,W,H``)
yield one canonical path, which is what the ``Link: rel=canonical`` header names and what the
cache key is built from.
Must not know: images, files, HTTP.
"""

from __future__ import annotations

from decimal import Decimal

from iiifserver.image.planner import Resolved, round_half_up
from iiifserver.image.request import ApiVersion, format_decimal


def canonical_path(resolved: Resolved, version: ApiVersion) -> str:
    """``region/size/rotation/quality.format`` in the canonical form of ``version``."""
    return "/".join(
        (
            canonical_region(resolved),
            canonical_size(resolved, version),
            canonical_rotation(resolved),
            f"{resolved.quality.value}.{resolved.format.value}",
        )
    )


def canonical_region(resolved: Resolved) -> str:
    if resolved.is_full_region:
        return "full"
    box = resolved.region
    return f"{box.x},{box.y},{box.w},{box.h}"


def canonical_size(resolved: Resolved, version: ApiVersion) -> str:
    w, h = resolved.width, resolved.height
    if version is ApiVersion.V2:
        box = resolved.region
        if (w, h) == (box.w, box.h):
            return "full"
        # 2.1: "w," when the aspect ratio is kept (by our rounding rule), else "w,h".
        if round_half_up(Decimal(box.h * w) / box.w) == h:
            return f"{w},"
        return f"{w},{h}"
    prefix = "^" if resolved.upscaled else ""
    if resolved.is_max:
        return f"{prefix}max"
    return f"{prefix}{w},{h}"


def canonical_rotation(resolved: Resolved) -> str:
    return ("!" if resolved.mirror else "") + format_decimal(resolved.degrees)
