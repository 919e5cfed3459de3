"""A crop of a JPEG-tiled pyramid level, assembled from the stored tiles it covers, decoded with libjpeg-turbo.

Owns: decoding only the stored tiles a crop covers (libjpeg-turbo, optionally with its DCT
scaling k/8) into one array cut exactly to the crop; choosing that scale (``scale_for``); the
per-process memory of decoded tiles (``DecodedTiles``, bounded in bytes, keyed by source
version). The grid of a level is the source registry's (``render`` is handed it): one per source
version, not read again here.
Must not know: pyvips (the renderer resamples and encodes what it is given), plans beyond a crop
box and an output size, HTTP, the tile cache of responses.

Why: libvips reads a crop of a JPEG-in-TIFF level through libtiff and a tile cache of its own;
decoding just the covered tiles here costs about two thirds of that, and tiles kept decoded cost
nothing for the next region nearby. DCT scaling is used only where it is both cheaper and exact
(``scale_for``): measured with libjpeg-turbo 2.1 on x86-64, the 5/8, 6/8 and 7/8 scalings decode
a tile 1.5-2x slower than full size (they have no SIMD code), and 1/2, 1/4, 1/8 only 15-30 %
faster (entropy decoding dominates); and a scaled crop must start and end on whole scaled
pixels, else the picture would shift by a fraction of a pixel. A tile that fails to read, splice
or decode cleanly (a libjpeg warning counts) raises ``MosaicError``: the caller renders the old
way, which reports damage as it always has.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from iiifserver.errors import SourceChanged
from iiifserver.image import tile_codec
from iiifserver.image.planner import Box
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.tile_files import open_checked, read_stored_tile
from iiifserver.image.tile_grid import TileGrid

# A mosaic larger than this (decoded, at its scale) is left to libvips, which streams: one
# array of the whole decode would make a big download hold hundreds of megabytes at once.
MAX_MOSAIC_PIXELS = 4 * 1024 * 1024


class MosaicError(ValueError):
    """A stored tile could not be read, spliced or decoded cleanly: render the old way."""


Kept = Callable[[int, Callable[[], Any]], Any]  # (tile index, its decode) -> the decoded tile
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Mosaic:
    """A crop decoded from its stored tiles at ``scale``/8: exactly the crop's pixels, scaled."""

    pixels: npt.NDArray[np.uint8]  # rows x columns x channels (1 or 3), C-contiguous
    scale: int  # k of k/8


