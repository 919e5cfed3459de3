"""Pictures and JPEGs for the tests of libjpeg-turbo work on tiles (``test_tile_codec``,
``test_tile_stretch``): smooth colour fields with hard edges and grain, encoded by libvips."""

from __future__ import annotations

import io

import numpy as np
import pytest
import pyvips
from PIL import Image

from iiifserver.image import tile_codec

needs_turbo = pytest.mark.skipif(not tile_codec.available(), reason="libturbojpeg0 is not installed")


def picture(height: int, width: int, bands: int = 3, noise: float = 4.0, seed: int = 5) -> np.ndarray:
    """Smooth colour fields with hard edges and some grain: interpolation errors show on all."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [
        (128 + 100 * np.sin(xx / (7 + 3 * k)) * np.cos(yy / (5 + 2 * k))).astype(np.float64) for k in range(bands)
    ]
    pixels = np.stack(planes, axis=-1)
    pixels[height // 3 : height // 2, width // 4 : width // 2] = 20
    pixels += rng.normal(0, noise, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image)


def jpeg_of(pixels: np.ndarray, quality: int = 95, **options: object) -> bytes:
    image = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    image = image.copy(interpretation="b-w" if pixels.shape[2] == 1 else "srgb")
    return bytes(image.jpegsave_buffer(Q=quality, keep="none", **options))


def former_stretch(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The general resampler ``tile_stretch.stretch_pixels`` was until issue 17 (gathering by
    index): the one-pixel stretch must give exactly its pixels."""
    bits = 7

    def taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5, 0, n - 1)
        below = position.astype(np.intp)
        return below, np.minimum(below + 1, n - 1), np.rint((position - below) * (1 << bits)).astype(np.int16)

    def blend(flat: np.ndarray, low: np.ndarray, high: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
        base = np.take(flat, low, axis=axis).astype(np.int16)
        out = np.take(flat, high, axis=axis).astype(np.int16)
        out -= base
        out *= weight
        out += 1 << (bits - 1)
        out >>= bits
        out += base
        return out.astype(np.uint8)

    rows, columns, channels = pixels.shape
    flat = np.ascontiguousarray(pixels).reshape(rows, columns * channels)
    if height != rows:
        low, high, weight = taps(rows, height)
        flat = blend(flat, low, high, weight[:, None], axis=0)
    if width != columns:
        low, high, weight = taps(columns, width)
        channel = np.arange(channels)
        flat = blend(
            flat,
            (low[:, None] * channels + channel).ravel(),
            (high[:, None] * channels + channel).ravel(),
            np.repeat(weight, channels),
            axis=1,
        )
    return flat.reshape(height, width, channels)
