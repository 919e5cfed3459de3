"""The compiled parts: image/_jpeg_blocks.c (with its parts in image/jpeg_blocks/), over the
system's libjpeg (libjpeg-turbo), and
image/_lanczos.c (lanczos3 resampling of a region's Y, Cb, Cr planes).

Everything else is in pyproject.toml. ``optional``: without a C compiler or libjpeg's headers
(``apt-get install gcc libjpeg62-turbo-dev``; ``scripts/install.sh`` installs them when run as
root) the package installs without them: downloads and other block-aligned crops are then made
from the tiles' decoded planes (``image/tile_blocks.py``), regions at their own size decode
their tiles one by one (``image/tile_planes.py``), and regions at other sizes are decoded to
pixels and resized by libvips (``image/plane_resize.py``). Both at -O3 (the same speed as -O2
for the first, 14 % faster for the second, whose clamping loops the compiler vectorises); ``benchmarks/first_open.py`` builds a baseline tree's copies the same way.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "iiifserver.image._jpeg_blocks",
            sources=["iiifserver/image/_jpeg_blocks.c"],  # includes its parts: one translation unit
            depends=[
                "iiifserver/image/jpeg_blocks/common.h",
                "iiifserver/image/jpeg_blocks/assemble.c",
                "iiifserver/image/jpeg_blocks/planes.c",
                "iiifserver/image/jpeg_blocks/splice.c",
            ],
            libraries=["jpeg"],
            extra_compile_args=["-O3", "-Wall"],
            optional=True,
        ),
        Extension(
            "iiifserver.image._lanczos",
            sources=["iiifserver/image/_lanczos.c"],
            libraries=["m"],
            extra_compile_args=["-O3", "-Wall"],
            optional=True,
        ),
    ]
)
