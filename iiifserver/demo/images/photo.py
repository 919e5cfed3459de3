"""``photo-p3.tif`` and the album photos: a colour chart and hue strip over a bokeh backdrop.

Owns: the photo's recipe, drawn in sRGB, and its Display P3 variant (converted, profile embedded).
Must not know: files, pyramids, the other images.
"""

from __future__ import annotations

import math

import numpy as np
import pyvips

from iiifserver.demo.noise import grain, streaks, upsampled

# The intended sRGB colours of the photo's colour chart, row by row: a classic 24-patch
# checker's values, except that the third row holds the sRGB primaries and secondaries at full
# saturation (the edges of the sRGB gamut, well inside P3's).
CHART = (
    (115, 82, 68),
    (194, 150, 130),
    (98, 122, 157),
    (87, 108, 67),
    (133, 128, 177),
    (103, 189, 170),
    (214, 126, 44),
    (80, 91, 166),
    (193, 90, 99),
    (94, 60, 108),
    (157, 188, 64),
    (224, 163, 46),
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (243, 243, 242),
    (200, 200, 200),
    (160, 160, 160),
    (122, 122, 121),
    (85, 85, 85),
    (52, 52, 52),
)


def photo_srgb(width: int, height: int, seed: int = 4400) -> pyvips.Image:
    """The photo as intended, in sRGB (uchar): colour chart and hue strip over a bokeh backdrop."""
    backdrop = _bokeh(width, height, seed)
    image = _colour_chart(backdrop, width, height, seed + 1)
    image = _hue_strip(image, width, height)
    noise = grain(width, height, seed + 2) * 2.0  # sensor noise
    return (image + noise).cast("uchar").copy(interpretation="srgb")


def photo_p3(width: int, height: int, seed: int = 4400) -> pyvips.Image:
    """photo_srgb converted to Display P3; the P3 profile is attached and tiffsave embeds it."""
    return photo_srgb(width, height, seed).icc_transform("p3", input_profile="srgb", intent="relative")


def _bokeh(width: int, height: int, seed: int, scale: int = 4) -> pyvips.Image:
    """Out-of-focus lights (soft-edged discs, added) on a dark gradient, float sRGB."""
    rng = np.random.default_rng(seed)
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / h)[..., np.newaxis]
    lights = (1.0 - t) * np.array([20.0, 30.0, 60.0], np.float32) + t * np.array([60.0, 30.0, 40.0], np.float32)
    for _ in range(90):
        colour = rng.choice([0.0, 60.0, 255.0], size=3).astype(np.float32)
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, 40))
        softness = r / 5.0 + 1.0
        box = np.s_[max(0, y - 2 * r) : y + 2 * r, max(0, x - 2 * r) : x + 2 * r]  # the disc and its edge
        disc = np.clip((r - np.hypot(xx[box] - x, yy[box] - y)) / softness + 0.5, 0.0, 1.0)
        lights[box] += disc[..., np.newaxis] * colour * float(rng.uniform(0.15, 0.45))
    return upsampled(pyvips.Image.new_from_array(lights), scale, width, height)


def _colour_chart(image: pyvips.Image, width: int, height: int, seed: int) -> pyvips.Image:
    """A 6x4 chart on a black card with a soft shadow; the patches have a fine fabric texture."""
    patch, gap = width // 14, width // 120
    card_w, card_h = 6 * (patch + gap) + gap, 4 * (patch + gap) + gap
    x0, y0 = (width - card_w) // 2, height // 8
    card = np.empty((card_h, card_w, 3), dtype=np.uint8)
    card[:] = (24, 24, 26)
    for i, colour in enumerate(CHART):
        x, y = gap + (i % 6) * (patch + gap), gap + (i // 6) * (patch + gap)
        card[y : y + patch, x : x + patch] = colour
    weave = streaks(card_w, card_h, seed, length=6) * 2.0
    card_image = pyvips.Image.new_from_array(card) + weave
    image = image * (1.0 - 0.6 * _shadow(width, height, (x0 + 25, y0 + 30, card_w, card_h)))
    return image.insert(card_image, x0, y0)


def _shadow(width: int, height: int, box: tuple[int, int, int, int], scale: int = 4) -> pyvips.Image:
    """A soft drop shadow of a box, 0..1, made at 1/scale size."""
    x, y, w, h = (v // scale for v in box)
    small = (pyvips.Image.black(w, h) + 1.0).embed(x, y, math.ceil(width / scale), math.ceil(height / scale))
    return upsampled(small.gaussblur(4.5), scale, width, height)


def _hue_strip(image: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """A hue sweep (left to right) fading to white (bottom), across the lower part."""
    top, strip_h = int(height * 0.72), int(height * 0.2)
    left, strip_w = width // 12, width - width // 6
    xy = pyvips.Image.xyz(strip_w, strip_h)
    hue = xy[0] * (255.0 / strip_w)
    saturation = 255.0 - xy[1] * (200.0 / strip_h)
    hsv = hue.bandjoin([saturation, pyvips.Image.black(strip_w, strip_h) + 250.0])
    rgb = hsv.cast("uchar").copy(interpretation="hsv").colourspace("srgb").cast("float")
    return image.insert(rgb, left, top)
