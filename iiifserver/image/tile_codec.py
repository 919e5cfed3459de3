"""libjpeg-turbo work on one stored JPEG tile that is almost the response.

Owns: cutting a padded edge tile to its valid area in the DCT domain (``lossless_crop``), and
the edge tile that is one pixel short of what viewers ask for (``stretched``): decoded, stretched
by that pixel and encoded again, without a libvips pipeline. Both take one tile of at most a
few hundred kilobytes and a fraction of a millisecond, in the calling thread.
Must not know: TIFF structure (``tiles`` hands over complete JPEGs), pyvips, HTTP, caching.

Why the stretch: libvips and most pyramid writers floor-round each halving (12000 / 64 = 187.5
-> 187 px), while IIIF sizes round up, so viewers ask for the bottom-row and right-column tiles
of such levels one pixel taller or wider than stored (188 for the 187 px level). A whole libvips
render from a larger level cost 1-2 ms of CPU and a thread hop per tile, and a first view of
an image asks for several of them at once.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# TurboJPEG constants (turbojpeg.h), as PyTurboJPEG names them.
_TJPF_RGB, _TJPF_GRAY = 0, 6
_TJSAMP_444, _TJSAMP_420, _TJSAMP_GRAY = 0, 2, 3
# The encoder defaults to the fast, less accurate forward DCT; libvips' jpegsave uses the
# accurate one, and a stretched tile should encode like a render.
_TJFLAG_ACCURATEDCT = 4096
# libvips' "auto" chroma subsampling: 4:4:4 from this quality up, else 4:2:0.
_AUTO_444_FROM_QUALITY = 90


@dataclass(frozen=True, slots=True)
class Encoding:
    """How responses are JPEG-encoded: the same settings as ``render.EncodeOptions``."""

    quality: int
    chroma_subsampling: bool  # 4:2:0 at every quality; False: 4:4:4 from Q90 (libvips' choice)

    def subsampling(self, gray: bool) -> int:
        if gray:
            return _TJSAMP_GRAY
        if self.chroma_subsampling or self.quality < _AUTO_444_FROM_QUALITY:
            return _TJSAMP_420
        return _TJSAMP_444


def available() -> bool:
    return _turbojpeg() is not None


@functools.cache
def _turbojpeg() -> Any:
    try:
        from turbojpeg import TurboJPEG  # PyTurboJPEG 1.x over Debian's libturbojpeg0 (2.x)

        return TurboJPEG()
    except (ImportError, OSError, RuntimeError):  # not installed: such tiles are rendered instead
        return None


def lossless_crop(jpeg: bytes, width: int, height: int) -> bytes | None:
    """The top-left ``width`` x ``height`` of a JPEG, cut in the DCT domain (as ``jpegtran -crop``):
    no decode, no re-encode. None when libturbojpeg is not installed or refuses the stream.

    The crop starts at the origin, which is on a block boundary, so the stored coefficients are
    kept as they are; decoders reproduce the stored pixels (with 4:2:0 chroma, the new right and
    bottom edge pixels may differ slightly: chroma upsampling no longer sees the cut-off pixels).
    """
    turbo = _turbojpeg()
    if turbo is None:
        return None
    try:
        result: bytes = turbo.crop(jpeg, 0, 0, width, height)
    except OSError:  # libturbojpeg refused the stream: the caller decodes it instead
        return None
    return result


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
    turbo = _turbojpeg()
    if turbo is None or not (0 <= out_width - width <= 1 and 0 <= out_height - height <= 1):
        return None
    pixel_format = _TJPF_GRAY if gray else _TJPF_RGB
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decoded = turbo.decode(jpeg, pixel_format=pixel_format)
        except OSError:
            return None
        if caught or decoded.shape[0] < height or decoded.shape[1] < width:
            return None
        pixels = stretch_pixels(decoded[:height, :width], out_height, out_width)
        try:
            encoded: bytes = turbo.encode(
                pixels,
                quality=encoding.quality,
                pixel_format=pixel_format,
                jpeg_subsample=encoding.subsampling(gray),
                flags=_TJFLAG_ACCURATEDCT,
            )
        except OSError:
            return None
    return None if caught else encoded


# Fixed-point weights: 7 bits keep (difference x weight) inside int16, and a result within one
# level of the exact linear blend.
_WEIGHT_BITS = 7


def stretch_pixels(pixels: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """``pixels`` (rows x columns x channels) resampled to ``height`` x ``width``: linear,
    output pixel centres on the source's pixel-centre grid, edges clamped.

    Works on rows of (columns x channels) values in int16, in place where it can: a float
    version of this took 0.4-0.7 ms for a 188 x 141 tile, mostly in page faults of its
    temporaries; this takes 0.03 ms for an added row of a 256-wide tile, 0.3 ms for both ways.
    """
    rows, columns, channels = pixels.shape
    flat = np.ascontiguousarray(pixels).reshape(rows, columns * channels)
    if height != rows:
        low, high, weight = _taps(rows, height)
        flat = _blend(flat, low, high, weight[:, None], axis=0)
    if width != columns:
        low, high, weight = _taps(columns, width)
        channel = np.arange(channels)
        flat = _blend(
            flat,
            (low[:, None] * channels + channel).ravel(),
            (high[:, None] * channels + channel).ravel(),
            np.repeat(weight, channels),
            axis=1,
        )
    return flat.reshape(height, width, channels)


def _taps(n: int, size: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.int16]]:
    """For each of ``size`` output samples over ``n`` input ones: the input below, the one
    above, and the weight of the one above (fixed point)."""
    position = np.clip((np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5, 0, n - 1)
    below = position.astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    weight = np.rint((position - below) * (1 << _WEIGHT_BITS)).astype(np.int16)
    return below, above, weight


def _blend(
    flat: npt.NDArray[np.uint8],
    low: npt.NDArray[np.intp],
    high: npt.NDArray[np.intp],
    weight: npt.NDArray[np.int16],
    axis: int,
) -> npt.NDArray[np.uint8]:
    base = np.take(flat, low, axis=axis).astype(np.int16)
    out = np.take(flat, high, axis=axis).astype(np.int16)
    out -= base
    out *= weight
    out += 1 << (_WEIGHT_BITS - 1)
    out >>= _WEIGHT_BITS
    out += base
    result: npt.NDArray[np.uint8] = out.astype(np.uint8)
    return result
