"""An invented blackletter script, drawn with a broad nib: the text of the manuscript and the map.

Owns: seeded alphabets of minim-based letters (coverage masks on a shared baseline), laying
words out along a line, and pasting glyph coverage into an ink array (numpy, float 0..1).
Must not know: pages, paper, files, IIIF.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Alpha = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Script:
    """An invented blackletter alphabet: glyph coverage masks sharing one baseline.

    Row ``baseline`` of every glyph is the baseline; all glyphs have the same height.
    """

    glyphs: tuple[Alpha, ...]
    weights: npt.NDArray[np.float64]
    x_height: int
    baseline: int


def make_script(rng: np.random.Generator, x_height: int, letters: int = 26) -> Script:
    """A seeded alphabet of minim-based letters plus a point, and Zipf-like frequencies."""
    strokes = [letter_strokes(rng, minims=int(rng.choice([1, 1, 2, 2, 3]))) for _ in range(letters)]
    strokes.append([[(0.0, 0.86), (0.08, 0.98)]])  # the point
    glyphs = tuple(render_glyph(s, x_height, nib=0.24) for s in strokes)
    weights = 1.0 / np.arange(1, len(glyphs) + 1) ** 0.8
    weights[-1] = 0.02
    return Script(glyphs, weights / weights.sum(), x_height, baseline=round(1.75 * x_height) + 4)


def letter_strokes(rng: np.random.Generator, minims: int, capital: bool = False) -> list[list[tuple[float, float]]]:
    """Pen paths of one letter in x-height units (y 0 = top of the x-height, 1 = baseline)."""
    paths: list[list[tuple[float, float]]] = []
    xs = [0.1 + 0.42 * i for i in range(minims)]
    for i, x in enumerate(xs):
        top = -0.75 if (i == 0 and rng.random() < 0.22) or capital else 0.0
        bottom = 1.7 if i == minims - 1 and rng.random() < 0.15 else 0.92
        paths.append([(x - 0.12, top + 0.12), (x, top), (x, bottom), (x + 0.14, min(bottom + 0.08, 1.78))])
        if i + 1 < minims and rng.random() < 0.7:  # an arch joining this minim to the next
            paths.append([(x, 0.14), (x + 0.14, 0.0), (xs[i + 1], 0.08)])
    right = xs[-1]
    if rng.random() < 0.35 or capital:  # a bowl on the right
        paths.append([(right, 0.08), (right + 0.3, 0.0), (right + 0.4, 0.5), (right + 0.3, 1.0), (right, 0.94)])
    if rng.random() < 0.2:  # a cross-stroke at the top of the x-height
        paths.append([(xs[0] - 0.15, 0.02), (right + 0.25, 0.02)])
    if capital:
        paths.append([(xs[0] - 0.3, -0.4), (xs[0] - 0.3, 0.6), (xs[0] - 0.45, 0.9)])
    return paths


def render_glyph(paths: Sequence[Sequence[tuple[float, float]]], x_height: int, nib: float) -> Alpha:
    """Coverage mask of pen paths drawn with a broad nib held at 40 degrees, anti-aliased.

    Each path segment sweeps the nib (a parallelogram) plus a hairline across it, tested on
    a supersampled grid and averaged down. Row ``round(1.75 * x_height) + 4`` is the baseline.
    """
    ss = 4 if x_height < 64 else 2
    pad = 0.35
    xmax = max(x for path in paths for x, _ in path)
    w = math.ceil((xmax + 2 * pad) * x_height) + 2
    h = math.ceil(2.5 * x_height) + 8
    unit = ss * x_height  # grid points per x-height
    top = 0.75 + 4.0 / x_height  # the x-height's top is 0.75 x-heights + 4 px below row 0
    gy, gx = np.mgrid[0 : h * ss, 0 : w * ss].astype(np.float32) / unit
    gx -= pad
    gy -= top
    angle = math.radians(40)
    nib_vector = np.array([math.cos(angle), -math.sin(angle)]) * nib
    inside = np.zeros(gx.shape, dtype=bool)
    for path in paths:
        for (x0, y0), (x1, y1) in itertools.pairwise(path):
            a, along = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
            hair = np.array([-along[1], along[0]]) / (np.hypot(*along) + 1e-9) * (1.2 / x_height)
            for across in (nib_vector, hair):
                origin = a - across / 2
                corners = np.array([origin, origin + along, origin + across, origin + along + across])
                # Test only the grid points in the parallelogram's bounding box.
                (c0, r0), (c1, r1) = corners.min(axis=0), corners.max(axis=0)
                window = np.s_[
                    max(0, int((r0 + top) * unit)) : int((r1 + top) * unit) + 2,
                    max(0, int((c0 + pad) * unit)) : int((c1 + pad) * unit) + 2,
                ]
                inside[window] |= _in_parallelogram(gx[window], gy[window], origin, along, across)
    coverage: Alpha = inside.reshape(h, ss, w, ss).mean(axis=(1, 3), dtype=np.float32)
    return coverage


def _in_parallelogram(
    gx: Alpha,
    gy: Alpha,
    origin: npt.NDArray[np.float64],
    u: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    det = u[0] * v[1] - u[1] * v[0]
    if abs(det) < 1e-9:
        return np.zeros(gx.shape, dtype=bool)
    dx, dy = gx - origin[0], gy - origin[1]
    s = (dx * v[1] - dy * v[0]) / det
    t = (u[0] * dy - u[1] * dx) / det
    inside: npt.NDArray[np.bool_] = (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
    return inside


# Glyph boxes have 0.35 x-heights of padding each side; overlapping them by this much gives
# blackletter's tight spacing.
GLYPH_OVERLAP = 0.55


def write_line(
    ink: Alpha,
    script: Script,
    rng: np.random.Generator,
    x: int,
    baseline: int,
    right: int,
    darkness: float = 0.95,
) -> None:
    """Fill one line with words of the script, from x to right, on a slightly wavering baseline."""
    space = int(0.7 * script.x_height)
    while True:
        word = rng.choice(len(script.glyphs) - 1, size=int(rng.integers(2, 9)), p=_letters_only(script))
        if rng.random() < 0.12:
            word = np.append(word, len(script.glyphs) - 1)  # end the word with a point
        overlap = int(GLYPH_OVERLAP * script.x_height)
        width = sum(script.glyphs[g].shape[1] - overlap for g in word)
        if x + width > right:
            return
        dy = int(rng.integers(-1, 2))
        tone = darkness * float(rng.uniform(0.85, 1.0))
        for g in word:
            glyph = script.glyphs[g]
            paste(ink, glyph * tone, x, baseline - script.baseline + dy)
            x += glyph.shape[1] - overlap
        x += space


def _letters_only(script: Script) -> npt.NDArray[np.float64]:
    weights: npt.NDArray[np.float64] = script.weights[:-1] / script.weights[:-1].sum()
    return weights


def paste(ink: Alpha, glyph: Alpha, x: int, y: int) -> None:
    """Overlay glyph coverage into ink at (x, y), clipped to the canvas."""
    h, w = glyph.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, ink.shape[1]), min(y + h, ink.shape[0])
    if x0 < x1 and y0 < y1:
        region = ink[y0:y1, x0:x1]
        np.maximum(region, glyph[y0 - y : y1 - y, x0 - x : x1 - x], out=region)
