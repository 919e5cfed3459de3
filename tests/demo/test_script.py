"""The invented script (``iiifserver.demo.script``): seeded alphabets of anti-aliased glyphs on one
baseline, lines that stop at their right edge, and pasting that clips and never lightens ink."""

from __future__ import annotations

import numpy as np

from iiifserver.demo.script import letter_strokes, make_script, paste, render_glyph, write_line


def test_alphabet_is_seeded_and_shares_one_height() -> None:
    script = make_script(np.random.default_rng(1), x_height=20)
    again = make_script(np.random.default_rng(1), x_height=20)
    assert len(script.glyphs) == 27  # 26 letters and a point
    assert all(np.array_equal(a, b) for a, b in zip(script.glyphs, again.glyphs, strict=True))
    assert len({glyph.shape[0] for glyph in script.glyphs}) == 1
    assert np.isclose(script.weights.sum(), 1.0)
    assert script.baseline == round(1.75 * 20) + 4


def test_glyph_coverage_is_anti_aliased_and_sits_on_the_baseline() -> None:
    x_height = 30
    glyph = render_glyph(letter_strokes(np.random.default_rng(2), minims=2), x_height, nib=0.24)
    assert glyph.dtype == np.float32
    assert glyph.min() == 0.0
    assert glyph.max() == 1.0
    assert ((glyph > 0) & (glyph < 1)).any()  # soft edges
    baseline = round(1.75 * x_height) + 4
    rows = np.flatnonzero(glyph.max(axis=1) > 0.5)
    assert abs(rows.max() - baseline) <= x_height // 3  # minims end at the baseline (a few descend further)


def test_paste_clips_and_keeps_the_darker_ink() -> None:
    ink = np.zeros((10, 10), dtype=np.float32)
    ink[0, 0] = 0.9
    paste(ink, np.full((4, 4), 0.5, dtype=np.float32), -2, -2)
    assert ink[0, 0] == 0.9  # max, not overwrite
    assert ink[1, 1] == 0.5
    assert ink[2:, :].sum() == 0.0
    paste(ink, np.ones((4, 4), dtype=np.float32), 8, 8)  # runs off the far corner
    assert ink[9, 9] == 1.0


def test_line_stops_before_its_right_edge() -> None:
    rng = np.random.default_rng(3)
    script = make_script(rng, x_height=16)
    ink = np.zeros((120, 800), dtype=np.float32)
    write_line(ink, script, rng, 20, 80, 600)
    columns = np.flatnonzero(ink.max(axis=0) > 0)
    assert columns.min() >= 20 - script.x_height  # glyph boxes are padded and overlap a little
    assert columns.max() < 600 + script.x_height
    assert len(columns) > 300  # words fill the line
