"""The one compiled part: image/_jpeg_blocks.c, over the system's libjpeg (libjpeg-turbo).

Everything else is in pyproject.toml. ``optional``: without a C compiler or libjpeg's headers
(``apt-get install gcc libjpeg62-turbo-dev``; ``scripts/install.sh`` installs them when run as
root) the package installs without it: downloads and other block-aligned crops are then made
from the tiles' decoded planes (``image/tile_blocks.py``), and regions at their own size decode
their tiles one by one (``image/tile_planes.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "iiifserver.image._jpeg_blocks",
            sources=["iiifserver/image/_jpeg_blocks.c"],
            libraries=["jpeg"],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,
        )
    ]
)
