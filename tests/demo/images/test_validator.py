"""The IIIF validator image: served pixel for pixel as the validators' PNG, and refused when the
PNG is not the expected 1000x1000 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips

from iiifserver.demo.images.validator import VALIDATOR_SIZE, validator_image
from tests.demo.conftest import CONFORMANCE, VALIDATOR_PNG, VALIDATOR_TIF, Built, needs_validator_png


@needs_validator_png
def test_validator_image_is_pixel_identical_to_the_png(built: Built) -> None:
    assert CONFORMANCE is not None
    png = pyvips.Image.new_from_file(str(CONFORMANCE / VALIDATOR_PNG))
    tif = pyvips.Image.new_from_file(str(built.root / VALIDATOR_TIF))
    assert (tif.width, tif.height, tif.bands) == (png.width, png.height, png.bands)
    assert np.array_equal(tif.numpy(), png.numpy())


@pytest.mark.parametrize(
    ("image", "found"),
    [
        (pyvips.Image.black(999, 1000, bands=3), "999x1000x3 uchar"),
        (pyvips.Image.black(1000, 1000, bands=1), "1000x1000x1 uchar"),
        (pyvips.Image.black(1000, 1000, bands=4), "1000x1000x4 uchar"),  # with alpha
    ],
)
def test_refuses_a_png_that_is_not_the_validator_image(tmp_path: Path, image: pyvips.Image, found: str) -> None:
    png = tmp_path / VALIDATOR_PNG
    image.pngsave(str(png))
    with pytest.raises(ValueError, match="expected 1000x1000 8-bit RGB") as info:
        validator_image(png)
    assert found in str(info.value)
    assert str(tmp_path) not in str(info.value)  # names the file, not where it is


@needs_validator_png
def test_accepts_the_validator_png() -> None:
    assert CONFORMANCE is not None
    image = validator_image(CONFORMANCE / VALIDATOR_PNG)
    assert (image.width, image.height) == VALIDATOR_SIZE
