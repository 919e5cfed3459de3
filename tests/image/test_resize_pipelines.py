"""Kept resize pipelines (``resize_pipelines``): the same bytes as a fresh pipeline, always."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import pyvips

from iiifserver.image import render, resize_pipelines
from iiifserver.image.render import _resize_exact


@pytest.fixture(autouse=True)
def _nothing_kept() -> None:
    resize_pipelines.forget()


def _images(count: int, rows: int, columns: int, bands: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rows, columns, bands), dtype=np.uint8) for _ in range(count)]


def _fresh(pixels: np.ndarray, width: int, height: int) -> bytes:
    rows, columns, bands = pixels.shape
    image = pyvips.Image.new_from_memory(np.ascontiguousarray(pixels).data, columns, rows, bands, "uchar")
    return bytes(_resize_exact(image, width, height).write_to_memory())


def _kept(pixels: np.ndarray, width: int, height: int) -> bytes:
    """Through a kept pipeline, computed as a render computes it (``render.computed``)."""
    image = resize_pipelines.resized(pixels, width, height, lambda source: _resize_exact(source, width, height))
    return bytes(render.computed(image))


# (rows, columns, bands, width, height): thumbnails by reduce alone, by resize (a reduction of 4
# and more), grey, the output the input's own size, and a stretch by a pixel.
GEOMETRIES = [(188, 250, 3, 200, 150), (375, 500, 3, 200, 150), (300, 400, 3, 67, 50), (150, 200, 1, 96, 72)]
GEOMETRIES += [(150, 200, 3, 200, 150), (150, 199, 3, 200, 150)]


def test_kept_pipelines_give_a_fresh_pipelines_bytes_on_interleaved_images() -> None:
    """Every image of a geometry differs from the one before it, so a run that kept anything of
    the previous image's pixels would differ from the fresh pipeline's."""
    images = {g: _images(5, g[0], g[1], g[2], seed=i) for i, g in enumerate(GEOMETRIES)}
    for step in range(60):
        geometry = GEOMETRIES[(step * 5) % len(GEOMETRIES)]
        pixels = images[geometry][(step * 3) % 5]
        width, height = geometry[3], geometry[4]
        assert _kept(pixels, width, height) == _fresh(pixels, width, height), (step, geometry)
    assert len(resize_pipelines._kept()) == resize_pipelines.KEPT_PER_THREAD  # the least recent dropped


def test_threads_keep_their_own_pipelines() -> None:
    images = _images(6, 375, 500, 3, seed=4) + _images(6, 188, 250, 3, seed=5)
    wrong: list[Any] = []

    def work(offset: int) -> None:
        for step in range(40):
            pixels = images[(step + offset) % len(images)]
            width, height = (200, 150) if pixels.shape[0] == 375 else (120, 90)
            if _kept(pixels, width, height) != _fresh(pixels, width, height):
                wrong.append((offset, step))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_large_mosaics_are_not_kept() -> None:
    rows = resize_pipelines.MAX_KEPT_PIXELS // 1000 + 1
    (pixels,) = _images(1, rows, 1000, 3, seed=1)
    assert _kept(pixels, 500, rows // 2) == _fresh(pixels, 500, rows // 2)
    assert len(resize_pipelines._kept()) == 0


def test_the_callers_pixels_are_not_kept_or_changed() -> None:
    first, second = _images(2, 188, 250, 3, seed=3)
    before = first.copy()
    _kept(first, 200, 150)
    _kept(second, 200, 150)
    assert np.array_equal(first, before)
    entry = next(iter(resize_pipelines._kept().values()))
    assert not np.shares_memory(entry.buffer, first)
    assert not np.shares_memory(entry.buffer, second)


@pytest.mark.parametrize("fetch_max", [0, 1 << 20])
def test_computed_in_the_thread_or_the_pool_alike(monkeypatch: pytest.MonkeyPatch, fetch_max: int) -> None:
    """``render.computed``: the render thread's own fetch and libvips' pool give the same pixels."""
    monkeypatch.setattr(render, "FETCH_MAX_PIXELS", fetch_max)
    for rows, columns, bands, width, height in GEOMETRIES:
        (pixels,) = _images(1, rows, columns, bands, seed=rows + bands)
        image = pyvips.Image.new_from_memory(pixels.data, columns, rows, bands, "uchar")
        out = _resize_exact(image, width, height)
        assert bytes(render.computed(out)) == bytes(out.write_to_memory())
        assert len(bytes(render.computed(out))) == width * height * bands
