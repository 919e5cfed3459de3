"""The TIFF directory reader: layouts libvips does not write (byte orders, BigTIFF, tiles
without their own APP14, RGB component ids), and the levels and files that have no stored tiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iiifserver.image.jpeg_splice import ADOBE_RGB
from iiifserver.image.source_info import Level
from iiifserver.image.tiff_directory import read_tile_index
from iiifserver.image.tile_files import read_stored_tile
from tests.image.conftest import Sample
from tests.image.pyramids import (
    Pyramid,
    open_fd,
    pillow_pixels,
    pyramid_of,
    raw_tiles,
    segments,
    tiffload,
    vips_pixels,
    without_app14,
    write_tiled,
)

# -- layouts libvips does not write ----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"byteorder": ">"}, {"bigtiff": True, "byteorder": ">"}],
    ids=["little-endian", "big-endian", "bigtiff-big-endian"],
)
def test_tiles_without_their_own_app14_get_the_header_one(
    options: dict[str, Any], q90_pages: Pyramid, work_dir: Path
) -> None:
    """libtiff-written RGB tiles have no APP14: the header supplies it; the pixels are the same."""
    level = q90_pages.info.levels[0]
    tiles, tables = raw_tiles(q90_pages.path)
    name = "no_app14_" + "_".join(f"{k}{v}" for k, v in options.items()) + ".tif"
    path = write_tiled(
        work_dir / name,
        [without_app14(tile) for tile in tiles],
        (level.height, level.width, 3),
        tables=tables,
        photometric="rgb",
        **options,
    )
    grid = read_tile_index(path, [level]).levels[0]
    reference = q90_pages.stored.levels[0]
    assert grid is not None
    assert reference is not None
    assert list(grid.offsets) != list(reference.offsets)  # a different file layout ...
    assert list(grid.bytecounts) == [count - 16 for count in reference.bytecounts]  # ... of the same tiles
    source = tiffload(q90_pages.path, level)
    with open_fd(path) as fd:
        for index in (0, grid.across + 1, grid.tile_count - grid.across - 2):
            data = read_stored_tile(fd, grid, index)
            assert data.count(b"Adobe") == 1
            x, y = (index % grid.across) * 256, (index // grid.across) * 256
            expected = np.asarray(source.crop(x, y, 256, 256).numpy())
            assert np.array_equal(pillow_pixels(data), expected)
            assert np.array_equal(vips_pixels(data), expected)


def test_adobe_marker_is_what_makes_rgb_tiles_rgb_for_other_component_ids(q90_pages: Pyramid) -> None:
    """Evidence for the APP14. libjpeg takes component ids 'R','G','B' (82, 71, 66), as libjpeg
    writes them, for RGB even without a marker; ids 1,2,3 (or unknown ones) it takes for YCbCr
    and converts the colours. The header's APP14 transform=0 says RGB whatever the ids are.
    """
    grid = q90_pages.stored.levels[0]
    assert grid is not None
    with open_fd(q90_pages.path) as fd:
        data = read_stored_tile(fd, grid, 0)
    expected = pillow_pixels(data)
    without_marker = data.replace(ADOBE_RGB, b"", 1)
    assert np.array_equal(pillow_pixels(without_marker), expected)  # ids R,G,B suffice for libjpeg
    renumbered = bytearray(without_marker)
    for marker, pos in segments(without_marker):
        if marker == 0xC0:  # SOF0: P, Y, X, Nf, then (id, sampling, table) per component
            renumbered[pos + 10], renumbered[pos + 13], renumbered[pos + 16] = 1, 2, 3
        elif marker == 0xDA:  # SOS: Ns, then (id, tables) per component
            renumbered[pos + 5], renumbered[pos + 7], renumbered[pos + 9] = 1, 2, 3
    assert renumbered != without_marker
    as_ycbcr = pillow_pixels(bytes(renumbered))
    assert np.abs(as_ycbcr.astype(int) - expected).mean() > 20  # decoded as YCbCr: wrong colours
    with_marker = bytes(renumbered[:2]) + ADOBE_RGB + bytes(renumbered[2:])
    assert np.array_equal(pillow_pixels(with_marker), expected)
    assert np.array_equal(vips_pixels(with_marker), expected)


# -- refusals --------------------------------------------------------------------------------


def test_lossless_and_untiled_sources_have_no_stored_tiles(
    rgb_pages: Sample, tiled_single: Sample, strip_tiff: Sample, gray_pyramid: Sample
) -> None:
    for sample in (rgb_pages, tiled_single, strip_tiff, gray_pyramid):
        pyramid = pyramid_of(sample.path)
        assert pyramid.stored.levels == (None,) * len(pyramid.info.levels)
        assert not pyramid.stored.has_passthrough


def test_non_tiff_and_empty_files_have_no_stored_tiles(plain_jpeg: Sample, empty_file: Sample) -> None:
    assert read_tile_index(plain_jpeg.path, [Level(800, 600)]).levels == (None,)
    assert read_tile_index(empty_file.path, [Level(1, 1), Level(1, 1)]).levels == (None, None)
    with pytest.raises(FileNotFoundError):
        read_tile_index(empty_file.path.with_name("missing.tif"), [Level(1, 1)])


def test_levels_the_file_does_not_describe_are_none(q85_pages: Pyramid, q85_subifd: Pyramid) -> None:
    level0 = q85_pages.info.levels[0]
    assert read_tile_index(q85_pages.path, [level0]).levels[0] is not None
    for level in (
        Level(level0.width + 1, level0.height),  # not the size the probe saw
        Level(level0.width, level0.height, page=99),
        Level(level0.width, level0.height, page=0, subifd=0),  # a pages pyramid has no SubIFDs
    ):
        assert read_tile_index(q85_pages.path, [level]).levels == (None,)
    sub = q85_subifd.info.levels
    assert read_tile_index(q85_subifd.path, [Level(sub[1].width, sub[1].height, page=0, subifd=7)]).levels == (None,)


@pytest.mark.parametrize(
    ("case", "shape", "options"),
    [
        ("old-style JPEG (6)", (512, 512, 3), {"compression": 6, "photometric": "rgb"}),
        ("no JPEGTables", (512, 512, 3), {"tables": None, "photometric": "rgb"}),
        ("planar", (3, 512, 512), {"photometric": "rgb", "planarconfig": "separate"}),
        ("16-bit", (512, 512, 3), {"photometric": "rgb", "dtype": "uint16"}),
        ("CMYK", (512, 512, 4), {"photometric": "separated"}),
        ("RGBA", (512, 512, 4), {"photometric": "rgb", "extrasamples": [2]}),
        ("MinIsWhite", (512, 512), {"photometric": "miniswhite"}),
        ("deflate", (512, 512, 3), {"compression": 8, "photometric": "rgb"}),
    ],
)
def test_unsupported_layouts_are_none(
    case: str, shape: tuple[int, ...], options: dict[str, Any], q85_pages: Pyramid, work_dir: Path
) -> None:
    tiles, tables = raw_tiles(q85_pages.path)  # the index never reads tile data
    kwargs: dict[str, Any] = {"tables": tables, **options}
    n = 3 * 4 if "planarconfig" in options else 4
    path = write_tiled(work_dir / f"layout_{case.split()[0]}.tif", tiles[:n], shape, **kwargs)
    assert read_tile_index(path, [Level(512, 512)]).levels == (None,)
    control = write_tiled(work_dir / "layout_ok.tif", tiles[:4], (512, 512, 3), tables=tables, photometric="ycbcr")
    assert read_tile_index(control, [Level(512, 512)]).levels[0] is not None
