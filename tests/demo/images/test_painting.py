"""``painting.tif``: a colourful image with detail at every zoom level; deterministic."""

from __future__ import annotations

import numpy as np
import pyvips

from iiifserver.demo.images.painting import painting
from tests.demo.conftest import Built


def test_painting_has_colour(built: Built) -> None:
    image = pyvips.Image.new_from_file(str(built.root / "painting.tif")).thumbnail_image(600)
    saturation = image.colourspace("lch")[1]
    assert saturation.avg() > 15.0


def test_same_seed_same_pixels_other_seed_other_pixels() -> None:
    first = painting(600, 450).numpy()
    assert np.array_equal(painting(600, 450).numpy(), first)
    assert not np.array_equal(painting(600, 450, seed=7).numpy(), first)


def test_small_render_is_srgb_bytes_of_the_asked_size() -> None:
    image = painting(600, 450)
    assert (image.width, image.height, image.bands, image.format) == (600, 450, 3, "uchar")
    assert image.deviate() > 20.0
