"""A crop of a JPEG-tiled level at its own size, as a JPEG assembled from the stored tiles' DCT blocks.

Owns: when a crop can be made that way (its corner on the tiles' MCU grid, the tiles sampled
as the response is to be, their quantisation tables the ones the encoder writes at
``jpeg_quality``), reading the tiles it covers, and calling the C extension ``_jpeg_blocks``
that copies their blocks into one JPEG (``crop_jpeg``): still entropy-coded where it can
(``splice``), else decoded to coefficients and coded again (``assemble``). Also an edge tile's
valid area cut that way (``edge_cut``).
Must not know: pyvips, plans beyond a crop box, HTTP, the tile cache of responses.

Why: ``full/max`` of a photograph, or a ``pct:50`` that the half-size level answers, is a crop
at its level's own size starting at 0,0. Decoding the tiles to planes and encoding those again
(``tile_planes``) runs an inverse and a forward DCT and quantises every block again, only to
write blocks that, at the stored quality, come out nearly as they were. Copying the quantised
blocks is what encoding at that quality gives minus that second rounding, so the response is
the stored image exactly, at about two thirds of the CPU (4000 x 3000 Q85: 52 instead of 80 ms,
AMD EPYC). ``assemble`` still decodes every block's Huffman codes to coefficients and encodes
them again; ``splice`` only parses the codes to find where each MCU starts and copies the runs
of MCUs the crop covers as they are, coding again just the first DC difference of each run
(the block before it changed): 26 instead of 45 ms for that photograph. It needs tiles whose
Huffman tables are the same (they are kept in the response), one baseline scan and no restart
markers; anything else is assembled.

Memory: the blocks of the whole crop are held at once, 2 bytes per sample (3 MB per megapixel
of 4:2:0 colour), so crops are bounded like ``tile_planes``' (``MAX_BLOCK_PIXELS``).

Without the extension (built from ``_jpeg_blocks.c`` at install time, needing a C compiler and
libjpeg's headers) ``crop_jpeg`` returns None and ``tile_planes`` makes every such crop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from iiifserver.image import jpeg_splice, tile_codec
from iiifserver.image.planner import Box
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.tile_grid import TileGrid
from iiifserver.image.tile_mosaic import Kept, MosaicError, with_tiles

_jpeg_blocks: ModuleType | None
try:
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined,no-redef,unused-ignore]
except ImportError:  # installed without a C compiler or libjpeg's headers
    _jpeg_blocks = None

# Covered tile area beyond which a crop is left to the other paths: the blocks of 28 MP of 4:2:0
# are 84 MB at once, for the largest output ``max_area`` allows by default (25 MP).
MAX_BLOCK_PIXELS = 28 * 1024 * 1024

# Luma samples per chroma sample, across and down, of each sampling a response may ask for.
_FACTORS: dict[int, tuple[int, int]] = {
    tile_codec.SAMPLING_420: (2, 2),
    tile_codec.SAMPLING_444: (1, 1),
    tile_codec.SAMPLING_GRAY: (1, 1),
}


def available() -> bool:
    """The extension was built: block-aligned crops are assembled from DCT blocks."""
    return _jpeg_blocks is not None


def covered(grid: TileGrid, crop: Box, sampling: int) -> tuple[int, int, int, int] | None:
    """(first column, first row, columns, rows) of the tiles ``crop`` covers, or None: its corner
    is not on the MCU grid of tiles sampled ``sampling``, or it is not for this path (outside the
    level, tiles not a whole number of MCUs, more than ``MAX_BLOCK_PIXELS`` of tiles)."""
    factors = _FACTORS.get(sampling)
    if factors is None or crop.w <= 0 or crop.h <= 0:
        return None
    mcu_w, mcu_h = 8 * factors[0], 8 * factors[1]
    tw, th = grid.tile_width, grid.tile_height
    if tw % mcu_w or th % mcu_h or crop.x % mcu_w or crop.y % mcu_h:
        return None
    if crop.x < 0 or crop.y < 0 or crop.x + crop.w > grid.width or crop.y + crop.h > grid.height:
        return None
    c0, r0 = crop.x // tw, crop.y // th
    columns = (crop.x + crop.w - 1) // tw - c0 + 1
    rows = (crop.y + crop.h - 1) // th - r0 + 1
    if columns * tw * rows * th > MAX_BLOCK_PIXELS:
        return None
    return c0, r0, columns, rows


def crop_jpeg(
    path: Path, version: SourceVersion | None, grid: TileGrid, crop: Box, *, quality: int, sampling: int
) -> bytes | None:
    """``crop`` of ``grid``'s level at its own size as a JPEG assembled from the stored tiles'
    blocks, or None: not for this path (no extension, see ``covered``, tiles coded otherwise
    than ``sampling`` or with other tables than libjpeg's at ``quality``). Blocking;
    ``SourceChanged`` and ``MosaicError`` (a tile unreadable, or refused or warned about by
    libjpeg) as ``tile_mosaic.from_file``.
    """
    if _jpeg_blocks is None or not jpeg_splice.may_be_quality(grid.quality, quality):
        return None  # (another quality: not one tile read for it, the planes read them next)
    span = covered(grid, crop, sampling)
    if span is None:
        return None
    c0, r0, columns, rows = span
    across, down = _FACTORS[sampling]
    extension = _jpeg_blocks

    def build(read: Callable[[int], bytes], kept: Kept | None) -> bytes | None:
        try:
            tiles = [read((r0 + row) * grid.across + c0 + column) for row in range(rows) for column in range(columns)]
        except ValueError as exc:  # splice refused a tile: truncated, replaced or corrupt
            raise MosaicError(str(exc)) from None
        geometry = {
            "tile_width": grid.tile_width,
            "tile_height": grid.tile_height,
            "columns": columns,
            "x": crop.x - c0 * grid.tile_width,
            "y": crop.y - r0 * grid.tile_height,
            "width": crop.w,
            "height": crop.h,
            "quality": quality,
            "h_factor": across,
            "v_factor": down,
        }
        try:
            # The coded blocks copied as they are where the tiles allow it, else decoded and
            # encoded again by libjpeg: the same blocks either way.
            result: bytes | None = extension.splice(tiles, **geometry)
            if result is None:
                result = extension.assemble(tiles, **geometry)
        except ValueError as exc:  # a tile libjpeg refuses or warns about, or that does not parse
            raise MosaicError(str(exc)) from None
        return result

    return with_tiles(path, version, grid, None, build)


# Sampling factors to try for an edge tile, by component count: 4:2:0 first (libvips' default for
# YCbCr pyramids), then 4:4:4. A sampling that does not match costs ``splice`` about 4 us to refuse.
_EDGE_FACTORS: dict[int, tuple[tuple[int, int], ...]] = {3: ((2, 2), (1, 1)), 1: ((1, 1),)}


def edge_cut(jpeg: bytes, grid: TileGrid, width: int, height: int) -> bytes | None:
    """The top-left ``width`` x ``height`` of one stored tile of ``grid`` (a complete JPEG, as
    ``jpeg_splice.splice_tile`` makes it), its MCUs copied as they are coded (``splice``).

    Why: the padded edge tiles of a level are cut to their valid area for every first view of
    an image; libjpeg-turbo's lossless crop (``tile_codec.lossless_crop``) decodes every block's
    codes and codes the kept ones again, 0.22 ms for a 256 x 256 tile where copying the kept MCUs
    takes 0.1 ms (Intel Xeon). The pixels are the same; where the cut ends inside an MCU (a
    4:2:0 tile cut to 40 rows) the MCU's blocks below the edge are kept as stored, where the crop
    codes them again, so the file is a few hundred bytes larger. None: not for this path (no
    extension, tables other than libjpeg's at the grid's quality, another sampling); the caller
    then cuts it with libjpeg-turbo. ``ValueError`` when the tile's data does not parse or ends
    as libjpeg would warn about.
    """
    if _jpeg_blocks is None or grid.quality == 0:
        return None
    for across, down in _EDGE_FACTORS.get(grid.components, ()):
        cut: bytes | None = _jpeg_blocks.splice(
            [jpeg],
            tile_width=grid.tile_width,
            tile_height=grid.tile_height,
            columns=1,
            x=0,
            y=0,
            width=width,
            height=height,
            quality=grid.quality,
            h_factor=across,
            v_factor=down,
        )
        if cut is not None:
            return cut
    return None
