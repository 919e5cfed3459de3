"""The demo images' texture building blocks (``iiifserver.demo.noise``): seeded, bounded, seamless."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from iiifserver.demo.noise import fbm, grain, mirror_tiled, mix, smoothstep, streaks, upsampled


def _array(image: pyvips.Image) -> np.ndarray:
    return np.asarray(image.numpy(), dtype=np.float64)


@pytest.mark.parametrize("cells", [[8], [256, 64, 16], [1200, 300, 36, 8]])
def test_fbm_is_seeded_and_roughly_unit_range(cells: list[int]) -> None:
    first = _array(fbm(400, 300, cells, seed=5))
    assert first.shape == (300, 400)
    assert np.array_equal(_array(fbm(400, 300, cells, seed=5)), first)
    assert not np.array_equal(_array(fbm(400, 300, cells, seed=6)), first)
    assert np.abs(first).max() < 2.0
    assert first.std() > 0.05  # not flat


def test_grain_repeats_its_tile() -> None:
    image = _array(grain(250, 230, seed=1, tile=100))
    assert image.shape == (230, 250)
    assert np.array_equal(image[:, :100], image[:, 100:200])
    assert np.array_equal(image[:100], image[100:200])
    assert 0.7 < image.std() < 1.3  # sigma 1


def test_streaks_run_along_x() -> None:
    image = _array(streaks(400, 200, seed=3, length=40))
    along = np.abs(np.diff(image, axis=1)).mean()
    across = np.abs(np.diff(image, axis=0)).mean()
    assert along * 3 < across


def test_mirror_tiled_has_no_seams() -> None:
    block = pyvips.Image.new_from_array(np.arange(12, dtype=np.float32).reshape(3, 4))
    tiled = _array(mirror_tiled(block, 10, 7))
    assert tiled.shape == (7, 10)
    assert np.array_equal(tiled[:, 3], tiled[:, 4])  # the mirrored copy starts with the same column
    assert np.array_equal(tiled[2], tiled[3])  # and row


def test_upsampled_fills_the_asked_size() -> None:
    small = pyvips.Image.new_from_array(np.full((10, 10), 7.0, dtype=np.float32))
    big = upsampled(small, 4, 37, 39)
    assert (big.width, big.height) == (37, 39)
    assert np.allclose(_array(big), 7.0)


def test_smoothstep_and_mix() -> None:
    ramp = pyvips.Image.new_from_array(np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]], dtype=np.float32))
    assert np.allclose(_array(smoothstep(ramp, 0.0, 1.0)), [[0.0, 0.0, 0.5, 1.0, 1.0]])
    t = pyvips.Image.new_from_array(np.array([[0.0, 0.25, 1.0]], dtype=np.float32))
    blended = _array(mix((0.0, 100.0, 200.0), (100.0, 100.0, 0.0), t))
    assert np.allclose(blended[0], [[0.0, 100.0, 200.0], [25.0, 100.0, 150.0], [100.0, 100.0, 0.0]])
