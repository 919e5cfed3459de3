"""``large-panorama.tif`` drawn small: a dusk sky over dark ranges, and no two tiles alike although
the fine texture is one repeated block. (The full 105-megapixel build: tests/demo/test_build.py.)"""

from __future__ import annotations

import hashlib

from iiifserver.demo.images.panorama import panorama


def test_sky_above_ranges() -> None:
    image = panorama(1024, 512)
    sky, ground = image.crop(0, 0, 1024, 40), image.crop(0, 472, 1024, 40)
    assert sky.avg() > ground.avg() + 30  # dusk light above, dark wooded ranges below
    assert ground[1].avg() > ground[2].avg()  # the near ranges are green, not blue


def test_no_two_tiles_alike() -> None:
    image = panorama(2048, 1024)
    digests = {
        hashlib.sha256(image.crop(x, y, 256, 256).write_to_memory()).digest()
        for x in range(0, 2048, 256)
        for y in range(0, 1024, 256)
    }
    assert len(digests) == 32
