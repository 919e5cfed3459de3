"""Texture building blocks of the demo images: fractal noise, grain, streaks, blends.

Owns: the seeded pyvips noise layers every generator combines, and the tricks that keep them
cheap (smooth octaves made small and upsampled once, replicated grain tiles, mirror tiling).
Must not know: any one demo image, files, IIIF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyvips

# Perlin octaves of 16 * COARSE_SHRINK pixels and more are made at 1/COARSE_SHRINK size.
COARSE_SHRINK = 8


def fbm(width: int, height: int, cells: Sequence[int], seed: int, gain: float = 0.55) -> pyvips.Image:
    """Fractal Perlin noise, float, roughly -1..1, one octave per cell size.

    Octaves of 128 pixels and more are smooth: they are made at 1/8 size (16+ pixels a
    cell), summed and upsampled once. Perlin itself is cheaper than an upsample, so smaller
    octaves are made at full size.
    """
    coarse: pyvips.Image | None = None
    total: pyvips.Image | None = None
    amplitude, weight = 1.0, 0.0
    for octave, cell in enumerate(cells):
        shrink = COARSE_SHRINK if cell >= 16 * COARSE_SHRINK else 1
        noise = (
            pyvips.Image.perlin(
                math.ceil(width / shrink),
                math.ceil(height / shrink),
                cell_size=max(2, round(cell / shrink)),
                seed=seed + 7919 * octave,
            )
            * amplitude
        )
        if shrink == 1:
            total = noise if total is None else total + noise
        else:
            coarse = noise if coarse is None else coarse + noise
        weight += amplitude
        amplitude *= gain
    if coarse is not None:
        coarse = upsampled(coarse, COARSE_SHRINK, width, height)
        total = coarse if total is None else total + coarse
    assert total is not None, "at least one octave"
    return total * (2.0 / weight)  # perlin is about +-0.5


def grain(width: int, height: int, seed: int, tile: int = 1000) -> pyvips.Image:
    """Fine Gaussian grain, sigma 1: one seeded tile, replicated.

    Full-size gaussnoise costs more than everything else in an image; grain repeating every
    1000 pixels (not a multiple of 256) is invisible under the other layers.
    """
    block = pyvips.Image.gaussnoise(tile, tile, sigma=1.0, mean=0.0, seed=seed).copy_memory()
    return block.replicate(math.ceil(width / tile), math.ceil(height / tile)).crop(0, 0, width, height)


def streaks(width: int, height: int, seed: int, length: int) -> pyvips.Image:
    """Brush-stroke or fibre-like horizontal streaks: Gaussian noise stretched along x."""
    noise = pyvips.Image.gaussnoise(
        math.ceil(width / length) + 2, math.ceil(height / 2) + 2, sigma=1.0, mean=0.0, seed=seed
    )
    return noise.resize(length, vscale=2, kernel="cubic").crop(0, 0, width, height)


def upsampled(image: pyvips.Image, factor: int, width: int, height: int) -> pyvips.Image:
    """Enlarge a low-resolution layer to width x height.

    Bilinear: everything made small here is smooth (16+ pixels a feature), and it is three
    times cheaper than bicubic.
    """
    return image.resize(factor, kernel="linear").crop(0, 0, width, height)


def mirror_tiled(block: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """Cover width x height with copies of block, every other one mirrored so seams match."""
    block = block.copy_memory()
    flipped_h = block.fliphor().copy_memory()
    variants = [block, flipped_h, block.flipver().copy_memory(), flipped_h.flipver().copy_memory()]
    across, down = math.ceil(width / block.width), math.ceil(height / block.height)
    parts = [variants[(i % 2) + 2 * (j % 2)] for j in range(down) for i in range(across)]
    return pyvips.Image.arrayjoin(parts, across=across).crop(0, 0, width, height)


def smoothstep(image: pyvips.Image, low: float, high: float) -> pyvips.Image:
    t = ((image - low) / (high - low)).clamp(min=0.0, max=1.0)
    return t * t * (3.0 - 2.0 * t)


def mix(a: pyvips.Image | Sequence[float], b: pyvips.Image | Sequence[float], t: pyvips.Image) -> pyvips.Image:
    """a where t is 0, b where t is 1 (t one band; a and b images or constant colours)."""
    return (1.0 - t) * _operand(a) + t * _operand(b)


def _operand(value: pyvips.Image | Sequence[float]) -> pyvips.Image | list[float]:
    return value if isinstance(value, pyvips.Image) else [float(v) for v in value]
