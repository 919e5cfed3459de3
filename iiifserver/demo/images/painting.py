"""``painting.tif``: an abstract oil painting (colour fields, shapes, brush strokes, craquelure, weave).

Owns: the painting's recipe. Must not know: files, pyramids, the other images.
"""

from __future__ import annotations

import math

import numpy as np
import pyvips

from iiifserver.demo.noise import fbm, grain, mix, streaks, upsampled


def painting(width: int, height: int, seed: int = 1100) -> pyvips.Image:
    """An abstract oil painting: colour fields, shapes, brush strokes, craquelure, canvas weave.

    Colour varies slowly, so it is composed at a quarter of the size and upsampled once; the
    texture that gives deep zoom its detail is made at full size and multiplied in.
    """
    scale = 4
    colour = _painting_colour(math.ceil(width / scale), math.ceil(height / scale), seed)
    colour = upsampled(colour, scale, width, height)
    relief = 1.0 + 0.09 * _paint_texture(width, height, seed + 10)
    cracks = _craquelure(width, height, seed + 20)
    return (colour * relief * (1.0 - 0.5 * cracks)).cast("uchar")


def _painting_colour(width: int, height: int, seed: int) -> pyvips.Image:
    """The painting's colour at low resolution, float sRGB: ochre-to-blue fields lit from the
    upper left, with soft shapes painted over them."""
    lightness = fbm(width, height, [512, 128, 32, 8], seed + 1)
    a = fbm(width, height, [512, 192, 48], seed + 2)
    b = fbm(width, height, [384, 128, 40], seed + 3)
    pillows = pyvips.Image.worley(width, height, cell_size=24, seed=seed + 4) / 12.0  # paint lifting
    xy = pyvips.Image.xyz(width, height)
    r2 = ((xy[0] - width * 0.45) ** 2 + (xy[1] - height * 0.4) ** 2) / ((width**2 + height**2) / 4.0)
    light = 1.0 - 0.22 * r2 + 0.06 * xy[0] / width
    big_l = (52 + 22 * lightness - 3 * pillows) * light
    ground = big_l.bandjoin([14 + 18 * a, 22 + 26 * b]).copy(interpretation="lab").colourspace("srgb")
    shapes, alpha = _soft_shapes(width, height, seed + 30, scale=2)
    return mix(ground, shapes, alpha).copy_memory()  # read by an upsampling kernel: compute once


def _paint_texture(width: int, height: int, seed: int) -> pyvips.Image:
    """Brush strokes in two directions, chosen by a slow field, plus weave and grain; about +-1."""
    across = streaks(width, height, seed, length=40)
    along = streaks(height, width, seed + 1, length=40).rot90()
    slow = fbm(math.ceil(width / 8), math.ceil(height / 8), [128, 32], seed + 2)
    direction = upsampled(slow, 8, width, height) > 0
    strokes = direction.ifthenelse(across, along)
    speckle = grain(width, height, seed + 3)
    return strokes * 0.6 + _weave(width, height) * 0.25 + speckle * 0.25


def _weave(width: int, height: int, period: int = 7) -> pyvips.Image:
    """Canvas weave: a small periodic tile, replicated (no per-pixel trigonometry)."""
    xy = pyvips.Image.xyz(period * 8, period * 8) * (360.0 / period)
    tile = (xy[0].sin() * xy[1].sin()).copy_memory()
    return tile.replicate(math.ceil(width / tile.width), math.ceil(height / tile.height)).crop(0, 0, width, height)


def _craquelure(width: int, height: int, seed: int) -> pyvips.Image:
    """Fine age cracks, 0..1: the zero crossings of a mid-frequency noise field."""
    field_ = fbm(width, height, [160, 40], seed, gain=0.35)
    return (field_.abs() < 0.018).ifthenelse(1.0, 0.0).gaussblur(0.5)


def _soft_shapes(
    width: int, height: int, seed: int, count: int = 70, scale: int = 8
) -> tuple[pyvips.Image, pyvips.Image]:
    """Soft-edged coloured discs and blocks (the composition) and their opacity, 0..0.6."""
    rng = np.random.default_rng(seed)
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    colours = pyvips.Image.black(w, h, bands=3)
    mask = pyvips.Image.black(w, h)
    for _ in range(count):
        colour = [int(c) for c in rng.integers(20, 236, size=3)]
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(w // 60 + 2, w // 8))
        if rng.random() < 0.6:
            colours = colours.draw_circle(colour, x, y, r, fill=True)
            mask = mask.draw_circle([255], x, y, r, fill=True)
        else:
            rh = int(rng.integers(r // 2, 2 * r))
            colours = colours.draw_rect(colour, x - r, y - rh // 2, 2 * r, rh, fill=True)
            mask = mask.draw_rect([255], x - r, y - rh // 2, 2 * r, rh, fill=True)
    colours = upsampled(colours.gaussblur(1.2), scale, width, height)
    alpha = upsampled(mask.gaussblur(2.0) * (0.6 / 255.0), scale, width, height).clamp(min=0.0, max=0.6)
    return colours, alpha
