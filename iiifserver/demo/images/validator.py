"""The IIIF validator test image: the validators' PNG, copied losslessly and checked.

Owns: its identifier, its expected size and the check that the PNG is what the validators
expect. Must not know: pyramids, the other images.
"""

from __future__ import annotations

from pathlib import Path

import pyvips

VALIDATOR_ID = "67352ccc-d1b0-11e1-89ae-279075081939"


VALIDATOR_SIZE = (1000, 1000)


def validator_image(png: Path) -> pyvips.Image:
    """The validator's PNG, unchanged; fails loudly if it is not the expected 1000x1000 RGB."""
    image = pyvips.Image.new_from_file(str(png))
    if (image.width, image.height) != VALIDATOR_SIZE or image.bands != 3 or image.format != "uchar":
        raise ValueError(
            f"{png.name}: expected {VALIDATOR_SIZE[0]}x{VALIDATOR_SIZE[1]} 8-bit RGB, got "
            f"{image.width}x{image.height}x{image.bands} {image.format}"
        )
    return image
