"""``map-lzw.tif``: a shaded relief map (tints, contours, coast hatching, graticule, labels, neat line).

Owns: the map's recipe. Must not know: files, pyramids, the other images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyvips

from iiifserver.demo.noise import fbm, mix, smoothstep
from iiifserver.demo.script import make_script, write_line

SEA_LEVEL = -0.12


# Hypsometric tints, land from the coast up (position 0..1, sRGB).
LAND_TINTS = (
    (0.0, (120, 165, 105)),
    (0.25, (170, 195, 120)),
    (0.5, (225, 210, 150)),
    (0.75, (185, 140, 100)),
    (0.9, (150, 120, 110)),
    (1.0, (250, 250, 250)),
)


WATER_TINTS = ((0.0, (170, 210, 230)), (0.3, (110, 165, 210)), (1.0, (40, 80, 150)))


def relief_map(width: int, height: int, seed: int = 5500) -> pyvips.Image:
    """A shaded relief map: tinted elevation, contours, coast hatching, graticule, neat line."""
    elevation = fbm(width, height, [1200, 600, 300, 150, 75, 36, 18, 8], seed, gain=0.5)
    elevation = elevation.copy_memory()  # read by several branches below; compute once
    land = elevation > SEA_LEVEL
    shade = _hillshade(elevation, exaggeration=900.0)
    height01 = ((elevation - SEA_LEVEL) / (0.75 - SEA_LEVEL)).clamp(min=0.0, max=1.0)
    depth01 = ((SEA_LEVEL - elevation) / (SEA_LEVEL + 0.8)).clamp(min=0.0, max=1.0)
    terrain = _lookup(height01, LAND_TINTS) * (0.55 + 0.6 * shade)
    water = _lookup(depth01, WATER_TINTS) * (0.9 + 0.15 * shade)
    # Old-map coast hatching: lines parallel to the coast, fading offshore.
    hatching = ((depth01 * 60.0 % 1.0) < 0.18).ifthenelse(1.0, 0.0) * (1.0 - smoothstep(depth01, 0, 0.12))
    water = water * (1.0 - 0.25 * hatching)
    image = land.ifthenelse(terrain, water)
    contours = land & ((height01 * 16.0 % 1.0) < 0.07)
    image = contours.ifthenelse(image * 0.55 + [40.5, 22.5, 9.0], image)
    coast = (elevation - SEA_LEVEL).abs() < 0.004
    image = coast.ifthenelse([30.0, 50.0, 90.0], image)
    image = _graticule(image, width, height, step=500)
    image = _labels(image, width, height, seed + 1, land)
    return _neat_line(image.cast("uchar"), width, height).copy(interpretation="srgb")


def _hillshade(elevation: pyvips.Image, exaggeration: float) -> pyvips.Image:
    """Lambertian shading, 0..1, lit from the north-west."""
    sobel_x = pyvips.Image.new_from_list([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], scale=8)
    dx = elevation.conv(sobel_x, precision="float") * exaggeration
    dy = elevation.conv(sobel_x.rot90(), precision="float") * exaggeration
    light = (-0.5, -0.5, 0.707)
    lit = (-dx * light[0] - dy * light[1] + light[2]) / (dx * dx + dy * dy + 1.0) ** 0.5
    return lit.clamp(min=0.0, max=1.0)


def _lookup(position: pyvips.Image, stops: Sequence[tuple[float, tuple[int, int, int]]]) -> pyvips.Image:
    """Map 0..1 through a colour ramp (256-entry LUT), float sRGB."""
    x = np.linspace(0.0, 1.0, 256)
    at = [p for p, _ in stops]
    table = np.stack([np.interp(x, at, [c[band] for _, c in stops]) for band in range(3)], axis=-1)
    lut = pyvips.Image.new_from_array(table.reshape(1, 256, 3).astype(np.uint8))
    return (position * 255.0).cast("uchar").maplut(lut).cast("float")


def _graticule(image: pyvips.Image, width: int, height: int, step: int) -> pyvips.Image:
    """Thin grid lines every ``step`` pixels."""
    columns = np.zeros((1, width), dtype=np.uint8)
    rows = np.zeros((height, 1), dtype=np.uint8)
    for x in range(step, width, step):
        columns[0, x - 1 : x + 1] = 1
    for y in range(step, height, step):
        rows[y - 1 : y + 1, 0] = 1
    # One-pixel-wide masks zoomed out to the full size: no full-size drawing needed.
    lines = pyvips.Image.new_from_array(columns).zoom(1, height) | pyvips.Image.new_from_array(rows).zoom(width, 1)
    return mix(image, (60.0, 60.0, 70.0), lines * 0.5)


def _labels(image: pyvips.Image, width: int, height: int, seed: int, land: pyvips.Image) -> pyvips.Image:
    """Place names in the manuscript's invented script, on land, dark brown."""
    rng = np.random.default_rng(seed)
    script = make_script(rng, x_height=18)
    ink = np.zeros((height, width), dtype=np.float32)
    land_small = land.resize(1 / 50).numpy() > 128  # where labels may start, in 50-px cells
    cells = np.argwhere(land_small)
    for row, col in cells[rng.choice(len(cells), size=min(30, len(cells)), replace=False)]:
        x, y = int(col) * 50, int(row) * 50 + 25
        write_line(ink, script, rng, x, y, min(x + int(rng.integers(150, 420)), width - 80))
    coverage = pyvips.Image.new_from_array(ink)
    return mix(image, (60.0, 35.0, 20.0), coverage * 0.9)


MAP_PAPER = (245, 240, 225)


def _neat_line(image: pyvips.Image, width: int, height: int, margin: int = 40, bar: int = 12) -> pyvips.Image:
    """A paper border with a frame and an alternating black and white scale, as on printed maps."""
    border = np.empty((height, width, 3), dtype=np.uint8)
    border[:] = MAP_PAPER
    frame = margin - bar - 2
    border[frame : height - frame, frame : width - frame] = 20
    border[frame + 2 : height - frame - 2, frame + 2 : width - frame - 2] = MAP_PAPER
    for i, x in enumerate(range(margin, width - margin, 100)):
        if i % 2 == 0:
            border[margin - bar : margin, x : min(x + 100, width - margin)] = 20
            border[height - margin : height - margin + bar, x : min(x + 100, width - margin)] = 20
    for i, y in enumerate(range(margin, height - margin, 100)):
        if i % 2 == 0:
            border[y : min(y + 100, height - margin), margin - bar : margin] = 20
            border[y : min(y + 100, height - margin), width - margin : width - margin + bar] = 20
    inner = image.crop(margin, margin, width - 2 * margin, height - 2 * margin)
    return pyvips.Image.new_from_array(border).insert(inner, margin, margin)
