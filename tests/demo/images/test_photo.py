"""``photo-p3.tif``: Display P3 pixels with the P3 profile embedded, which a colour-managed client
turns back into the intended sRGB colours; the generator is deterministic."""

from __future__ import annotations

import struct

import numpy as np
import pyvips

from iiifserver.demo.build import PHOTO_SIZE
from iiifserver.demo.images.photo import photo_p3, photo_srgb
from tests.demo.conftest import Built


def _icc_description(profile: bytes) -> str:
    """The 'desc' tag of an ICC profile (v4 mluc or v2 desc type)."""
    (count,) = struct.unpack(">I", profile[128:132])
    for i in range(count):
        signature, offset, size = struct.unpack(">4sII", profile[132 + 12 * i : 144 + 12 * i])
        if signature == b"desc":
            tag = profile[offset : offset + size]
            if tag[:4] == b"mluc":
                length, start = struct.unpack(">II", tag[20:28])
                return tag[start : start + length].decode("utf-16-be")
            (length,) = struct.unpack(">I", tag[8:12])
            return tag[12 : 12 + length].rstrip(b"\0").decode("latin-1")
    return ""


def test_photo_embeds_display_p3_not_srgb(built: Built) -> None:
    image = pyvips.Image.new_from_file(str(built.root / "photo-p3.tif"))
    assert image.get_typeof("icc-profile-data")
    profile = image.get("icc-profile-data")
    srgb = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb")
    srgb_profile = srgb.icc_transform("srgb", input_profile="srgb").get("icc-profile-data")
    assert profile != srgb_profile
    assert profile[36:40] == b"acsp"
    assert profile[16:20] == b"RGB "
    assert "P3" in _icc_description(profile)


def test_photo_colours_convert_back_to_the_intended_srgb(built: Built) -> None:
    stored = pyvips.Image.new_from_file(str(built.root / "photo-p3.tif"))
    intended = photo_srgb(*PHOTO_SIZE)
    back = stored.icc_transform("srgb", embedded=True, intent="relative")
    error = back.colourspace("lab").dE76(intended.colourspace("lab"))
    assert error.avg() < 0.5
    assert error.max() < 3.0
    # The pixels were converted, not merely tagged: as raw numbers they differ from sRGB.
    assert (stored - intended).abs().avg() > 2.0


def test_same_seed_same_pixels_other_seed_other_pixels() -> None:
    first = photo_p3(600, 400).numpy()
    assert np.array_equal(photo_p3(600, 400).numpy(), first)
    assert not np.array_equal(photo_p3(600, 400, seed=1).numpy(), first)


def test_srgb_photo_holds_the_full_saturation_primaries() -> None:
    # The chart's third row: sRGB red, green, blue at full saturation (the edge of the sRGB gamut).
    image = photo_srgb(*PHOTO_SIZE)
    patch, gap = PHOTO_SIZE[0] // 14, PHOTO_SIZE[0] // 120
    card_w = 6 * (patch + gap) + gap
    x0, y0 = (PHOTO_SIZE[0] - card_w) // 2, PHOTO_SIZE[1] // 8
    for column, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        x = x0 + gap + column * (patch + gap) + patch // 2
        y = y0 + gap + 2 * (patch + gap) + patch // 2
        pixel = image.crop(x - 2, y - 2, 5, 5).numpy().reshape(-1, 3).mean(axis=0)
        assert np.allclose(pixel, colour, atol=12), (column, pixel)
    assert isinstance(image, pyvips.Image)
