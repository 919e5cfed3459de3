"""``manuscript-gray.tif`` and the book pages: a greyscale scan of a manuscript leaf.

Owns: the leaf's recipe: layout of the text (in the invented script), ruling, a framed initial,
paper (stains, fibres, foxing, show-through), frayed edges and a grey-scale scanning target.
Must not know: files, pyramids, the other images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyvips

from iiifserver.demo.noise import fbm, grain, mix, smoothstep, streaks, upsampled
from iiifserver.demo.script import Alpha, letter_strokes, make_script, paste, render_glyph, write_line


def manuscript(width: int, height: int, seed: int = 3300) -> pyvips.Image:
    """A greyscale scan of a manuscript leaf on a dark backdrop, with a grey-scale target.

    Ruled lines of an invented blackletter script (drawn with a broad nib), a heading, a large
    initial, marginal notes, paper fibres, stains, foxing and show-through.
    """
    rng = np.random.default_rng(seed)
    leaf_box = (90, 80, width - 180, height - 340)  # x, y, w, h of the leaf
    ink = np.zeros((height, width), dtype=np.float32)
    ruling = np.zeros((height, width), dtype=np.uint8)
    _write_page(ink, ruling, rng, leaf_box)
    ink_image = pyvips.Image.new_from_array(ink)
    paper = _paper(width, height, seed + 1, ink_image) - pyvips.Image.new_from_array(ruling).gaussblur(0.7)
    density = 0.88 + 0.1 * fbm(width, height, [512, 64], seed + 2)  # ink pooling and fading
    page = paper * (1.0 - ink_image * density) + ink_image * density * 38.0
    leaf = _leaf_mask(width, height, seed + 3, leaf_box)
    backdrop = 28 + 3 * grain(width, height, seed + 4)
    scan = mix(backdrop, page, leaf).cast("uchar")
    target = _grey_target(step=180, height=120)
    scan = scan.insert(target, leaf_box[0] + 60, leaf_box[1] + leaf_box[3] + 110)
    return scan.copy(interpretation="b-w")


def _write_page(
    ink: Alpha, ruling: npt.NDArray[np.uint8], rng: np.random.Generator, leaf_box: tuple[int, int, int, int]
) -> None:
    """Lay out the text into ``ink`` (coverage 0..1) and the dry-point ruling into ``ruling``."""
    px, py, pw, ph = leaf_box
    script = make_script(rng, x_height=26)
    left, right = px + 330, px + pw - 270
    top, pitch = py + 420, 84
    baselines = list(range(top, py + ph - 380, pitch))
    _rule(ruling, baselines, (left, right), leaf_box)
    # A large framed initial whose foot sits on the fourth line; those lines are indented.
    initial = _framed(render_glyph(letter_strokes(rng, minims=2, capital=True), x_height=150, nib=0.5))
    initial_top = baselines[3] + 12 - initial.shape[0]
    paste(ink, initial, left, initial_top)
    indent = initial.shape[1] + 30
    # A heading in a bigger hand, above the initial.
    big = make_script(rng, x_height=44)
    write_line(ink, big, rng, left + 40, initial_top - 45, right - 300, darkness=0.97)
    for i, baseline in enumerate(baselines):
        last = i == len(baselines) - 1
        write_line(ink, script, rng, left + (indent if i < 4 else 0), baseline, (left + right) // 2 if last else right)
    # Marginal notes in a small hand.
    small = make_script(rng, x_height=13)
    for baseline in baselines[5:30:9]:
        for row in range(4):
            write_line(ink, small, rng, right + 40, baseline + row * 30, px + pw - 40, darkness=0.8)
    # The folio number in the top corner.
    write_line(ink, script, rng, px + pw - 260, py + 160, px + pw - 150)


def _rule(
    ruling: npt.NDArray[np.uint8],
    baselines: Sequence[int],
    text_x: tuple[int, int],
    leaf_box: tuple[int, int, int, int],
) -> None:
    """Faint dry-point ruling (grey levels to darken): a line per baseline across the leaf,
    double bounding lines from top to bottom, and a pricking hole per line in the margin."""
    px, py, pw, ph = leaf_box
    left, right = text_x
    for y in baselines:
        ruling[y : y + 2, px + 20 : px + pw - 20] = 9
        ruling[y - 2 : y + 3, px + pw - 62 : px + pw - 57] = 30
    for x in (left - 14, left, right, right + 14):
        ruling[py + 10 : py + ph - 10, x : x + 2] = 8


def _framed(glyph: Alpha) -> Alpha:
    """The initial in a ruled box with a cross-hatched ground."""
    h, w = glyph.shape
    box = np.zeros((h + 40, w + 40), dtype=np.float32)
    yy, xx = np.mgrid[0 : h + 40, 0 : w + 40]
    box[((xx + yy) % 14 == 0) | ((xx - yy) % 14 == 0)] = 0.35  # hatching
    box[20 : 20 + h, 20 : 20 + w] = np.maximum(box[20 : 20 + h, 20 : 20 + w], glyph)
    for edge in (slice(0, 5), slice(-5, None)):
        box[edge, :] = 0.9
        box[:, edge] = 0.9
    return box


def _paper(width: int, height: int, seed: int, ink: pyvips.Image) -> pyvips.Image:
    """Laid paper tone: stains, fibres, grain, foxing, and the text of the other side showing."""
    stains = fbm(width, height, [1500, 600, 200], seed)
    fibres = streaks(width, height, seed + 1, length=30) * 0.6 + streaks(height, width, seed + 2, 12).rot90() * 0.3
    speckle = grain(width, height, seed + 3)
    # Chain lines of laid paper vary along x only: one row, zoomed to the full height.
    chain = (pyvips.Image.xyz(width, 1)[0] * (360.0 / 160.0)).sin().zoom(1, height)
    foxing = _foxing(width, height, seed + 4)
    # The other side's text, mirrored and blurred through the paper (blurred at 1/4 size).
    show_through = upsampled(ink.fliphor().resize(0.25).gaussblur(0.8), 4, width, height) * 7.0
    return 214 + 12 * stains + 2.5 * fibres + 3 * speckle + 1.2 * chain - foxing - show_through


def _foxing(width: int, height: int, seed: int, scale: int = 8) -> pyvips.Image:
    """Brown age spots, as darkening in grey levels."""
    rng = np.random.default_rng(seed)
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    spots = pyvips.Image.black(w, h)
    for _ in range(40):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        spots = spots.draw_circle([float(rng.uniform(8, 30))], x, y, int(rng.integers(1, 6)), fill=True)
    return upsampled(spots.gaussblur(1.5), scale, width, height)


def _leaf_mask(width: int, height: int, seed: int, page_box: tuple[int, int, int, int], scale: int = 4) -> pyvips.Image:
    """Where the leaf is, 0..1: its box with frayed, slightly wavy edges."""
    w, h = math.ceil(width / scale), math.ceil(height / scale)
    inset = _box_distance(pyvips.Image.xyz(w, h) * scale, page_box)
    wobble = fbm(w, h, [200, 50, 12], seed) * 6.0
    return upsampled(smoothstep(inset + wobble, -1.5, 1.5), scale, width, height).clamp(min=0.0, max=1.0)


def _box_distance(xy: pyvips.Image, box: tuple[int, int, int, int]) -> pyvips.Image:
    """Distance inside the box to its nearest edge (negative outside), per pixel."""
    px, py, pw, ph = box
    x, y = xy[0], xy[1]
    return (x - px).minpair(px + pw - x).minpair((y - py).minpair(py + ph - y))


def _grey_target(step: int, height: int, steps: int = 12) -> pyvips.Image:
    """A grey-scale scanning target: ``steps`` patches from near white to near black."""
    levels = np.round(245.0 - np.arange(steps) * (230.0 / (steps - 1))).astype(np.uint8)
    return pyvips.Image.new_from_array(np.repeat(levels, step)[np.newaxis, :].repeat(height, axis=0))
