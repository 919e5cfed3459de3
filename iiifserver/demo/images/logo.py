"""``_assets/logo.tif``: the demo institution's logo (the provider logo of the demo manifests).

Owns: the logo's drawing. Must not know: files, pyramids, the other images.
"""

from __future__ import annotations

import pyvips


def logo(width: int, height: int) -> pyvips.Image:
    """The demo institution's logo: a deep-red disc with a gold ring and a white arch."""
    image = pyvips.Image.black(width, height, bands=3).new_from_image([255, 255, 255])
    cx, cy, r = width // 2, height // 2, min(width, height) // 2 - 8
    image = image.draw_circle([176, 32, 48], cx, cy, r, fill=True)
    image = image.draw_circle([214, 170, 60], cx, cy, r - 24, fill=True)
    image = image.draw_circle([176, 32, 48], cx, cy, r - 44, fill=True)
    arch = r // 2
    image = image.draw_circle([255, 255, 255], cx, cy + arch // 3, arch, fill=True)
    image = image.draw_rect([176, 32, 48], cx - arch, cy + arch // 3, 2 * arch, arch + 4, fill=True)
    return image.cast("uchar").copy(interpretation="srgb")
