"""A crop's Y, Cb and Cr planes resampled to an output size, by lanczos3, before they are encoded.

Owns: where each output plane's samples lie on the crop's planes (a 4:2:0 chroma sample is
centred between two luma pixels each way, so its plane is resampled on its own grid, not the
luma's), the reduction each plane gets, and the call into the C extension (``_lanczos.c``) that
does the arithmetic.
Must not know: pyvips, files, tiles, plans beyond a crop box and an output size, HTTP.

Why: a region at another size than its level's (a cited detail at 800 pixels, a thumbnail, a
viewer's odd zoom) was decoded from its tiles to RGB, reduced by libvips' lanczos3 and encoded
back from RGB: every pixel's colour converted twice, the chroma upsampled only to be averaged
down again, three full-size bands reduced where 4:2:0 planes hold one and a half, and a libvips
pipeline built for each request. From the planes, the decoder's and the encoder's colour work
and half the resampling go. The kernel is libvips' (lanczos3 stretched by the reduction,
output centres where libvips' ``reduce`` places them, 14-bit fixed-point weights), each output
sample's weights computed at its exact position where libvips picks them from a table of
sub-pixel positions: a plane comes out within 2 levels of libvips' (mean 0.1-0.2) and within 1
of an exact computation. The chroma is resampled from the stored chroma rather than from its
upsampled and re-averaged copy (``test_plane_resize.py`` bounds the differences).
Only reductions of less than ``MAX_REDUCTION`` each way: beyond it libvips' ``resize`` first
shrinks by a box filter, a different picture.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from iiifserver.image import tile_codec
from iiifserver.image.planner import Box

_lanczos: ModuleType | None
try:  # the C extension (``_lanczos.c``), built at install time; without it libvips resamples
    from iiifserver.image import _lanczos  # type: ignore[attr-defined,no-redef,unused-ignore]
except ImportError:
    _lanczos = None

# libvips' ``resize`` is one lanczos3 ``reduce`` below this reduction on both axes, and so is
# the renderer's (``render.REDUCE_ALONE_BELOW``, the same figure for the same reason).
MAX_REDUCTION = 4.0


def available() -> bool:
    """Whether the C extension is built (else ``resized`` always answers None)."""
    return _lanczos is not None


def applies(crop_width: int, crop_height: int, width: int, height: int) -> bool:
    """Whether ``resized`` takes a ``crop_width`` x ``crop_height`` crop to ``width`` x ``height``:
    a reduction (or the same size) on both axes, by less than ``MAX_REDUCTION``, not both sizes
    kept (nothing to resample then)."""
    if _lanczos is None or width <= 0 or height <= 0 or (width, height) == (crop_width, crop_height):
        return False
    if width > crop_width or height > crop_height:
        return False  # an enlargement: the renderer's bicubic affine
    return crop_width / width < MAX_REDUCTION and crop_height / height < MAX_REDUCTION


def _axis(crop: int, output: int, input_factor: int, output_factor: int, start: int = 0) -> tuple[float, float]:
    """(origin, step) of one axis of a plane: output sample j centred on input sample
    ``origin + j * step``, for an input plane sampled every ``input_factor`` pixels of the level
    from the sample covering the crop's first pixel ``start``, and an output plane sampled every
    ``output_factor`` pixels of the output. Measured in pixels from the crop's first, output
    sample j's centre lies at (j + 1/2) * output_factor * crop / output, and input sample i's at
    (i + 1/2) * input_factor - (start mod input_factor): the stored chroma of a crop starting
    on an odd pixel begins half a sample before it."""
    step = output_factor * crop / (output * input_factor)
    return 0.5 * step - 0.5 + (start % input_factor) / input_factor, step


def resized(planes: tile_codec.Planes, crop: Box, width: int, height: int) -> tile_codec.Planes:
    """``planes`` of ``crop`` of a level, sampled as ``planes.sampling`` (chroma as stored, from
    the sample covering the crop's first pixel: ``tile_planes.crop_planes(centred=False)``),
    resampled to ``width`` x ``height`` and sampled the same way; ``applies`` must hold for the
    crop's size. Blocking (the GIL released while it computes)."""
    if _lanczos is None:
        raise RuntimeError("the _lanczos extension is not built")
    across, down = tile_codec.PLANE_SAMPLINGS.get(planes.sampling, (1, 1))
    out = []
    for index, plane in enumerate(planes.planes):
        factor_x, factor_y = (1, 1) if index == 0 else (across, down)
        target = np.empty((-(-height // factor_y), -(-width // factor_x)), dtype=np.uint8)
        x_origin, x_step = _axis(crop.w, width, factor_x, factor_x, crop.x)
        y_origin, y_step = _axis(crop.h, height, factor_y, factor_y, crop.y)
        _lanczos.resample(plane, target, x_origin, x_step, y_origin, y_step)
        out.append(target)
    return tile_codec.Planes(planes.sampling, tuple(out))
