"""The edge tile one pixel short of what viewers ask for: decoded, stretched by that pixel, encoded.

Owns: ``stretched`` (a stored tile's valid area stretched by at most one pixel each way and
encoded as the renderer encodes) and the stretch itself (``stretch_pixels``: linear, output
pixel centres on the source's pixel-centre grid, in fixed point).
Must not know: TIFF structure (``tiles`` hands over complete JPEGs), pyvips, HTTP, caching.

Why: libvips and most pyramid writers floor-round each halving (12000 / 64 = 187.5 -> 187 px),
while IIIF sizes round up, so viewers ask for the bottom-row and right-column tiles of such
levels one pixel taller or wider than stored (188 for the 187 px level). A whole libvips render
from a larger level cost 1-2 ms of CPU and a thread hop per tile, and a first view of an image
asks for several of them at once; this takes one tile of at most a few hundred kilobytes and a
fraction of a millisecond, in the calling thread.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from iiifserver.image.tile_codec import Encoding, TurboError, available, decode, encode_as


def stretched(
    jpeg: bytes, width: int, height: int, out_width: int, out_height: int, *, gray: bool, encoding: Encoding
) -> bytes | None:
    """The top-left ``width`` x ``height`` of a JPEG tile, stretched to ``out_width`` x
    ``out_height`` (at most one pixel more each way) and encoded with ``encoding``.

    The stretch puts output pixel centres on the source's pixel-centre grid, as the renderer's
    enlargement does (``render._upsize``), with linear weights where it has bicubic ones: over
    one added pixel the two differ by a level or two. None when libturbojpeg is not installed, or the tile does
    not decode cleanly (a warning, such as truncated data, counts): the caller renders instead,
    and damaged pixels never reach a response or a cache.
    """
    if not available() or not (0 <= out_width - width <= 1 and 0 <= out_height - height <= 1):
        return None
    try:
        decoded = decode(jpeg, gray=gray)
        if decoded.shape[0] < height or decoded.shape[1] < width:
            return None
        pixels = stretch_pixels(decoded[:height, :width], out_height, out_width)
        return encode_as(pixels, encoding)
    except TurboError:
        return None


# Fixed-point weights: 7 bits keep (difference x weight) inside int16, and a result within one
# level of the exact linear blend.
_WEIGHT_BITS = 7


def stretch_pixels(pixels: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """``pixels`` (rows x columns x channels) resampled to ``height`` x ``width``, each at most
    one more than it is: linear, output pixel centres on the source's pixel-centre grid, edges
    clamped (``ValueError`` for any other size).

    Growing n samples to n + 1, output sample i lies between input samples i - 1 and i (the
    first and last are the input's first and last), so each axis is one blend of two shifted
    views of the rows, in int16, without gathering by index: 0.1 ms for an added row and column
    of a 256-pixel RGB tile, where gathering took 0.3-0.8 ms. The weights and the arithmetic
    (7-bit fixed point, the same rounding) are those of the general resampler this replaced,
    so the pixels are the same (``tests/image/test_tile_stretch.py`` holds both).
    """
    rows, columns, channels = pixels.shape
    if height not in (rows, rows + 1) or width not in (columns, columns + 1):
        raise ValueError(f"{columns}x{rows} cannot be stretched to {width}x{height}")
    flat = pixels.reshape(rows, columns * channels) if pixels.flags.c_contiguous else None
    if flat is None:
        flat = np.ascontiguousarray(pixels).reshape(rows, columns * channels)
    if height != rows:
        flat = _grow(flat, _weights(rows)[:, None], 1, axis=0)
    if width != columns:
        flat = _grow(flat, np.repeat(_weights(columns), channels), channels, axis=1)
    return flat.reshape(height, width, channels)


@functools.lru_cache(maxsize=64)
def _weights(n: int) -> npt.NDArray[np.int16]:
    """Growing n samples to n + 1: the fixed-point weight of input sample i in output sample i,
    for i = 1 .. n - 1 (the rest is input sample i - 1)."""
    position = np.clip((np.arange(n + 1, dtype=np.float64) + 0.5) * (n / (n + 1)) - 0.5, 0, n - 1)
    weight = np.rint((position - position.astype(np.intp)) * (1 << _WEIGHT_BITS)).astype(np.int16)
    weight.flags.writeable = False
    return weight[1:n]


def _grow(flat: npt.NDArray[np.uint8], weight: npt.NDArray[np.int16], step: int, axis: int) -> npt.NDArray[np.uint8]:
    """``flat`` with ``step`` more samples along ``axis`` (``step`` values per sample: 1 for
    rows, the channels for columns): the first and last kept, each one between the blend of its
    two neighbours in ``flat``."""
    n = flat.shape[axis]
    shape = list(flat.shape)
    shape[axis] += step

    def part(array: npt.NDArray[Any], start: int | None, stop: int | None) -> npt.NDArray[Any]:
        return array[start:stop] if axis == 0 else array[:, start:stop]

    out = np.empty(shape, dtype=np.uint8)
    part(out, None, step)[...] = part(flat, None, step)
    part(out, n, None)[...] = part(flat, n - step, None)
    low = part(flat, None, n - step)
    blend = np.subtract(part(flat, step, None), low, dtype=np.int16)
    blend *= weight
    blend += 1 << (_WEIGHT_BITS - 1)
    blend >>= _WEIGHT_BITS
    blend += low
    part(out, step, n)[...] = blend
    return out
