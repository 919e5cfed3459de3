"""Regions and thumbnails from stored JPEG tiles (``tile_mosaic``) against libvips' render.

Each request is planned as the server plans it and rendered twice by ``render.render``: with
the stored tiles decoded by libjpeg-turbo (given the level's grid, as the service gives the
source registry's) and without it (libvips decodes the level through libtiff, the path every
render took before). Outputs are lossless
(PNG) so that only the decode and the resample are compared; dimensions must match exactly.

Bounds, in levels out of 255, measured with libjpeg-turbo 2.1 and libvips 8.18:

* Full-size decode (k = 8, every request a scale over 1/2 of its level: the planner picks the
  smallest level at least the output, so nearly all of them): libvips and libjpeg-turbo run the
  same accurate inverse DCT and fancy upsampling on the same bytes, and the decoded pixels are
  equal; libvips' lanczos3 resize of an array in memory and of the lazily read level differ by
  a rounding step in a few rows. Measured over 8 seeds of these requests on every pyramid here:
  mean 0.003, max 1 (max 3 seen once); bounded at mean < 0.05 and max <= 4.
* DCT-scaled decode (k = 4, 2, 1: outputs of at most a quarter of their crop, which happens
  when no smaller level exists; decoded to at least twice the output, then lanczos3): libjpeg's
  reduced inverse DCT against lanczos3 from the full size. Measured mean 0.27-1.33, max 9 on this
  picture (per-pixel noise and one-pixel lines, the hardest case); bounded at mean < 1.5 and
  max <= 16. A reference one output pixel off measures over twice that mean plus a level: the
  test sees a misplaced crop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import random
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iiifserver import asgi_call
from iiifserver.app import create_app
from iiifserver.config import Settings
from iiifserver.errors import BadRequest, SourceChanged
from iiifserver.image import plane_resize, tile_mosaic
from iiifserver.image.passthrough import level_grid
from iiifserver.image.planner import Box, Plan
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.source_info import Level, SourceFormat, SourceVersion
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_grid import TileGrid
from iiifserver.image.tile_mosaic import DecodedTiles, MosaicError, assemble, scale_for
from tests.image.pyramids import Pyramid, assert_damage_reported_alike, open_fd, plan_for

pytestmark = pytest.mark.skipif(not tile_mosaic.scales(), reason="libturbojpeg is not installed")

OPTIONS = EncodeOptions()


def _pixels(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image).astype(np.int16)


def _grid(pyramid: Pyramid, plan: Plan) -> TileGrid | None:
    """The grid of the plan's level in the pyramid's index: what the service hands the renderer."""
    return level_grid(pyramid.stored, pyramid.info.levels, plan.level)


def _both(pyramid: Pyramid, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    version = SourceVersion.of(pyramid.path.stat())
    new = render(pyramid.path, pyramid.info.format, plan, OPTIONS, version, _grid(pyramid, plan))
    old = render(pyramid.path, pyramid.info.format, plan, OPTIONS, version)
    return _pixels(new), _pixels(old)


def _requests(pyramid: Pyramid, n: int, seed: int) -> list[str]:
    """Random regions off the tile grid at random sizes (no upscaling), and the thumbnails."""
    width, height = pyramid.info.width, pyramid.info.height
    rng = random.Random(seed)
    out = ["full/!200,200/0/default.png", "full/,150/0/default.png", "full/pct:50/0/default.png"]
    out += ["full/!64,64/0/default.png", "full/max/0/default.png"]
    while len(out) < n:
        w, h = rng.randint(8, min(1400, width)), rng.randint(8, min(1400, height))
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        kind = rng.choice(("w,", ",h", "!w,h", "pct"))
        ow = rng.randint(4, w)
        size = {
            "w,": f"{ow},",
            ",h": f",{rng.randint(4, h)}",
            "!w,h": f"!{ow},{ow}",
            "pct": f"pct:{rng.randint(5, 100)}",
        }
        out.append(f"{x},{y},{w},{h}/{size[kind]}/0/default.png")
    # Regions that end at the image's edge: the padded edge tiles of floor-rounded levels.
    out += [f"{width - 301},{height - 203},301,203/,{n}/0/default.png" for n in (17, 60, 101, 150)]
    return out


@pytest.fixture(autouse=True)
def _empty_tile_memory() -> None:
    tile_mosaic.decoded_tiles.clear()


@pytest.fixture(autouse=True)
def _pixels_not_planes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain JPEG requests at other sizes are resampled from the tiles' planes first
    (``test_plane_resize.py``): without that, every resized request here is decoded to pixels."""
    monkeypatch.setattr(plane_resize, "_lanczos", None)


