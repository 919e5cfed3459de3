"""``large-panorama.tif``: mountain ranges at dusk, 105 megapixels.

Owns: the panorama's recipe: a low-resolution scene (sky, clouds, sun, ranges, haze) times one
fine texture block, mirror-tiled. Must not know: files, pyramids, the other images.
"""

from __future__ import annotations

import math

import pyvips

from iiifserver.demo.noise import fbm, grain, mirror_tiled, mix, smoothstep, streaks, upsampled

# The panorama's fine texture is rendered once at this size and mirror-tiled; 2000 and 1500
# are not multiples of 256, so block seams never line up with tile seams.
PANORAMA_BLOCK = (2000, 1500)


def panorama(width: int, height: int, seed: int = 2200) -> pyvips.Image:
    """Mountain ranges at dusk, very wide.

    The scene (sky, clouds, ranges, haze) is computed over the whole canvas at a quarter of
    the size and upsampled; the fine texture is one block rendered once and mirror-tiled.
    Multiplying the two gives detail at every zoom level with no two tiles alike, in a
    fraction of the time a full-size noise field would take.
    """
    factor = 4
    scene = _landscape(math.ceil(width / factor), math.ceil(height / factor), seed)
    scene = upsampled(scene, factor, width, height)
    detail = mirror_tiled(_detail_block(*PANORAMA_BLOCK, seed + 50), width, height)
    # Band 3 of the scene says how rough each place is (smooth sky, textured ground).
    return (scene[0:3] * (1.0 + detail * scene[3])).cast("uchar")


def _detail_block(width: int, height: int, seed: int) -> pyvips.Image:
    """Fine relative texture, about +-1: small-scale noise, grass-like streaks, grain."""
    fine = fbm(width, height, [48, 16, 5], seed, gain=0.7)
    grass = streaks(width, height, seed + 1, length=16)
    return fine * 0.6 + grass * 0.25 + grain(width, height, seed + 2) * 0.25


# Mountain ranges, far to near: colour, foot (fraction of the height), relief (same), haze
# (how much of the sky's colour mixes in), snow-capped, wooded.
RANGES = (
    ((150, 150, 185), 0.36, 0.22, 0.30, True, False),
    ((105, 110, 150), 0.46, 0.18, 0.22, True, False),
    ((70, 90, 90), 0.58, 0.12, 0.14, False, False),
    ((48, 70, 40), 0.72, 0.09, 0.06, False, True),
    ((34, 52, 26), 0.88, 0.07, 0.0, False, True),
)


def _landscape(width: int, height: int, seed: int) -> pyvips.Image:
    """The low-resolution scene: float sRGB 0..255 plus a roughness band (0.03 sky to 0.22 ground)."""
    y = pyvips.Image.xyz(width, height)[1]
    image = _sky(width, height, seed, y).bandjoin(0.03)
    haze = (215.0, 165.0, 150.0)
    # Each range shows in its own band of rows, so they can share one set of noise fields.
    texture = fbm(width, height, [256, 64, 16, 4], seed + 1, gain=0.6)
    gullies = _gullies(width, height, seed + 2)
    slopes = 1.0 + 0.18 * texture + 0.1 * gullies
    # Tree crowns: ridged noise, dark along the lines between crowns.
    crowns = 1.0 - 0.5 * pyvips.Image.perlin(width, height, cell_size=6, seed=seed + 3).abs()
    ragged = 20.0 * fbm(width, height, [64, 16], seed + 4) + 20.0 * gullies  # snowline, in pixels
    for index, (colour, foot, relief, hazing, snowy, wooded) in enumerate(RANGES):
        ridge = _ridge(width, foot * height, relief * height, seed + 10 * (index + 1)).zoom(1, height)
        below = y - ridge  # how far below the skyline, in pixels
        shade = slopes * crowns if wooded else slopes
        ground = shade * [c * (1.0 - hazing) + h * hazing for c, h in zip(colour, haze, strict=True)]
        if index < 3:  # valley mist: lighter towards the foot of the far ranges
            ground = mix(ground, haze, 0.45 * smoothstep(below, 0.08 * height, 0.35 * height))
        if snowy:  # snow on the peaks only, with a ragged snowline
            snowline = (foot - 0.6 * relief) * height + ragged
            ground = mix(ground, (235.0, 228.0, 238.0), 0.9 * smoothstep(snowline - y, -2.0, 2.0))
        cover = smoothstep(below, -0.5, 0.5)  # an anti-aliased skyline
        image = mix(image, ground.bandjoin(0.12 + 0.1 * index / len(RANGES)), cover)
    return image.copy_memory()  # read by an upsampling kernel: compute once


def _gullies(width: int, height: int, seed: int) -> pyvips.Image:
    """Ribs and gullies down a slope, about +-1: noise stretched 3x vertically."""
    noise = fbm(width, math.ceil(height / 3), [40, 12, 4], seed)
    return noise.resize(1, vscale=3, kernel="linear").crop(0, 0, width, height)


def _sky(width: int, height: int, seed: int, y: pyvips.Image) -> pyvips.Image:
    """Dusk sky: deep blue at the top, warm down to the ranges, streaky clouds, a low sun."""
    t = smoothstep(y, 0.0, 0.3 * height)
    sky = mix((40.0, 60.0, 125.0), (250.0, 185.0, 140.0), t)
    # Clouds are stretched noise: made 4x narrower, then widened.
    clouds = fbm(math.ceil(width / 4), height, [128, 48, 16, 6], seed + 1).resize(4, vscale=1)
    cover = smoothstep(clouds.crop(0, 0, width, height), 0.1, 0.6) * (1.0 - t * 0.6)
    sky = mix(sky, mix((235.0, 215.0, 230.0), (150.0, 100.0, 120.0), t), cover * 0.8)
    return sky + _sun(width, height)


def _sun(width: int, height: int, scale: int = 8) -> pyvips.Image:
    """A low sun and its wide glow, added light; smooth, so made at 1/scale size."""
    xy = pyvips.Image.xyz(math.ceil(width / scale), math.ceil(height / scale)) * scale
    r2 = ((xy[0] - 0.62 * width) ** 2 + (xy[1] - 0.2 * height) ** 2) / (0.0004 * width * width)
    glow = (-r2).exp() * [255.0, 200.0, 120.0] + (-r2 * 0.05).exp() * [60.0, 30.0, 0.0]
    return upsampled(glow, scale, width, height)


def _ridge(width: int, foot: float, relief: float, seed: int) -> pyvips.Image:
    """A one-row image: the y of a range's skyline at each x, float.

    Massifs (a slow envelope) times ridged noise (1 - |n|, for sharp peaks).
    """

    def row(cell: int, octave: int) -> pyvips.Image:
        mid = cell // 2  # sample mid-cell: Perlin noise is zero on its lattice rows
        noise = pyvips.Image.perlin(width, mid + 1, cell_size=max(2, cell), seed=seed + octave)
        return noise.crop(0, mid, width, 1)

    envelope = smoothstep(row(width // 4, 0), -0.35, 0.35) * 0.7 + 0.3
    ridged = pyvips.Image.black(width, 1)
    amplitude, weight = 1.0, 0.0
    for octave, cell in enumerate([width // 12, width // 40, 48, 16, 6], start=1):
        ridged = ridged + (0.5 - row(cell, octave).abs()) * amplitude
        weight += amplitude
        amplitude *= 0.5
    peaks = ((ridged * (2.0 / weight) - 0.25) / 0.6).clamp(min=0.0, max=1.5)  # no plateaus
    return (foot - relief * envelope * (0.3 + 0.7 * peaks)).copy_memory()
