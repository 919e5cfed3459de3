"""What the server knows about one source image, as plain frozen values.

Owns: ``SourceVersion`` (which bytes on disk, or in an object store), ``Level`` (one pyramid level and where it is
stored in the TIFF, or which JPEG 2000 resolution it is) and ``SourceInfo`` (dimensions, levels,
tiling, colour), and the compact encoding of a ``SourceInfo`` (``encode_source_info`` /
``decode_source_info``: versioned JSON, for the shared tier's facts). ``probe.py`` fills them
from file headers; the planner, canonicaliser and info.json builder read them.
Must not know: pyvips, HTTP, where encoded facts are stored.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class SourceVersion:
    """Identity of the bytes behind an identifier: a replaced or rewritten file changes it.

    The change time is part of it because the modification time is not enough: a file rewritten
    in place at the same size with its mtime set back (``touch -r``, ``rsync -t``, ``cp -p``) keeps
    inode, size and mtime, but the kernel moves its ctime on every write and no one can set it back.
    """

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    # An object's ETag (quoted, as its store sends it); "" for a file. An object's version is its
    # ETag, size and last-modified time (inode and ctime 0): a replaced object has a new ETag.
    etag: str = ""

    @classmethod
    def of(cls, st: os.stat_result) -> SourceVersion:
        """The version of a file from its ``stat``: the one place a version is built from a file."""
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @property
    def token(self) -> str:
        token = f"{self.inode:x}-{self.size:x}-{self.mtime_ns:x}-{self.ctime_ns:x}"
        return token + "-" + self.etag.strip('"') if self.etag else token


class SourceFormat(Enum):
    TIFF = "tiff"
    JPEG = "jpeg"
    PNG = "png"
    JP2 = "jp2"  # JPEG 2000 (.jp2, .j2k, .jpx): decoded by image/jp2.py, not libvips


class Colour(Enum):
    GRAY = "gray"
    RGB = "rgb"


@dataclass(frozen=True, slots=True)
class Level:
    """One resolution of the source. ``page``/``subifd`` say where libvips finds it in a TIFF; for
    JPEG 2000, ``page`` is the resolution reduction (the level is the image at 1/2**page)."""

    width: int
    height: int
    page: int = 0
    subifd: int = -1  # -1: the page's main image; n >= 0: its n-th SubIFD


@dataclass(frozen=True, slots=True)
class SourceInfo:
    width: int
    height: int
    levels: tuple[Level, ...]  # largest first; levels[0] is the full resolution
    tile_width: int  # native tile size; 0 for untiled (strip TIFF, JPEG, PNG) sources
    tile_height: int
    colour: Colour
    bands: int
    has_alpha: bool
    has_icc: bool
    format: SourceFormat
    compression: str = ""

    @property
    def is_tiled(self) -> bool:
        return self.tile_width > 0 and self.tile_height > 0

    def scale_factors(self) -> tuple[int, ...]:
        """Power-of-two scale factors with a stored level, for info.json ``tiles``."""
        factors: list[int] = []
        for level in self.levels:
            # The image halved k times, rounded down (libvips) or up (JPEG 2000): 1601 / 32 -> 51.
            factor = 1 << max(0, round(math.log2(self.width / level.width)))
            if level.width in (self.width // factor, -(-self.width // factor)) and factor not in factors:
                factors.append(factor)
        return tuple(factors) or (1,)


# --- encoding (for facts shared between instances) ------------------------------------------------

# Bump when SourceInfo or its meaning changes: entries written by other versions then fail to
# decode, and a failed decode is a miss (the caller probes the file itself).
SOURCE_INFO_FORMAT = 1
_FIELDS = frozenset(
    {"v", "width", "height", "levels", "tile_width", "tile_height", "colour", "bands", "has_alpha", "has_icc"}
    | {"format", "compression"}
)


def encode_source_info(info: SourceInfo) -> bytes:
    """``info`` as compact JSON; levels as ``[width, height, page, subifd]`` rows."""
    return orjson.dumps(
        {
            "v": SOURCE_INFO_FORMAT,
            "width": info.width,
            "height": info.height,
            "levels": [[level.width, level.height, level.page, level.subifd] for level in info.levels],
            "tile_width": info.tile_width,
            "tile_height": info.tile_height,
            "colour": info.colour.value,
            "bands": info.bands,
            "has_alpha": info.has_alpha,
            "has_icc": info.has_icc,
            "format": info.format.value,
            "compression": info.compression,
        }
    )


class UndecodableSourceInfo(ValueError):
    """Bytes that are not a ``SourceInfo`` of this encoding version."""


def decode_source_info(data: bytes) -> SourceInfo:
    """The ``SourceInfo`` that ``encode_source_info`` wrote; ``UndecodableSourceInfo`` for anything else.

    Strict, because the value comes from outside this process: another format version, a missing
    or extra field, a wrong type or an impossible value (levels not starting at the full size) is
    refused rather than trusted by the planner.
    """
    try:
        return _decode(orjson.loads(data))
    except UndecodableSourceInfo:
        raise
    except ValueError as exc:  # not JSON, an unknown colour or format
        raise UndecodableSourceInfo(str(exc)) from None


def _decode(raw: Any) -> SourceInfo:
    if not isinstance(raw, dict) or raw.keys() != _FIELDS:
        raise UndecodableSourceInfo("not an encoded SourceInfo")
    if raw["v"] != SOURCE_INFO_FORMAT or type(raw["v"]) is not int:
        raise UndecodableSourceInfo(f"SourceInfo encoding version {raw['v']!r}, not {SOURCE_INFO_FORMAT}")
    rows = raw["levels"]
    if not isinstance(rows, list) or not rows:
        raise UndecodableSourceInfo("levels must be a non-empty list")
    levels: list[Level] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 4:
            raise UndecodableSourceInfo("a level is [width, height, page, subifd]")
        width, height, page, subifd = (_int(value, minimum) for value, minimum in zip(row, (1, 1, 0, -1), strict=True))
        levels.append(Level(width, height, page, subifd))
    info = SourceInfo(
        width=_int(raw["width"], 1),
        height=_int(raw["height"], 1),
        levels=tuple(levels),
        tile_width=_int(raw["tile_width"], 0),
        tile_height=_int(raw["tile_height"], 0),
        colour=Colour(raw["colour"]),
        bands=_int(raw["bands"], 1),
        has_alpha=_bool(raw["has_alpha"]),
        has_icc=_bool(raw["has_icc"]),
        format=SourceFormat(raw["format"]),
        compression=_str(raw["compression"]),
    )
    if (levels[0].width, levels[0].height) != (info.width, info.height):
        raise UndecodableSourceInfo("the first level is not the full size")
    return info


def _int(value: Any, minimum: int) -> int:
    if type(value) is not int or value < minimum:  # bool is an int subclass: refused too
        raise UndecodableSourceInfo(f"expected an integer >= {minimum}, not {value!r}")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise UndecodableSourceInfo(f"expected a boolean, not {value!r}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise UndecodableSourceInfo(f"expected a string, not {value!r}")
    return value