@pytest.mark.parametrize("name", ["q85_pages", "q90_pages", "grey_pages", "odd_256", "odd_64", "q85_subifd"])
def test_regions_and_thumbnails_match_libvips(name: str, request: pytest.FixtureRequest) -> None:
    """4:2:0 and 4:4:4 RGB, gray, floor-rounded levels (3001 / 16 = 187.56 -> 187 px; 64 px tiles),
    SubIFD levels: the same pixels as libvips' render, from the stored tiles."""
    pyramid: Pyramid = request.getfixturevalue(name)
    used = tile_mosaic.decoded_tiles.misses
    means = []
    for url in _requests(pyramid, 40, seed=zlib.crc32(name.encode())):
        try:
            plan = plan_for(pyramid, url)
        except BadRequest:  # a random region too thin for its size: the planner's 400, not ours
            continue
        new, old = _both(pyramid, plan)
        assert new.shape == old.shape, url
        assert new.shape[:2] == (plan.height, plan.width), url
        diff = np.abs(new - old)
        grid = _grid(pyramid, plan)
        assert grid is not None
        scaled = scale_for(grid, plan.crop, plan.width, plan.height)
        if scaled == 8:
            assert diff.mean() < 0.05, (url, diff.mean())
            assert diff.max() <= 4, (url, diff.max())
        else:
            assert diff.mean() < 1.5, (url, scaled, diff.mean())
            assert diff.max() <= 16, (url, scaled, diff.max())
        means.append(diff.mean())
    assert tile_mosaic.decoded_tiles.misses > used  # the stored tiles were decoded, not libvips' level
    assert np.mean(means) < 0.5


def test_dct_scaled_regions(q85_pages: Pyramid, grey_pages: Pyramid, odd_256: Pyramid) -> None:
    """Outputs of at most half their crop (the smallest level, or a small region of it) decode at
    1/2, 1/4, 1/8: exact dimensions, close to lanczos3, and the picture is where it should be."""
    seen = set()
    for pyramid in (q85_pages, grey_pages, odd_256):
        smallest = min(pyramid.info.levels, key=lambda level: level.width)
        factor = pyramid.info.width / smallest.width
        for w, out in ((64, 32), (128, 32), (96, 24), (128, 16), (160, 80), (64, 8), (128, 8), (160, 10)):
            region = round(w * factor)
            url = f"{round(8 * factor)},{round(16 * factor)},{region},{region}/{out},/0/default.png"
            plan = plan_for(pyramid, url)
            grid = _grid(pyramid, plan)
            assert grid is not None
            k = scale_for(grid, plan.crop, plan.width, plan.height)
            seen.add(k)
            new, old = _both(pyramid, plan)
            assert new.shape == old.shape
            assert new.shape[:2] == (plan.height, plan.width)
            diff = np.abs(new - old)
            assert diff.mean() < 1.5, (url, k, diff.mean())
            assert diff.max() <= 16, (url, k, diff.max())
            if k < 8 and plan.width >= 24:
                # A misplaced crop is seen: the same output one pixel off measures far more.
                shifted = np.abs(new[:, 1:] - old[:, :-1]).mean()
                assert shifted > 2 * diff.mean() + 1, (url, shifted, diff.mean())
    assert {2, 4, 8} <= seen


