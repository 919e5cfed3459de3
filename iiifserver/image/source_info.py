"""What the server knows about one source image, as plain frozen values.

Owns: ``SourceVersion`` (which bytes on disk), ``Level`` (one pyramid level and where it is
stored in the TIFF) and ``SourceInfo`` (dimensions, levels, tiling, colour). ``probe.py``
fills them from file headers; the planner, canonicaliser and info.json builder read them.
Must not know: pyvips, HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class SourceVersion:
    """Identity of the bytes behind an identifier: a replaced or rewritten file changes it."""

    inode: int
    size: int
    mtime_ns: int

    @property
    def token(self) -> str:
        return f"{self.inode:x}-{self.size:x}-{self.mtime_ns:x}"


class SourceFormat(Enum):
    TIFF = "tiff"
    JPEG = "jpeg"
    PNG = "png"


class Colour(Enum):
    GRAY = "gray"
    RGB = "rgb"


@dataclass(frozen=True, slots=True)
class Level:
    """One resolution of the source. ``page``/``subifd`` say where libvips finds it."""

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
            factor = round(self.width / level.width)
            if factor > 0 and factor & (factor - 1) == 0 and factor not in factors:
                factors.append(factor)
        return tuple(factors) or (1,)
