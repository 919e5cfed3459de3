"""The passthrough decision: which crops and plans are a stored tile, whole, an edge tile's
valid area, or one pixel short (stretched).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np
import pytest

from iiifserver.image import tile_codec, tile_stretch
from iiifserver.image.passthrough import TileRef, edge_tile_for, passthrough_tile, stored_tile_for, tile_for
from iiifserver.image.planner import Box, Plan
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.request import Format, Quality
from iiifserver.image.source_info import Colour, Level
from iiifserver.image.tile_codec import available as lossless_crop_available
from iiifserver.image.tile_codec import lossless_crop
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_grid import StoredTiles
from tests.image.pyramids import (
    Pyramid,
    edge_crop,
    open_fd,
    osd_urls,
    pillow_pixels,
    plan_for,
    vips_pixels,
    vips_region,
)

# -- which crops are a stored tile -----------------------------------------------------------


@pytest.mark.parametrize("name", ["q85_pages", "odd_512", "odd_256"])
def test_edge_tiles_are_not_served(name: str, request: pytest.FixtureRequest) -> None:
    """Edge tiles are stored padded to the full tile size: their crops are smaller, never passed."""
    pyramid: Pyramid = request.getfixturevalue(name)
    edges = 0
    for grid in pyramid.stored.levels:
        assert grid is not None
        tw, th = grid.tile_width, grid.tile_height
        for y in range(0, grid.height, th):
            for x in range(0, grid.width, tw):
                crop = Box(x, y, min(tw, grid.width - x), min(th, grid.height - y))
                whole = crop.w == tw and crop.h == th
                assert (tile_for(grid, crop) is not None) is whole
                if not whole:
                    edges += 1
                    assert tile_for(grid, Box(x, y, tw, th)) is None  # the padded tile, beyond the edge
    assert edges > 0


def test_crops_off_the_grid_are_not_served(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    assert tile_for(grid, Box(256, 512, 256, 256)) == 2 * grid.across + 1
    for crop in (
        Box(1, 0, 256, 256),
        Box(0, 128, 256, 256),
        Box(0, 0, 255, 256),
        Box(0, 0, 256, 257),
        Box(0, 0, 512, 512),
        Box(0, 0, 128, 128),
        Box(-256, 0, 256, 256),
        Box(0, -256, 256, 256),
        Box(2816, 0, 256, 256),  # beyond 3000 px
    ):
        assert tile_for(grid, crop) is None, crop


# -- which plans qualify ---------------------------------------------------------------------


def test_deep_zoom_tile_requests_map_onto_stored_tiles(q85_pages: Pyramid) -> None:
    info, stored = q85_pages.info, q85_pages.stored
    cases = {
        "0,0,256,256/256,/0/default.jpg": (0, 0),
        "768,512,256,256/256,256/0/color.jpg": (0, 2 * 12 + 3),
        "512,0,512,512/256,/0/default.jpg": (1, 1),  # level 1 (1500x1000): its tile (256, 0)
        "1024,0,1024,1024/256,/0/default.jpg": (2, 1),  # level 2 (750x500): its tile (256, 0)
    }
    for url, (level_index, tile) in cases.items():
        found = passthrough_tile(stored, info.levels, plan_for(q85_pages, url))
        assert found is not None, url
        grid, index = found
        assert grid is stored.levels[level_index]
        assert index == tile, url
    for url in (
        "2816,0,184,256/184,/0/default.jpg",  # right edge tile
        "0,0,256,256/128,/0/default.jpg",  # scaled
        "0,0,256,256/256,/90/default.jpg",
        "0,0,256,256/256,/!0/default.jpg",
        "0,0,256,256/256,/0/gray.jpg",
        "0,0,256,256/256,/0/bitonal.jpg",
        "0,0,256,256/256,/0/default.png",
        "0,0,256,256/256,/0/default.webp",
        "128,0,256,256/256,/0/default.jpg",  # off the grid
        "0,0,512,512/255,/0/default.jpg",  # level 1 is 1 px short: a stretch, not the tile
    ):
        assert passthrough_tile(stored, info.levels, plan_for(q85_pages, url)) is None, url


def test_plan_conditions(q85_pages: Pyramid, grey_pages: Pyramid) -> None:
    info, stored = q85_pages.info, q85_pages.stored
    base = Plan(
        level=info.levels[0],
        crop=Box(256, 256, 256, 256),
        width=256,
        height=256,
        mirror=False,
        degrees=Decimal(0),
        quality=Quality.COLOR,
        format=Format.JPG,
        source_colour=Colour.RGB,
        source_has_icc=False,
        source_has_alpha=False,
    )
    assert passthrough_tile(stored, info.levels, base) is not None
    for change in (
        {"source_has_icc": True},  # the renderer converts to sRGB; stored values are not sRGB
        {"source_has_alpha": True},
        {"width": 255},
        {"height": 257},
        {"degrees": Decimal(180)},
        {"mirror": True},
        {"quality": Quality.GRAY},
        {"format": Format.PNG},
        {"source_colour": Colour.GRAY},
        {"level": Level(1, 1)},  # not one of the levels the index was built for
    ):
        assert passthrough_tile(stored, info.levels, dataclasses.replace(base, **change)) is None, change
    empty = StoredTiles((None,) * len(info.levels))
    assert passthrough_tile(empty, info.levels, base) is None
    grey = dataclasses.replace(base, level=grey_pages.info.levels[0], quality=Quality.GRAY, source_colour=Colour.GRAY)
    assert passthrough_tile(grey_pages.stored, grey_pages.info.levels, grey) is not None
    grey_as_colour = dataclasses.replace(grey, quality=Quality.COLOR)  # the renderer makes 3 bands
    assert passthrough_tile(grey_pages.stored, grey_pages.info.levels, grey_as_colour) is None


# -- edge tiles: the valid part of a padded tile, cut losslessly -----------------------------------


def test_edge_tile_for_only_matches_the_valid_area(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    last = len(grid.offsets) - 1
    crop, _ = edge_crop(q85_pages, 0, last)
    assert (crop.w, crop.h) != (grid.tile_width, grid.tile_height)  # the fixture has padded edges
    assert edge_tile_for(grid, crop) == last
    assert edge_tile_for(grid, Box(crop.x, crop.y, crop.w - 1, crop.h)) is None  # not the whole valid part
    assert edge_tile_for(grid, Box(0, 0, 256, 256)) is None  # a whole tile is passthrough proper
    assert edge_tile_for(grid, Box(crop.x + 8, crop.y, crop.w - 8, crop.h)) is None  # off the grid


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
@pytest.mark.parametrize(("name", "exact"), [("q90_pages", True), ("q85_pages", False), ("grey_pages", True)])
def test_lossless_edge_crop_gives_the_stored_pixels(name: str, exact: bool, request: pytest.FixtureRequest) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    for level_index, grid in enumerate(pyramid.stored.levels):
        if grid is None:
            continue
        edges = [i for i in range(len(grid.offsets)) if edge_tile_for(grid, edge_crop(pyramid, level_index, i)[0])]
        for index in edges:
            crop, _ = edge_crop(pyramid, level_index, index)
            with open_fd(pyramid.path) as fd:
                cut = lossless_crop(read_stored_tile(fd, grid, index), crop.w, crop.h)
            assert cut is not None
            got = vips_pixels(cut)
            want = vips_region(pyramid, level_index, crop)
            assert got.shape == want.shape
            diff = np.abs(got.astype(int) - want.astype(int))
            if exact:
                assert diff.max() == 0, (level_index, index)
            else:
                # 4:2:0: the decoder upsamples chroma of the smaller image slightly differently.
                assert diff.mean() < 1.0, (level_index, index)
                assert diff.max() <= 32, (level_index, index)


# -- edge tiles one pixel short: stretched stored tiles ---------------------------------------


@pytest.mark.parametrize(("name", "stretched"), [("q85_pages", 1), ("odd_256", 10), ("grey_pages", 1), ("odd_64", 32)])
def test_every_deep_zoom_tile_is_a_stored_tile(name: str, stretched: int, request: pytest.FixtureRequest) -> None:
    """Whole, cut to its valid area, or, where the floor-rounded level is one pixel short of the
    ceil-rounded size viewers ask for (3000 / 16 = 187.5 -> 188 from 187), stretched by it."""
    pyramid: Pyramid = request.getfixturevalue(name)
    info, stored = pyramid.info, pyramid.stored
    kinds = {"whole": 0, "edge": 0, "stretched": 0}
    for level_index, url in osd_urls(pyramid):
        if name == "grey_pages":
            url = url.replace("default", "gray")
        the_plan = plan_for(pyramid, url)
        ref = stored_tile_for(stored, info.levels, the_plan, edges=True, stretch=True)
        assert ref is not None, url
        assert ref.grid is stored.levels[level_index]
        assert (ref.out_width, ref.out_height) == (the_plan.width, the_plan.height)
        without = stored_tile_for(stored, info.levels, the_plan, edges=True, stretch=False)
        if ref.stretched:
            kinds["stretched"] += 1
            assert without is None, url  # rendered when stretching is off
            level = info.levels[level_index]
            column, row = ref.index % ref.grid.across, ref.index // ref.grid.across
            # Only at the level's right or bottom edge, by the pixel it lacks there.
            assert ref.out_width == ref.width or column * ref.grid.tile_width + ref.width == level.width
            assert ref.out_height == ref.height or row * ref.grid.tile_height + ref.height == level.height
            assert {ref.out_width - ref.width, ref.out_height - ref.height} <= {0, 1}
        else:
            kinds["edge" if ref.is_edge else "whole"] += 1
            assert without == ref
    assert kinds["stretched"] == stretched
    assert kinds["whole"] > 0
    assert kinds["edge"] > 0


def test_stretching_is_refused_where_it_would_not_be_one_pixel(q85_pages: Pyramid, odd_512: Pyramid) -> None:
    info, stored = q85_pages.info, q85_pages.stored
    assert stored_tile_for(
        stored, info.levels, plan_for(q85_pages, "full/188,/0/default.jpg"), edges=True, stretch=True
    )
    for url in (
        "full/189,/0/default.jpg",  # two pixels more than the 187 px level
        "full/186,/0/default.jpg",  # smaller: a reduction
        "full/188,/90/default.jpg",
        "full/188,/0/default.png",
    ):
        assert stored_tile_for(stored, info.levels, plan_for(q85_pages, url), edges=True, stretch=True) is None, url
    # 512 px tiles: decoding one takes too long for where stretches are done; rendered instead.
    urls = [url for _, url in osd_urls(odd_512)]
    plans = [plan_for(odd_512, url) for url in urls]
    one_short = [p for p in plans if (p.width, p.height) != (p.crop.w, p.crop.h)]
    assert one_short
    for the_plan in one_short:
        assert stored_tile_for(odd_512.stored, odd_512.info.levels, the_plan, edges=True, stretch=True) is None


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
@pytest.mark.parametrize(("name", "quality"), [("q85_pages", 85), ("odd_256", 90), ("grey_pages", 85)])
def test_stretched_tiles_show_what_the_renderer_shows(name: str, quality: int, request: pytest.FixtureRequest) -> None:
    """The same plan through libvips (crop, bicubic enlargement by the pixel, encode) and as a
    stretched stored tile: the same picture, within what a JPEG generation and the two
    kernels make of it; and far from it when the stretched tile is the wrong one."""
    pyramid: Pyramid = request.getfixturevalue(name)
    info, stored = pyramid.info, pyramid.stored
    encoding = tile_codec.Encoding(quality, chroma_subsampling=True)
    options = EncodeOptions(jpeg_quality=quality, jpeg_chroma_subsampling=True)
    compared = 0
    for _, url in osd_urls(pyramid):
        if name == "grey_pages":
            url = url.replace("default", "gray")
        the_plan = plan_for(pyramid, url)
        ref = stored_tile_for(stored, info.levels, the_plan, edges=True, stretch=True)
        if ref is None or not ref.stretched:
            continue
        with open_fd(pyramid.path) as fd:
            tile = read_stored_tile(fd, ref.grid, ref.index)
            many = len(ref.grid.offsets) > 1
            neighbour = read_stored_tile(fd, ref.grid, ref.index - 1 if ref.index else 1) if many else None
        gray = ref.grid.components == 1
        size = (ref.width, ref.height, ref.out_width, ref.out_height)
        ours = tile_stretch.stretched(tile, *size, gray=gray, encoding=encoding)
        assert ours is not None
        rendered = pillow_pixels(render(pyramid.path, info.format, the_plan, options)).astype(int)
        got = pillow_pixels(ours).astype(int)
        assert got.shape == rendered.shape, url
        diff = np.abs(got - rendered)
        assert diff.mean() < 3.0, url  # measured 1.0-2.1
        assert np.percentile(diff, 99) <= 16, url  # measured 5-11
        if neighbour is not None:
            wrong = tile_stretch.stretched(neighbour, *size, gray=gray, encoding=encoding)
            assert wrong is not None
            assert np.abs(pillow_pixels(wrong).astype(int) - rendered).mean() > 10, url  # measured 21-82
        compared += 1
    assert compared > 0


def test_as_stored_is_a_tile_neither_cut_nor_stretched(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    whole = TileRef(grid, 0, grid.tile_width, grid.tile_height, grid.tile_width, grid.tile_height)
    assert whole.as_stored
    assert not dataclasses.replace(whole, width=100, out_width=100).as_stored  # cut
    assert not dataclasses.replace(whole, out_width=grid.tile_width + 1).as_stored  # a whole tile stretched
    assert not dataclasses.replace(whole, width=100, out_width=101).as_stored  # cut and stretched