def test_scale_for_only_exact_fast_scalings(q85_pages: Pyramid, odd_64: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    # Scaled only to at least twice the output: lanczos3 then makes the output from it.
    assert scale_for(grid, Box(0, 0, 512, 512), 128, 128) == 4
    assert scale_for(grid, Box(0, 0, 512, 512), 129, 128) == 8
    assert scale_for(grid, Box(0, 0, 512, 512), 256, 256) == 8
    assert scale_for(grid, Box(0, 0, 512, 512), 64, 64) == 2
    assert scale_for(grid, Box(0, 0, 512, 512), 32, 32) == 1
    assert scale_for(grid, Box(1, 0, 512, 512), 32, 32) == 8  # 1/8 would start an eighth of a pixel in
    assert scale_for(grid, Box(2, 0, 512, 512), 64, 64) == 4  # on the 1/2 grid, not on the 1/4 one
    assert scale_for(grid, Box(0, 0, 510, 512), 64, 64) == 4
    assert scale_for(grid, Box(0, 0, 511, 512), 64, 64) == 8
    # The 8 x 8 blocks across the level's edge hold padding: never scaled (1279 = 8 * 159 + 7).
    odd = odd_64.stored.levels[0]
    assert odd is not None
    assert odd.width == 1279
    assert scale_for(odd, Box(1208, 0, 64, 64), 16, 16) == 4  # ends at 1272, the last whole block
    assert scale_for(odd, Box(1210, 0, 64, 64), 16, 16) == 8  # ends at 1274, inside the edge block


def test_mosaic_is_exactly_the_crop(q85_pages: Pyramid) -> None:
    """Tiles across a tile corner, cut exactly: the same pixels as libvips' crop of the level."""
    level = q85_pages.info.levels[0]
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    crop = Box(200, 230, 100, 60)  # four tiles
    mosaic = tile_mosaic.from_file(q85_pages.path, None, grid, crop, 8)
    assert mosaic is not None
    assert mosaic.pixels.shape == (60, 100, 3)
    from tests.image.pyramids import tiffload

    expected = np.asarray(tiffload(q85_pages.path, level).crop(200, 230, 100, 60).numpy())
    assert np.array_equal(mosaic.pixels, expected)
    half = tile_mosaic.from_file(q85_pages.path, None, grid, Box(200, 230, 100, 60), 4)
    assert half is not None
    assert half.pixels.shape == (30, 50, 3)
    assert tile_mosaic.from_file(q85_pages.path, None, grid, Box(201, 230, 100, 60), 4) is None  # off the 1/2 grid


def test_large_crops_are_left_to_libvips(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    assert tile_mosaic.from_file(q85_pages.path, None, grid, Box(0, 0, 3000, 2000), 8) is None  # 6 MP > 4 MP


def test_icc_and_alpha_sources_keep_libvips(q85_pages: Pyramid, monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[object] = []
    monkeypatch.setattr(tile_mosaic, "from_file", lambda *args: called.append(args))
    version = SourceVersion.of(q85_pages.path.stat())
    plan = plan_for(q85_pages, "100,100,500,500/300,/0/default.jpg")
    for changed in (dataclasses.replace(plan, source_has_icc=True), dataclasses.replace(plan, source_has_alpha=True)):
        render(q85_pages.path, q85_pages.info.format, changed, OPTIONS, version, _grid(q85_pages, plan))
    assert called == []
    render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
    assert len(called) == 1  # declined (None), then libvips rendered it


def test_other_sources_keep_libvips(rgb_pages: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deflate pyramid has no JPEG grid: libvips renders it, nothing is decoded here."""
    from tests.image.conftest import Sample
    from tests.image.pyramids import pyramid_of

    assert isinstance(rgb_pages, Sample)
    pyramid = pyramid_of(rgb_pages.path)
    called: list[object] = []
    monkeypatch.setattr(tile_mosaic, "from_file", lambda *args: called.append(args))
    plan = plan_for(pyramid, "100,100,500,500/300,/0/default.png")
    body = render(
        pyramid.path, pyramid.info.format, plan, OPTIONS, SourceVersion.of(pyramid.path.stat()), _grid(pyramid, plan)
    )
    assert _pixels(body).shape[:2] == (300, 300)
    assert called == []


def _damaged_copy(pyramid: Pyramid, tmp_path: Path, how: str) -> Path:
    path = tmp_path / f"{how}.tif"
    shutil.copyfile(pyramid.path, path)
    grid = pyramid.stored.levels[0]
    assert grid is not None
    offset, count = grid.offsets[0], grid.bytecounts[0]
    with path.open("r+b") as fh:
        if how == "marker":  # a stray marker in the entropy-coded data: the splice refuses it
            fh.seek(offset + count // 2)
            fh.write(b"\xff\xc8")
        else:  # the tile's data replaced by noise: libjpeg fails or warns
            fh.seek(offset + count // 3)
            fh.write(np.random.default_rng(3).integers(0, 255, count // 2, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("how", ["marker", "noise"])
def test_a_damaged_tile_is_never_shown(q85_pages: Pyramid, tmp_path: Path, how: str) -> None:
    """A tile that fails to splice or decode cleanly goes back to libvips, which says what it
    always said of it (SourceDamaged, or the same pixels); the tile is not kept either."""
    path = _damaged_copy(q85_pages, tmp_path, how)
    version = SourceVersion.of(path.stat())
    plan = plan_for(q85_pages, "10,10,300,300/200,/0/default.png")
    assert_damage_reported_alike(path, q85_pages, plan, _grid(q85_pages, plan))  # the copy's index is the original's
    grid = _grid(q85_pages, plan)
    assert grid is not None
    with pytest.raises(MosaicError):
        tile_mosaic.from_file(path, version, grid, plan.crop, 8)
    assert tile_mosaic.decoded_tiles.nbytes == 0 or all(
        key[2] != q85_pages.stored.levels[0].offsets[0]  # type: ignore[union-attr]
        for key in tile_mosaic.decoded_tiles._tiles
    )


# Resized (the mosaic) and at the level's own size (the planes, ``tile_planes``).
@pytest.mark.parametrize("url", ["10,10,300,300/200,/0/default.jpg", "10,10,300,300/max/0/default.jpg"])
def test_a_replaced_file_is_source_changed(q85_pages: Pyramid, tmp_path: Path, url: str) -> None:
    path = tmp_path / "replaced.tif"
    shutil.copyfile(q85_pages.path, path)
    version = SourceVersion.of(path.stat())
    plan = plan_for(q85_pages, url)
    render(path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
    replacement = tmp_path / "new.tif"
    shutil.copyfile(q85_pages.path, replacement)
    os.replace(replacement, path)
    with pytest.raises(SourceChanged):
        render(path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))


def test_decoded_tiles_are_reused_and_bounded(q85_pages: Pyramid) -> None:
    version = SourceVersion.of(q85_pages.path.stat())
    plan = plan_for(q85_pages, "10,10,300,300/200,/0/default.jpg")
    first = render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
    misses, hits = tile_mosaic.decoded_tiles.misses, tile_mosaic.decoded_tiles.hits
    assert render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan)) == first
    assert tile_mosaic.decoded_tiles.misses == misses
    assert tile_mosaic.decoded_tiles.hits == hits + 4
    # What is kept is shared between threads: the decoders hand it over read-only.
    kept = list(tile_mosaic.decoded_tiles._tiles.values())
    assert kept
    assert all(not tile.flags.writeable for tile in kept)

    tiles = DecodedTiles(3 * 1000)
    for i in range(5):
        tiles.get(("t", i), lambda: np.zeros((10, 100, 1), np.uint8))
    assert tiles.nbytes == 3000
    assert list(tiles._tiles) == [("t", 2), ("t", 3), ("t", 4)]  # the oldest went first
    tiles.resize(1000)
    assert tiles.nbytes == 1000
    assert list(tiles._tiles) == [("t", 4)]


def test_render_without_version_keeps_nothing(q85_pages: Pyramid) -> None:
    plan = plan_for(q85_pages, "10,10,300,300/200,/0/default.jpg")
    render(q85_pages.path, q85_pages.info.format, plan, OPTIONS, None, _grid(q85_pages, plan))
    assert tile_mosaic.decoded_tiles.nbytes == 0


def test_assemble_reports_undecodable_tiles(q85_pages: Pyramid) -> None:
    grid = q85_pages.stored.levels[0]
    assert grid is not None

    def refuse(index: int) -> bytes:
        raise ValueError(f"tile {index}: short read")

    with pytest.raises(MosaicError, match="short read"):
        assemble(refuse, grid, Box(0, 0, 10, 10), 8)
    with pytest.raises(MosaicError):
        assemble(lambda index: b"\xff\xd8\xff\xd9", grid, Box(0, 0, 10, 10), 8)
    # Cut short: libjpeg only warns ("premature end") and would fill the rest with grey. The
    # warning is an error here, in the decoding thread (no process-wide warning filter involved).
    with open_fd(q85_pages.path) as fd:
        whole = read_stored_tile(fd, grid, 0)
    cut = whole[: len(whole) // 2] + b"\xff\xd9"
    with pytest.raises(MosaicError, match=r"premature end|Corrupt"):
        assemble(lambda index: cut, grid, Box(0, 0, 10, 10), 8)
    assert assemble(lambda index: whole, grid, Box(0, 0, 10, 10), 8) is not None


def test_a_file_rewritten_in_place_during_the_reads_is_source_changed(
    q85_pages: Pyramid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack case D06: the same inode written to while its tiles are read. The change time
    moves, the render is SourceChanged (503, retry), and no tile read meanwhile is kept."""
    path = tmp_path / "rewritten.tif"
    shutil.copyfile(q85_pages.path, path)
    version = SourceVersion.of(path.stat())
    plan = plan_for(q85_pages, "10,10,600,300/200,/0/default.jpg")
    reads = []

    def read_then_write(fd: int, grid: object, index: int) -> bytes:
        reads.append(index)
        if len(reads) == 1:
            with path.open("r+b") as fh:  # same bytes, same size and mtime: only ctime tells
                fh.seek(0)
                fh.write(fh.read(4))
            os.utime(path, ns=(version.mtime_ns, version.mtime_ns))
        return read_stored_tile(fd, grid, index)  # type: ignore[arg-type]

    monkeypatch.setattr(tile_mosaic, "read_stored_tile", read_then_write)
    with pytest.raises(SourceChanged):
        render(path, q85_pages.info.format, plan, OPTIONS, version, _grid(q85_pages, plan))
    assert len(reads) >= 2  # the tiles after the write were read, decoded and then dropped
    assert tile_mosaic.decoded_tiles.nbytes == 0


@pytest.mark.parametrize("passthrough", [True, False])
def test_the_service_hands_the_registrys_grid_to_the_renderer(
    q85_pages: Pyramid, tmp_path: Path, passthrough: bool
) -> None:
    """One grid per source version: a region's render gets the grid the source registry indexed
    (the same object), with or without passthrough, and decodes the stored tiles with it."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copyfile(q85_pages.path, images / "pic.tif")
    settings = Settings(images=images, cache=tmp_path / "cache", disk_cache_mb=0, tile_passthrough=passthrough)
    app = create_app(settings)
    service = app.state.image_service
    real = service._ops.render
    seen: list[tuple[Level, TileGrid | None]] = []

    def spy(path: Path, fmt: SourceFormat, plan: Plan, version: SourceVersion, grid: TileGrid | None) -> bytes:
        seen.append((plan.level, grid))
        body: bytes = real(path, fmt, plan, version, grid)
        return body

    service._ops = dataclasses.replace(service._ops, render=spy)
    misses = tile_mosaic.decoded_tiles.misses
    status, _, body = asyncio.run(asgi_call.call(app, "/iiif/3/pic/10,10,600,300/200,/0/default.png"))
    assert status == 200
    assert _pixels(body).shape[:2] == (100, 200)
    known = service.find_if_known("pic")
    assert known is not None
    assert known.stored is not None
    [(level, grid)] = seen
    assert grid is not None
    assert grid is known.stored.levels[known.info.levels.index(level)]
    assert tile_mosaic.decoded_tiles.misses > misses  # decoded from the stored tiles with it
    service.close()
