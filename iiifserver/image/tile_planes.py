"""A crop of a JPEG-tiled level at the level's own size, as a JPEG made from the tiles' own samples.

Owns: decoding the stored tiles a crop covers to their Y, Cb and Cr planes (libjpeg-turbo, no
colour conversion, no chroma upsampling), cutting the crop's planes out of them, the chroma of a
crop that starts on an odd pixel, and encoding those planes (``crop_jpeg``).
Must not know: pyvips, plans beyond a crop box, HTTP, the tile cache of responses.

Why: a region asked at its level's own size (a detail cited at full resolution, ``full/max``, a
``pct:50`` that the half-size level answers) needs no resampling, yet decoding it to RGB and
encoding that again converts every pixel's colour twice and upsamples the chroma only to
average it down again. From the planes, the stored samples go straight to the encoder: per
256 x 256 tile of a 4:2:0 scan, decoding takes 0.16 instead of 0.21 ms and encoding 0.11 instead
of 0.19 ms (libjpeg-turbo 2.1, AMD EPYC), and no libvips pipeline is built.

Two ways to the planes, giving the same samples: with the C extension (``_jpeg_blocks.c``, built
at install time) all covered tiles are decoded in one call, each straight into the crop's
planes (``crop_planes_at_once``: no Python, no array per tile; 0.3 ms less of a cited region's
4.6 ms); without it, tile by tile through ``tile_codec`` (``crop_planes``). Both decode every
row of every tile and read each stream to its end: a tile's damage is mostly seen there.

Geometry: a 4:2:0 chroma sample covers two luma pixels each way, and tiles start on even pixels.
A crop starting on an even pixel takes the stored chroma samples as they are. One starting on
an odd pixel needs chroma centred between two stored samples: their mean, which is what the
RGB path's fancy upsampling followed by the encoder's 2 x 2 average gives there (the RGB path
also blurs the even case slightly: 1/8, 3/4, 1/8 across neighbours; this path does not).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt

from iiifserver.image import plane_resize, tile_codec
from iiifserver.image.planner import Box
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.tile_grid import TileGrid
from iiifserver.image.tile_mosaic import Kept, MosaicError, with_tiles

_jpeg_blocks: ModuleType | None
try:  # the C extension (``_jpeg_blocks.c``): without it, each tile is decoded through tile_codec
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined,no-redef,unused-ignore]
except ImportError:
    _jpeg_blocks = None

# Covered tile area beyond which a crop is left to the other paths: Y + 4:2:0 chroma of 28 MP is
# 42 MB at once, for the largest output ``max_area`` allows by default (25 MP) plus its edge tiles.
MAX_PLANAR_PIXELS = 28 * 1024 * 1024

Decode = Callable[[int], tile_codec.Planes]


def _span(start: int, length: int, factor: int) -> tuple[int, int, bool]:
    """(first sample, sample count, halves) of the chroma of luma pixels ``start`` .. + ``length``
    on one axis sampled every ``factor`` pixels: with ``halves``, one more sample is read and each
    output sample is the mean of two neighbours (a crop starting between stored samples)."""
    if factor == 1:
        return start, length, False
    count = -(-length // 2)
    odd = start % 2 == 1
    return start // 2, count + odd, odd


def _covered(grid: TileGrid, crop: Box) -> tuple[int, int, int, int] | None:
    """(first column, last column, first row, last row) of the tiles ``crop`` needs, or None:
    not for this path (a tile size the chroma does not divide, out of bounds, too large)."""
    tw, th = grid.tile_width, grid.tile_height
    if tw % 16 or th % 16 or crop.w <= 0 or crop.h <= 0:
        return None
    if crop.x < 0 or crop.y < 0 or crop.x + crop.w > grid.width or crop.y + crop.h > grid.height:
        return None
    c0, c1 = crop.x // tw, (crop.x + crop.w) // tw  # one tile further: an odd crop's last chroma
    r0, r1 = crop.y // th, (crop.y + crop.h) // th
    c1, r1 = min(c1, grid.across - 1), min(r1, len(grid.offsets) // grid.across - 1)
    if (c1 - c0 + 1) * tw * (r1 - r0 + 1) * th > MAX_PLANAR_PIXELS:
        return None
    return c0, c1, r0, r1


def _factors(sampling: int) -> list[tuple[int, int]]:
    """Luma pixels per sample, across and down, of each plane of ``sampling``."""
    if sampling == tile_codec.SAMPLING_GRAY:
        return [(1, 1)]
    return [(1, 1), *[tile_codec.PLANE_SAMPLINGS[sampling]] * 2]


Span = tuple[tuple[int, int, bool], tuple[int, int, bool]]  # across, down: ``_span``'s


def crop_planes(
    decode: Decode, grid: TileGrid, crop: Box, *, want: int | None = None, centred: bool = True
) -> tile_codec.Planes | None:
    """``crop`` of ``grid``'s level as planes sampled as the tiles are, from the stored tiles.

    ``decode(index)`` returns stored tile ``index``'s planes (``tile_codec.decode_planes``).
    ``want``: the sampling the caller can use; tiles sampled otherwise give None after the first.
    ``centred``: chroma of a crop starting on an odd pixel averaged to sit on the crop's own
    chroma grid, as an encoder needs it; without, the stored samples from the one before the
    crop's first pixel (a resampler places them itself: ``plane_resize``).
    None: not for this path (a tile size the chroma does not divide, out of bounds, too large).
    ``MosaicError``: a tile failed to read or decode, or its tiles are sampled unlike each other.
    """
    covered = _covered(grid, crop)
    if covered is None:
        return None
    c0, c1, r0, r1 = covered
    tw, th = grid.tile_width, grid.tile_height
    first = decode(r0 * grid.across + c0)
    sampling = first.sampling
    if want is not None and sampling != want:
        return None  # seen on the first tile: the others are not decoded for nothing
    factors = _factors(sampling)
    spans = [(_span(crop.x, crop.w, across), _span(crop.y, crop.h, down)) for across, down in factors]
    outs = [np.empty((ys[1], xs[1]), dtype=np.uint8) for xs, ys in spans]
    filled = [[0, 0] for _ in outs]  # columns, rows of each plane that tiles reached
    for row in range(r0, r1 + 1):
        for col in range(c0, c1 + 1):
            index = row * grid.across + col
            tile = first if index == r0 * grid.across + c0 else decode(index)
            if tile.sampling != sampling:
                raise MosaicError(f"tile {index}: sampled {tile.sampling}, the first tile {sampling}")
            for plane, out, ((x0, nx, _), (y0, ny, _)), (across, down), reach in zip(
                tile.planes, outs, spans, factors, filled, strict=True
            ):
                left, top = col * tw // across, row * th // down  # the tile's first sample
                a, b = max(y0, top), min(y0 + ny, top + plane.shape[0])
                c, d = max(x0, left), min(x0 + nx, left + plane.shape[1])
                if a < b and c < d:
                    out[a - y0 : b - y0, c - x0 : d - x0] = plane[a - top : b - top, c - left : d - left]
                    reach[0], reach[1] = max(reach[0], d - x0), max(reach[1], b - y0)
    return _finished(sampling, outs, spans, filled, centred)


def crop_planes_at_once(
    read: Callable[[int], bytes], grid: TileGrid, crop: Box, *, want: int, centred: bool = True
) -> tile_codec.Planes | None:
    """``crop_planes`` of the tiles ``read(index)`` returns, decoded by the C extension in one call
    (``_jpeg_blocks.crop_planes``: each tile decoded straight into the crop's planes, no Python
    per tile but the read). Every tile is decoded to its end, as ``crop_planes`` decodes it: a
    tile damaged from some point on can decode to wrong pixels without a warning until the end
    of its stream. The same planes, sample for sample; None as ``crop_planes`` (and when the
    extension is not built).
    """
    covered = _covered(grid, crop)
    if covered is None or _jpeg_blocks is None:
        return None
    c0, c1, r0, r1 = covered
    factors = _factors(want)
    spans = [(_span(crop.x, crop.w, across), _span(crop.y, crop.h, down)) for across, down in factors]
    outs = [np.empty((ys[1], xs[1]), dtype=np.uint8) for xs, ys in spans]
    tiles = [_read(read, row * grid.across + col) for row in range(r0, r1 + 1) for col in range(c0, c1 + 1)]
    h_factor, v_factor = factors[-1]
    geometry = [(xs[0], xs[1], ys[0], ys[1], *f) for (xs, ys), f in zip(spans, factors, strict=True)]
    try:
        reached = _jpeg_blocks.crop_planes(
            tiles,
            grid.tile_width,
            grid.tile_height,
            c1 - c0 + 1,
            c0,
            r0,
            len(factors),
            h_factor,
            v_factor,
            geometry,
            outs,
        )
    except ValueError as exc:  # libjpeg refused or warned, or the tiles disagree
        raise MosaicError(str(exc)) from None
    if reached is None:
        return None
    return _finished(want, outs, spans, [list(r) for r in reached], centred)


def _finished(
    sampling: int, outs: list[npt.NDArray[np.uint8]], spans: list[Span], filled: list[list[int]], centred: bool
) -> tile_codec.Planes:
    """The planes of a crop from its spans as the tiles filled them: the last sample repeated
    where a span reaches past the level, and (``centred``) chroma halfway between samples averaged."""
    planes = []
    for out, ((_, nx, half_x), (_, ny, half_y)), (columns, rows) in zip(outs, spans, filled, strict=True):
        # Past the level's last tile (a crop ending there that needs one more chroma sample):
        # the last stored sample repeated, as the decoder extends an image's edge.
        if columns < nx:
            out[:, columns:] = out[:, columns - 1 : columns]
        if rows < ny:
            out[rows:] = out[rows - 1 : rows]
        if half_x and centred:
            out = ((out[:, :-1].astype(np.uint16) + out[:, 1:] + 1) >> 1).astype(np.uint8)
        if half_y and centred:
            out = ((out[:-1].astype(np.uint16) + out[1:] + 1) >> 1).astype(np.uint8)
        planes.append(np.ascontiguousarray(out))
    return tile_codec.Planes(sampling, tuple(planes))


def _read(read: Callable[[int], bytes], index: int) -> bytes:
    try:
        return read(index)
    except ValueError as exc:  # splice refused it: truncated, replaced or corrupt
        raise MosaicError(str(exc)) from None


def crop_jpeg(
    path: Path,
    version: SourceVersion | None,
    grid: TileGrid,
    crop: Box,
    *,
    quality: int,
    sampling: int,
    size: tuple[int, int] | None = None,
) -> bytes | None:
    """``crop`` of ``grid``'s level as a JPEG sampled ``sampling``, from the stored tiles' planes:
    at its own size, or resampled to ``size`` (width, height; ``plane_resize.applies`` must hold),
    or None: not for this path (the tiles are sampled otherwise, or see ``crop_planes``).
    Blocking; ``SourceChanged`` and ``MosaicError`` as ``tile_mosaic.from_file``.
    """

    def build(read: Callable[[int], bytes], kept: Kept | None) -> tile_codec.Planes | None:
        # The planes are not kept in ``decoded_tiles``: crops at their own size (cited regions,
        # downloads) rarely share stored tiles, and keeping them cost about 7 % of a region's
        # render in the mixed workload (the memory of each decode fresh, never the last one's).
        centred = size is None  # a resampler places the stored chroma itself
        if _jpeg_blocks is not None:
            return crop_planes_at_once(read, grid, crop, want=sampling, centred=centred)
        return crop_planes(functools.partial(_decode, read), grid, crop, want=sampling, centred=centred)

    try:
        planes = with_tiles(path, version, grid, None, build)
    except _NotPlanar:
        return None
    if planes is None:
        return None
    if size is not None:
        planes = plane_resize.resized(planes, crop, *size)
    try:
        return tile_codec.encode_planes(planes, quality=quality)
    except tile_codec.TurboError as exc:
        raise MosaicError(str(exc)) from None


def _decode(read: Callable[[int], bytes], index: int) -> tile_codec.Planes:
    jpeg = _read(read, index)
    try:
        return tile_codec.decode_planes(jpeg)
    except tile_codec.NotPlanar:  # sound, but an RGB-coded or otherwise sampled stream: not ours
        raise _NotPlanar from None
    except tile_codec.TurboError as exc:  # an error, or a warning (damage libjpeg would decode past)
        raise MosaicError(f"tile {index}: {exc}") from None


class _NotPlanar(Exception):
    """A tile this path does not decode (``tile_codec.NotPlanar``): another path renders the crop."""