@functools.cache
def scales() -> tuple[int, ...]:
    """The k of the k/8 scalings libturbojpeg offers (ascending); () without libturbojpeg."""
    offered = {(num * 8) // den for num, den in tile_codec.scaling_factors() if (num * 8) % den == 0}
    return tuple(sorted(k for k in offered if 1 <= k <= 8))


def _factor(k: int) -> tuple[int, int]:
    """k/8 as libturbojpeg names it: in lowest terms (6/8 is 3/4)."""
    common = math.gcd(k, 8)
    return k // common, 8 // common


# The DCT scalings worth using: 1/8, 1/4, 1/2 (k = 1, 2, 4) decode faster than full size;
# 3/8, 5/8, 6/8, 7/8 are as slow or slower (see the module docstring).
_FAST_SCALES = (1, 2, 4)
# A scaled decode is kept at least this many times the output: lanczos3 then makes the output
# from it, and the difference to lanczos3 from the full-size crop stays under a level.
_MARGIN = 2


def scale_for(grid: TileGrid, crop: Box, width: int, height: int) -> int:
    """The k (of k/8) to decode ``crop`` of ``grid``'s level at, for an output of ``width`` x ``height``.

    The smallest fast scaling whose scaled crop is still at least the output (so the resize
    that follows is a reduction, as from the full-size crop), falls on whole scaled pixels
    (each edge a multiple of 8/k: no sub-pixel shift), and stays clear of the 8 x 8 blocks that
    straddle the level's edge (a scaled pixel there would mix in the tile's padding); else 8.
    """
    if grid.tile_width % 8 or grid.tile_height % 8:
        return 8
    for k in _FAST_SCALES:
        step = 8 // k
        if (
            k not in scales()
            or crop.w * k < width * 8 * _MARGIN
            or crop.h * k < height * 8 * _MARGIN
            or crop.x % step
            or crop.y % step
            or crop.w % step
            or crop.h % step
            or crop.x + crop.w > grid.width // 8 * 8
            or crop.y + crop.h > grid.height // 8 * 8
        ):
            continue
        return k
    return 8


def assemble(
    read: Callable[[int], bytes],
    grid: TileGrid,
    crop: Box,
    scale: int,
    kept: Kept | None = None,
) -> Mosaic | None:
    """``crop`` of ``grid``'s level from the stored tiles it covers, each decoded at ``scale``/8.

    ``read(index)`` returns stored tile ``index`` as a complete JPEG (``read_stored_tile``);
    ``kept(index, decode)``, if given, returns tile ``index`` decoded, calling ``decode`` when it
    does not have it (``DecodedTiles.get``).
    None: this crop is not for a mosaic (too large, a tile size the scale does not divide).
    ``MosaicError``: a tile failed to read or decode cleanly.
    """
    tw, th = grid.tile_width, grid.tile_height
    if not tile_codec.available() or (tw * scale) % 8 or (th * scale) % 8 or crop.w <= 0 or crop.h <= 0:
        return None
    if crop.x < 0 or crop.y < 0 or crop.x + crop.w > grid.width or crop.y + crop.h > grid.height:
        return None
    step = 8 // scale
    if scale != 8 and (crop.x % step or crop.y % step or crop.w % step or crop.h % step):
        return None  # a scaled crop must fall on whole scaled pixels (``scale_for``)
    stw, sth = tw * scale // 8, th * scale // 8
    c0, c1 = crop.x // tw, (crop.x + crop.w - 1) // tw
    r0, r1 = crop.y // th, (crop.y + crop.h - 1) // th
    if (c1 - c0 + 1) * stw * (r1 - r0 + 1) * sth > MAX_MOSAIC_PIXELS:
        return None
    # The crop in the scaled level's pixels.
    x0, x1 = crop.x * scale // 8, (crop.x + crop.w) * scale // 8
    y0, y1 = crop.y * scale // 8, (crop.y + crop.h) * scale // 8
    channels = grid.components
    out = np.empty((y1 - y0, x1 - x0, channels), dtype=np.uint8)
    for row in range(r0, r1 + 1):
        top = row * sth  # this tile row's rows that the crop covers, in scaled level pixels
        a, b = max(y0, top), min(y1, top + sth)
        for col in range(c0, c1 + 1):
            left = col * stw
            c, d = max(x0, left), min(x1, left + stw)
            index = row * grid.across + col
            decode = functools.partial(_decode, read, index, channels == 1, scale, stw, sth)
            tile = decode() if kept is None else kept(index, decode)
            out[a - y0 : b - y0, c - x0 : d - x0] = tile[a - top : b - top, c - left : d - left]
    return Mosaic(out, scale)


def _decode(
    read: Callable[[int], bytes], index: int, gray: bool, scale: int, stw: int, sth: int
) -> npt.NDArray[np.uint8]:
    try:
        jpeg = read(index)
    except ValueError as exc:  # splice refused it: truncated, replaced or corrupt
        raise MosaicError(str(exc)) from None
    try:
        tile = tile_codec.decode(jpeg, gray=gray, scale=_factor(scale))
    except tile_codec.TurboError as exc:  # an error, or a warning (damage libjpeg would decode past)
        raise MosaicError(f"tile {index}: {exc}") from None
    if tile.shape[0] != sth or tile.shape[1] != stw:
        raise MosaicError(f"tile {index}: decoded {tile.shape[1]}x{tile.shape[0]}, not {stw}x{sth}")
    tile.flags.writeable = False  # it may be kept and shared: nobody writes into it
    return tile


Build = Callable[[Callable[[int], bytes], Kept | None], T]


def with_tiles(path: Path, version: SourceVersion | None, grid: TileGrid, variant: object, build: Build[T]) -> T:
    """``build(read, kept)`` with ``read(index)`` reading stored tile ``index`` from ``path``, which
    must be ``version`` before and after the reads (``SourceChanged`` otherwise; None: not checked,
    and no decoded tile is kept). Blocking.

    ``kept(index, decode)`` is tile ``index`` as ``decode()`` makes it, from ``decoded_tiles``
    when an earlier crop of the same version decoded it the same way (``variant``: the decoding,
    such as a DCT scale). The file is checked on its descriptor when opened (a replaced file) and
    again after the reads (one rewritten in place meanwhile moves its change time): then the
    tiles just kept are dropped, as they may hold the new bytes under the old version's key.
    """
    fd = open_checked(path, version) if version is not None else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    name = str(path)

    def kept(index: int, decode: Callable[[], Any]) -> Any:
        # A tile's offset in the file names it within a version (and its level with it).
        return decoded_tiles.get((name, version, grid.offsets[index], variant), decode)

    keep = version is not None and decoded_tiles.max_bytes > 0
    try:
        result = build(lambda index: read_stored_tile(fd, grid, index), kept if keep else None)
        if version is not None and SourceVersion.of(os.fstat(fd)) != version:
            decoded_tiles.forget(name, version)
            raise SourceChanged(name)
        return result
    except OSError as exc:  # a read failed: the old path decides what that means
        raise MosaicError(str(exc)) from None
    finally:
        os.close(fd)


def from_file(path: Path, version: SourceVersion | None, grid: TileGrid, crop: Box, scale: int) -> Mosaic | None:
    """``assemble`` reading the tiles from ``path`` (``with_tiles``). Blocking."""
    return with_tiles(path, version, grid, scale, lambda read, kept: assemble(read, grid, crop, scale, kept))


class Decoded(Protocol):
    """What ``DecodedTiles`` keeps: a decoded tile (an array, or ``tile_codec.Planes``), read-only."""

    @property
    def nbytes(self) -> int: ...


class DecodedTiles:
    """Recently decoded tiles, shared by the render threads of a process, bounded in bytes (LRU).

    Neighbouring regions and thumbnails of one image decode many of the same tiles: with
    64 MB (330 RGB tiles of 256 x 256), half the tiles of the benchmark's unaligned requests over
    one image are found here. Only tiles that decoded cleanly are kept; they are read-only.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._tiles: OrderedDict[tuple[object, ...], Decoded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], decode: Callable[[], Any]) -> Any:
        """The tile kept under ``key``, else ``decode()`` (outside the lock: threads decode in
        parallel; two decoding one tile at once both keep the same pixels). What ``decode`` makes
        must not be written to afterwards: other threads may be reading it."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
                self.hits += 1
                return tile
            self.misses += 1
        tile = decode()
        if tile.nbytes > self.max_bytes:
            return tile
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = tile
                self.nbytes += tile.nbytes
                while self.nbytes > self.max_bytes:
                    self.nbytes -= self._tiles.popitem(last=False)[1].nbytes
        return tile

    def forget(self, name: str, version: SourceVersion | None) -> None:
        """Drop the tiles of one file version (rewritten in place while they were read)."""
        with self._lock:
            for key in [key for key in self._tiles if key[:2] == (name, version)]:
                self.nbytes -= self._tiles.pop(key).nbytes

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max(0, max_bytes)
            while self.nbytes > self.max_bytes:
                self.nbytes -= self._tiles.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()
            self.nbytes = 0


DEFAULT_DECODED_BYTES = 64 * 1024 * 1024
decoded_tiles = DecodedTiles(DEFAULT_DECODED_BYTES)
