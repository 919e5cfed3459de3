"""``_assets/logo.tif``: a flat three-colour logo (so it compresses to almost nothing)."""

from __future__ import annotations

import numpy as np

from iiifserver.demo.images.logo import logo


def test_three_flat_colours_on_white() -> None:
    pixels = logo(512, 512).numpy()
    colours = {tuple(int(v) for v in c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}
    assert colours == {(255, 255, 255), (176, 32, 48), (214, 170, 60)}
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # corners are background
    assert tuple(pixels[256, 20]) == (176, 32, 48)  # the outer disc


def test_any_size() -> None:
    image = logo(200, 120)
    assert (image.width, image.height, image.bands, image.interpretation) == (200, 120, 3, "srgb")
