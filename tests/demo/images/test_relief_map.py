"""``map-lzw.tif``: a map in a paper border, land and water both present; deterministic."""

from __future__ import annotations

import numpy as np
import pyvips

from iiifserver.demo.images.relief_map import LAND_TINTS, MAP_PAPER, relief_map
from tests.demo.conftest import Built


def test_border_is_map_paper_exactly(built: Built) -> None:
    # LZW is lossless: the paper colour is stored exactly.
    image = pyvips.Image.new_from_file(str(built.root / "map-lzw.tif"))
    for x, y in [(3, 3), (image.width - 4, 3), (3, image.height - 4), (image.width - 4, image.height - 4)]:
        assert tuple(image.crop(x, y, 1, 1).numpy().reshape(3)) == MAP_PAPER


def test_shows_land_and_water() -> None:
    pixels = relief_map(1000, 800).crop(60, 60, 880, 680).numpy().reshape(-1, 3).astype(int)
    bluish = (pixels[:, 2] > pixels[:, 0] + 30).mean()
    assert 0.05 < bluish < 0.95, bluish
    assert LAND_TINTS[0][0] == 0.0  # tints start at the coast


def test_same_seed_same_pixels() -> None:
    assert np.array_equal(relief_map(1000, 800).numpy(), relief_map(1000, 800).numpy())
    assert not np.array_equal(relief_map(1000, 800, seed=1).numpy(), relief_map(1000, 800).numpy())
