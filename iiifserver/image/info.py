"""SourceInfo -> info.json, for Image API 3.0 and (as an adapter) 2.1.

Owns: the image information documents: advertised limits, sizes, tiles, qualities, formats
and features, which must describe exactly what the planner and renderer accept.
Must not know: HTTP, files, pyvips.
"""

from __future__ import annotations

import math
from typing import Any

from iiifserver.config import Limits
from iiifserver.image.planner import max_size
from iiifserver.image.request import Format, Quality
from iiifserver.image.source_info import Colour, SourceInfo

CONTEXT_3 = "http://iiif.io/api/image/3/context.json"
CONTEXT_2 = "http://iiif.io/api/image/2/context.json"
PROTOCOL = "http://iiif.io/api/image"
PROFILE_3 = "http://iiif.io/api/image/3/level2.json"
PROFILE_2 = "http://iiif.io/api/image/2/level2.json"

# Untiled sources are advertised with this tile size; viewers then ask for bounded regions.
DEFAULT_TILE = 512

_EXTRA_FEATURES_3 = ("canonicalLinkHeader", "mirroring", "profileLinkHeader", "rotationArbitrary")
_SUPPORTS_2 = (
    "baseUriRedirect",
    "canonicalLinkHeader",
    "cors",
    "jsonldMediaType",
    "mirroring",
    "profileLinkHeader",
    "regionByPct",
    "regionByPx",
    "regionSquare",
    "rotationArbitrary",
    "rotationBy90s",
    "sizeByConfinedWh",
    "sizeByDistortedWh",
    "sizeByH",
    "sizeByPct",
    "sizeByW",
    "sizeByWh",
)


def tile_size(info: SourceInfo) -> tuple[int, int]:
    if info.is_tiled:
        return info.tile_width, info.tile_height
    return DEFAULT_TILE, DEFAULT_TILE


def scale_factors(info: SourceInfo) -> list[int]:
    """1, 2, 4, ... down to the scale at which the whole image fits in one tile.

    Levels missing from the file are still served (from the next larger level), so viewers
    get a full zoom range whatever tool wrote the pyramid.
    """
    tw, th = tile_size(info)
    factors = [1]
    while math.ceil(info.width / factors[-1]) > tw or math.ceil(info.height / factors[-1]) > th:
        factors.append(factors[-1] * 2)
    return factors


def sizes(info: SourceInfo, limits: Limits) -> list[dict[str, int]]:
    """Whole-image sizes cheap to serve (one per stored level), within the limits, smallest first."""
    out: list[dict[str, int]] = []
    for level in sorted(info.levels, key=lambda lv: lv.width):
        w, h = level.width, level.height
        if w <= limits.max_width and h <= limits.max_height and w * h <= limits.max_area:
            out.append({"width": w, "height": h})
    if not out:  # a single huge level: offer the largest size within the limits
        w, h = max_size(info.width, info.height, limits)
        out.append({"width": w, "height": h})
    return out


def qualities(info: SourceInfo) -> list[str]:
    if info.colour is Colour.GRAY:
        return [Quality.GRAY.value, Quality.BITONAL.value]
    return [Quality.COLOR.value, Quality.GRAY.value, Quality.BITONAL.value]


def extra_formats() -> list[str]:
    return [f.value for f in Format if f not in (Format.JPG, Format.PNG)]


def info_v3(service_id: str, info: SourceInfo, limits: Limits) -> dict[str, Any]:
    tw, th = tile_size(info)
    features = list(_EXTRA_FEATURES_3)
    if limits.allow_upscaling:
        features.append("sizeUpscaling")
    return {
        "@context": CONTEXT_3,
        "id": service_id,
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": "level2",
        "width": info.width,
        "height": info.height,
        "maxWidth": limits.max_width,
        "maxHeight": limits.max_height,
        "maxArea": limits.max_area,
        "sizes": sizes(info, limits),
        "tiles": [{"width": tw, "height": th, "scaleFactors": scale_factors(info)}],
        "preferredFormats": [Format.JPG.value],
        "extraFormats": extra_formats(),
        "extraQualities": qualities(info),
        "extraFeatures": sorted(features),
    }


def info_v2(service_id: str, info: SourceInfo, limits: Limits) -> dict[str, Any]:
    tw, th = tile_size(info)
    supports = list(_SUPPORTS_2)
    if limits.allow_upscaling:
        supports.append("sizeAboveFull")
    return {
        "@context": CONTEXT_2,
        "@id": service_id,
        "protocol": PROTOCOL,
        "width": info.width,
        "height": info.height,
        "sizes": sizes(info, limits),
        "tiles": [{"width": tw, "height": th, "scaleFactors": scale_factors(info)}],
        "profile": [
            PROFILE_2,
            {
                "formats": [f.value for f in Format],
                "qualities": [Quality.DEFAULT.value, *qualities(info)],
                "supports": sorted(supports),
                "maxWidth": limits.max_width,
                "maxHeight": limits.max_height,
                "maxArea": limits.max_area,
            },
        ],
    }
