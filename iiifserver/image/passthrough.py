"""The passthrough decision: which stored tile, if any, is exactly the response to a plan.

Owns: the conditions under which a plan shows a level's pixels as stored (JPEG out, unrotated,
unmirrored, the crop at its own size, the source's own colour, no ICC profile or alpha); mapping
a crop box onto one whole stored tile, or onto an edge tile's valid area (cut losslessly), or
one pixel short of the output (stretched).
Must not know: files, JPEG bytes, pyvips, HTTP (it sees a ``Plan`` and the ``StoredTiles``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iiifserver.image.planner import Box, Plan
from iiifserver.image.request import Format, Quality
from iiifserver.image.source_info import Colour, Level
from iiifserver.image.tile_grid import StoredTiles, TileGrid


def tile_for(grid: TileGrid, crop: Box) -> int | None:
    """The index of the stored tile that is exactly ``crop``, or None.

    Only whole tiles inside the level qualify: an edge tile's stored data is padded to the
    full tile size, so serving it would return the wrong pixel size (and the padding).
    """
    tw, th = grid.tile_width, grid.tile_height
    if crop.w != tw or crop.h != th or crop.x < 0 or crop.y < 0 or crop.x % tw or crop.y % th:
        return None
    if crop.x + tw > grid.width or crop.y + th > grid.height:
        return None
    return (crop.y // th) * grid.across + crop.x // tw


def passthrough_tile(stored: StoredTiles, levels: Sequence[Level], plan: Plan) -> tuple[TileGrid, int] | None:
    """The stored tile that is exactly what rendering ``plan`` would show, or None.

    ``levels`` are the ``SourceInfo.levels`` ``stored`` was built for. Requires a JPEG output of
    the crop at its own size, unrotated and unmirrored, in the source's own colour (grey from
    grey, colour from RGB: other qualities change the pixels), with no ICC profile to convert
    and no alpha to flatten.
    """
    grid = _eligible_grid(stored, levels, plan)
    if grid is None:
        return None
    index = tile_for(grid, plan.crop)
    return None if index is None else (grid, index)


@dataclass(frozen=True, slots=True)
class TileRef:
    """A stored tile that answers a request: whole, cut losslessly to its valid area (an edge
    tile), or stretched by the pixel a floor-rounded level lacks (``tile_stretch.stretched``)."""

    grid: TileGrid
    index: int
    width: int  # the part of the stored tile shown: the whole tile, or an edge tile's valid area
    height: int
    out_width: int  # the response: that part, or one pixel more each way
    out_height: int

    @property
    def is_edge(self) -> bool:
        return (self.width, self.height) != (self.grid.tile_width, self.grid.tile_height)

    @property
    def stretched(self) -> bool:
        return (self.out_width, self.out_height) != (self.width, self.height)

    @property
    def as_stored(self) -> bool:
        """The response is the stored tile's bytes as they are: neither cut nor stretched."""
        return not self.is_edge and not self.stretched


# Largest stored tile that is stretched rather than rendered: decoding and encoding one of
# 256 x 256 takes about half a millisecond, which is done where a lossless crop is.
STRETCH_MAX_TILE_PIXELS = 256 * 256


def stored_tile_for(
    stored: StoredTiles, levels: Sequence[Level], plan: Plan, *, edges: bool, stretch: bool = False
) -> TileRef | None:
    """``passthrough_tile``, plus (with ``edges``) the padded edge tiles whose valid area is the
    crop, plus (with ``stretch``) those where the output is the crop and one more column or row."""
    grid = _eligible_grid(stored, levels, plan, 1 if stretch else 0)
    if grid is None:
        return None
    out = (plan.width, plan.height)
    index = tile_for(grid, plan.crop)
    if index is not None:
        ref = TileRef(grid, index, grid.tile_width, grid.tile_height, *out)
    elif edges and (index := edge_tile_for(grid, plan.crop)) is not None:
        ref = TileRef(grid, index, plan.crop.w, plan.crop.h, *out)
    else:
        return None
    if ref.stretched and grid.tile_width * grid.tile_height > STRETCH_MAX_TILE_PIXELS:
        return None
    return ref


def edge_tile_for(grid: TileGrid, crop: Box) -> int | None:
    """The tile index when ``crop`` is exactly the valid (unpadded) part of an edge tile."""
    tw, th = grid.tile_width, grid.tile_height
    if crop.x < 0 or crop.y < 0 or crop.x % tw or crop.y % th:
        return None
    col, row = crop.x // tw, crop.y // th
    if col >= grid.across or row * grid.across + col >= len(grid.offsets):
        return None
    valid = (min(tw, grid.width - crop.x), min(th, grid.height - crop.y))
    if valid == (tw, th) or (crop.w, crop.h) != valid:
        return None
    return row * grid.across + col


def _eligible_grid(stored: StoredTiles, levels: Sequence[Level], plan: Plan, stretch: int = 0) -> TileGrid | None:
    """The stored grid of ``plan``'s level, when the plan shows its pixels as stored: at their
    own size (or up to ``stretch`` pixels more each way), unrotated, in their own colour."""
    if (
        plan.format is not Format.JPG
        or plan.degrees != 0
        or plan.mirror
        or not 0 <= plan.width - plan.crop.w <= stretch
        or not 0 <= plan.height - plan.crop.h <= stretch
        or plan.source_has_icc
        or plan.source_has_alpha
    ):
        return None
    grid = level_grid(stored, levels, plan.level)
    if grid is None:
        return None
    if grid.components == 3:
        wanted = plan.source_colour is Colour.RGB and plan.quality is Quality.COLOR
    else:
        wanted = plan.source_colour is Colour.GRAY and plan.quality is Quality.GRAY
    return grid if wanted else None


def level_grid(stored: StoredTiles, levels: Sequence[Level], level: Level) -> TileGrid | None:
    """The stored-tile grid of ``level`` (one of ``levels``, the ``SourceInfo.levels`` ``stored``
    was built for), or None: not JPEG tiles that can be sent or decoded as they are."""
    try:
        return stored.levels[levels.index(level)]
    except (ValueError, IndexError):
        return None
