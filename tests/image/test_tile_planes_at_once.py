"""The C extension's way to a crop's planes (``tile_planes.crop_planes_at_once``): every covered
tile decoded in one call, straight into the crop's planes. It must give the planes the way
without the extension gives (``crop_planes`` over ``tile_codec.decode_planes``), sample for
sample, refuse what that way refuses, and never crash on what a damaged file holds."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest

from iiifserver.image import tile_codec, tile_planes
from iiifserver.image.planner import Box
from iiifserver.image.tile_files import read_stored_tile
from iiifserver.image.tile_grid import TileGrid
from iiifserver.image.tile_mosaic import MosaicError
from iiifserver.image.tile_planes import crop_planes, crop_planes_at_once
from tests.image.pyramids import Pyramid, damaged_copies, open_fd
from tests.image.test_tile_planes import SYNTHETIC_LEVELS, _crops, _level_planes, _synthetic_grid, _tiles_of

pytestmark = pytest.mark.skipif(
    tile_planes._jpeg_blocks is None,
    reason="the C extension is not built (test_tile_blocks.py::test_the_extension_is_built fails)",
)


def _jpeg_tiles(grid: TileGrid, sampling: int) -> dict[int, bytes]:
    """The synthetic level's tiles as JPEGs, each padded to the whole tile size as a TIFF stores them."""
    out = {}
    for index, planes in _tiles_of(grid, _level_planes(grid, sampling), sampling).items():
        factors = [(1, 1)] + [tile_codec.PLANE_SAMPLINGS.get(sampling, (1, 1))] * (len(planes.planes) - 1)
        padded = tuple(
            np.ascontiguousarray(
                np.pad(
                    plane,
                    ((0, grid.tile_height // fy - plane.shape[0]), (0, grid.tile_width // fx - plane.shape[1])),
                    mode="edge",
                )
            )
            for plane, (fx, fy) in zip(planes.planes, factors, strict=True)
        )
        out[index] = tile_codec.encode_planes(tile_codec.Planes(sampling, padded), quality=90)
    return out


def _both_ways(
    read: Callable[[int], bytes], grid: TileGrid, crop: Box, want: int
) -> tuple[tile_codec.Planes | None, tile_codec.Planes | None]:
    per_tile = crop_planes(lambda i: tile_codec.decode_planes(read(i)), grid, crop, want=want)
    return crop_planes_at_once(read, grid, crop, want=want), per_tile


def _assert_same(at_once: tile_codec.Planes | None, per_tile: tile_codec.Planes | None, crop: Box) -> None:
    assert at_once is not None, crop
    assert per_tile is not None, crop
    assert at_once.sampling == per_tile.sampling
    assert len(at_once.planes) == len(per_tile.planes)
    for a, b in zip(at_once.planes, per_tile.planes, strict=True):
        assert a.shape == b.shape, crop
        assert np.array_equal(a, b), crop


@pytest.mark.parametrize(
    ("sampling", "width", "height", "tile"), [*SYNTHETIC_LEVELS, (tile_codec.SAMPLING_GRAY, 77, 131, 16)]
)
def test_synthetic_levels_give_the_planes_of_tile_by_tile(sampling: int, width: int, height: int, tile: int) -> None:
    grid = _synthetic_grid(width, height, tile)
    jpegs = _jpeg_tiles(grid, sampling)
    read: list[int] = []

    def reading(index: int) -> bytes:
        read.append(index)
        return jpegs[index]

    for crop in _crops(grid, 60, seed=width * tile + sampling):
        read.clear()
        at_once, per_tile = _both_ways(reading, grid, crop, sampling)
        _assert_same(at_once, per_tile, crop)
        # Each covered tile read once by each way, and no other.
        assert sorted(read[: len(read) // 2]) == sorted(read[len(read) // 2 :]), crop


@pytest.mark.parametrize("name", ["q85_pages", "grey_pages", "odd_64", "q85_subifd"])
def test_pyramids_give_the_planes_of_tile_by_tile(name: str, request: pytest.FixtureRequest) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    with open_fd(pyramid.path) as fd:
        for level in range(min(3, len(pyramid.stored.levels))):
            grid = pyramid.stored.levels[level]
            assert grid is not None
            read = functools.partial(read_stored_tile, fd, grid)
            sampling = tile_codec.decode_planes(read(0)).sampling
            for crop in _crops(grid, 25, seed=level * 31 + len(name)):
                at_once, per_tile = _both_ways(read, grid, crop, sampling)
                _assert_same(at_once, per_tile, crop)


def test_what_the_tiles_are_not_is_declined_or_refused() -> None:
    grid = _synthetic_grid(64, 32, 32)
    jpegs = _jpeg_tiles(grid, tile_codec.SAMPLING_420)
    whole = Box(0, 0, 64, 32)
    # The first tile sampled otherwise than wanted: not for this path, as tile by tile.
    assert crop_planes_at_once(jpegs.__getitem__, grid, whole, want=tile_codec.SAMPLING_444) is None
    assert crop_planes_at_once(jpegs.__getitem__, grid, whole, want=tile_codec.SAMPLING_GRAY) is None
    # A later tile sampled unlike the first: the file is not what its first tile says.
    grey = _jpeg_tiles(grid, tile_codec.SAMPLING_GRAY)
    with pytest.raises(MosaicError, match="sampled unlike"):
        crop_planes_at_once({0: jpegs[0], 1: grey[1]}.__getitem__, grid, whole, want=tile_codec.SAMPLING_420)
    # A tile of another size than the grid's.
    small = _jpeg_tiles(_synthetic_grid(64, 32, 16), tile_codec.SAMPLING_420)
    with pytest.raises(MosaicError, match="not 32x32"):
        crop_planes_at_once({0: jpegs[0], 1: small[0]}.__getitem__, grid, whole, want=tile_codec.SAMPLING_420)
    # A read the splice refused.
    with pytest.raises(MosaicError, match="refused"):
        crop_planes_at_once(_refuse, grid, whole, want=tile_codec.SAMPLING_420)
    # Geometry the planes path never takes, before any read.
    assert crop_planes_at_once(_refuse, grid, Box(0, 0, 65, 32), want=tile_codec.SAMPLING_420) is None


def _refuse(index: int) -> bytes:
    raise ValueError(f"tile {index}: refused")


def test_rgb_coded_tiles_are_declined(q90_pages: Pyramid) -> None:
    grid = q90_pages.stored.levels[0]
    assert grid is not None
    with open_fd(q90_pages.path) as fd:
        read = lambda i: read_stored_tile(fd, grid, i)  # noqa: E731
        assert crop_planes_at_once(read, grid, Box(10, 10, 300, 300), want=tile_codec.SAMPLING_444) is None
        assert crop_planes_at_once(read, grid, Box(10, 10, 300, 300), want=tile_codec.SAMPLING_420) is None


def test_damaged_tiles_fail_as_tile_by_tile(q85_pages: Pyramid) -> None:
    """200 random damages of one covered tile: both ways fail (``MosaicError``), or both give the
    same planes; never a crash, never planes where the other way saw damage."""
    grid = q85_pages.stored.levels[0]
    assert grid is not None
    crop = Box(100, 50, 300, 200)
    with open_fd(q85_pages.path) as fd:
        tiles = {i: read_stored_tile(fd, grid, i) for i in (0, 1, grid.across, grid.across + 1)}
    outcomes: set[str] = set()
    for damaged in damaged_copies(tiles[1], 200, seed=11):
        read = {**tiles, 1: damaged}.__getitem__
        results: list[tile_codec.Planes | str | None] = []
        for way in (crop_planes_at_once, _per_tile):
            try:
                results.append(way(read, grid, crop, want=tile_codec.SAMPLING_420))
            except MosaicError:
                results.append("error")
        if "error" in results:
            assert results == ["error", "error"]
            outcomes.add("error")
        else:
            assert not isinstance(results[0], str)
            assert not isinstance(results[1], str)
            _assert_same(results[0], results[1], crop)
            outcomes.add("planes")
    assert "error" in outcomes
    for junk in (b"", b"\xff\xd8", b"not a jpeg at all", bytes(5000)):
        with pytest.raises(MosaicError, match="tile 0"):
            crop_planes_at_once({**tiles, 0: junk}.__getitem__, grid, crop, want=tile_codec.SAMPLING_420)


def _per_tile(read: Callable[[int], bytes], grid: TileGrid, crop: Box, *, want: int) -> tile_codec.Planes | None:
    def decode(index: int) -> tile_codec.Planes:
        try:
            return tile_codec.decode_planes(read(index))
        except tile_codec.TurboError as exc:
            raise MosaicError(str(exc)) from None

    return crop_planes(decode, grid, crop, want=want)


def test_the_extension_checks_its_arguments(q85_pages: Pyramid) -> None:
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined]

    grid = q85_pages.stored.levels[0]
    assert grid is not None
    with open_fd(q85_pages.path) as fd:
        tiles = [read_stored_tile(fd, grid, i) for i in range(2)]
    outs = [np.empty((10, 20), np.uint8), np.empty((5, 10), np.uint8), np.empty((5, 10), np.uint8)]
    spans = [(0, 20, 0, 10, 1, 1), (0, 10, 0, 5, 2, 2), (0, 10, 0, 5, 2, 2)]

    def call(tiles: object = tiles, spans: object = spans, outs: object = outs, **changes: int) -> object:
        args = {"tile_width": 256, "tile_height": 256, "columns": 2, "first_column": 0, "first_row": 0}
        args.update(components=3, h_factor=2, v_factor=2)
        args.update(changes)
        return _jpeg_blocks.crop_planes(tiles, spans=spans, outs=outs, **args)

    assert call() == ((20, 10), (10, 5), (10, 5))
    with pytest.raises(TypeError):
        call([tiles[0], "not bytes"])
    with pytest.raises(ValueError, match="whole rows"):
        call(tiles[:1])
    for bad in ({"tile_width": 0}, {"tile_width": 24}, {"columns": 0}, {"components": 2}, {"h_factor": 3}):
        with pytest.raises(ValueError, match="out of range"):
            call(**bad)
    with pytest.raises(ValueError, match="span out of range"):
        call(spans=[(0, 20, 0, 10, 2, 2), *spans[1:]])
    with pytest.raises(ValueError, match="span out of range"):
        call(spans=[(-1, 20, 0, 10, 1, 1), *spans[1:]])
    with pytest.raises(ValueError, match="out of range"):
        call(spans=spans[:2])
    with pytest.raises(ValueError, match="not its span's size"):
        call(outs=[np.empty((10, 19), np.uint8), *outs[1:]])
    with pytest.raises(BufferError):
        call(outs=[bytes(200), *outs[1:]])  # not writable
