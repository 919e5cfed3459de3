"""The stored JPEG tiles of a pyramid: what a passthrough needs to know of each level.

Owns: ``TileGrid`` (one level's tile layout, offsets, byte counts and the JPEG header its tiles
are spliced onto) and ``StoredTiles`` (a grid or None per pyramid level).
Must not know: how these are read from a file (``tiff_directory``), how a tile is spliced
(``jpeg_splice``) or served (``tile_files``, ``passthrough``).
"""

from __future__ import annotations

import array
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TileGrid:
    """One pyramid level whose stored JPEG tiles can be sent as they are.

    Not hashable (the offsets are arrays); compare with ``==``.
    """

    tile_width: int
    tile_height: int
    width: int  # the level's image size; tiles beyond it are padded
    height: int
    across: int  # tiles per row
    offsets: array.array[int]  # per tile, row-major; compact arrays (a gigapixel level has 15k tiles)
    bytecounts: array.array[int]
    header: bytes  # SOI [+ Adobe APP14] + the JPEGTables segments: emitted before the tile's stream
    components: int  # 1 (grey) or 3 (RGB or YCbCr)
    adobe_rgb: bool  # the header carries ADOBE_RGB, so a tile's own APP14 is dropped, not doubled
    quality: int  # IJG quality whose luminance table the tables match best (1..100), 0 if unknown
    max_tile_bytes: int  # larger byte counts are corrupt: never allocate for them

    @property
    def tile_count(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True, slots=True)
class StoredTiles:
    """Per level of ``SourceInfo.levels`` (same index): its passthrough grid, or None."""

    levels: tuple[TileGrid | None, ...]

    @property
    def has_passthrough(self) -> bool:
        return any(grid is not None for grid in self.levels)
