"""``manuscript-gray.tif``: one grey band, a leaf with text on a dark backdrop, and a grey-scale
scanning target whose patches run evenly from near white to near black."""

from __future__ import annotations

import numpy as np
import pyvips

from iiifserver.demo.build import MANUSCRIPT_SIZE
from tests.demo.conftest import Built


def test_grey_scale_target_steps_evenly_from_white_to_black(built: Built) -> None:
    image = pyvips.Image.new_from_file(str(built.root / "manuscript-gray.tif"))
    height = MANUSCRIPT_SIZE[1]
    # Where manuscript() inserts it: below the leaf, 180-pixel patches, 120 high.
    leaf_x, leaf_bottom = 90, 80 + (height - 340)
    x0, y0 = leaf_x + 60, leaf_bottom + 110
    centres = [image.crop(x0 + 180 * i + 80, y0 + 50, 20, 20).avg() for i in range(12)]
    expected = np.round(245.0 - np.arange(12) * (230.0 / 11))
    assert np.allclose(centres, expected, atol=4.0), centres  # JPEG Q90 moves flat patches little


def test_leaf_is_light_and_backdrop_dark(built: Built) -> None:
    image = pyvips.Image.new_from_file(str(built.root / "manuscript-gray.tif"))
    assert image.crop(0, 0, 40, 40).avg() < 45  # the backdrop around the leaf
    assert image.crop(200, 200, 100, 100).avg() > 180  # paper in the top margin
    assert image.bands == 1
