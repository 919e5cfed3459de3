"""The C extension's splice of coded blocks (``_jpeg_blocks.splice``): what ``assemble`` makes
(the stored blocks of a block-aligned crop), without decoding the blocks. It must decode to the
same samples as ``assemble``'s output, decline what it cannot copy (``assemble`` then makes the
crop), and fail where ``assemble`` fails: damaged data is never spliced into a response."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
import pyvips

from iiifserver.image import tile_blocks, tile_codec
from iiifserver.image.tile_files import read_stored_tile
from tests.image.pyramids import Pyramid, damaged_copies, open_fd, stored_tiles

pytestmark = pytest.mark.skipif(not tile_blocks.available(), reason="the C extension is not built")

Q420, Q444, GRAY = tile_codec.SAMPLING_420, tile_codec.SAMPLING_444, tile_codec.SAMPLING_GRAY


def _both(tiles: list[bytes], **geometry: int) -> tuple[bytes | None, bytes | None]:
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined]

    args = {"quality": 85, "h_factor": 2, "v_factor": 2, **geometry}
    return _jpeg_blocks.splice(tiles, **args), _jpeg_blocks.assemble(tiles, **args)


def _assert_same_samples(spliced: bytes | None, assembled: bytes | None, what: object) -> None:
    assert spliced is not None, what
    assert assembled is not None, what
    a, b = tile_codec.decode_planes(spliced), tile_codec.decode_planes(assembled)
    assert a.sampling == b.sampling, what
    for x, y in zip(a.planes, b.planes, strict=True):
        assert x.shape == y.shape, what
        assert np.array_equal(x, y), what


def _frame(jpeg: bytes) -> tuple[int, int, int]:
    """(SOF marker, width, height) of a JPEG."""
    at = 2
    while at < len(jpeg):
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", jpeg[at + 5 : at + 9])
            return marker, width, height
        at += 2 + length
    raise AssertionError("no frame")


@pytest.mark.parametrize(
    ("name", "mcu", "factor"), [("q85_pages", 16, 2), ("q85_subifd", 16, 2), ("odd_64", 16, 2), ("grey_pages", 8, 1)]
)
def test_pyramids_splice_to_assembles_samples(name: str, mcu: int, factor: int, request: pytest.FixtureRequest) -> None:
    pyramid: Pyramid = request.getfixturevalue(name)
    rng = random.Random(len(name))
    with open_fd(pyramid.path) as fd:
        for grid in pyramid.stored.levels:
            if grid is None or grid.tile_width % mcu:
                continue
            crops = [(0, 0, grid.width, grid.height), (0, 0, 1, 1)]
            last_x, last_y = (grid.width - 1) // mcu * mcu, (grid.height - 1) // mcu * mcu
            crops.append((last_x, last_y, grid.width - last_x, grid.height - last_y))
            while len(crops) < 12:
                x, y = rng.randrange(0, grid.width, mcu), rng.randrange(0, grid.height, mcu)
                crops.append((x, y, rng.randint(1, grid.width - x), rng.randint(1, grid.height - y)))
            for x, y, w, h in crops:
                c0, r0 = x // grid.tile_width, y // grid.tile_height
                columns = (x + w - 1) // grid.tile_width - c0 + 1
                rows = (y + h - 1) // grid.tile_height - r0 + 1
                indexes = [(r0 + r) * grid.across + c0 + c for r in range(rows) for c in range(columns)]
                tiles = [read_stored_tile(fd, grid, i) for i in indexes]
                geometry = {"x": x - c0 * grid.tile_width, "y": y - r0 * grid.tile_height, "width": w, "height": h}
                spliced, assembled = _both(
                    tiles,
                    tile_width=grid.tile_width,
                    tile_height=grid.tile_height,
                    columns=columns,
                    h_factor=factor,
                    v_factor=factor,
                    **geometry,
                )
                _assert_same_samples(spliced, assembled, (grid.width, x, y, w, h))
                assert spliced is not None
                assert _frame(spliced) == (0xC0, w, h)
                assert spliced[2:4] == b"\xff\xe0"
                assert spliced[6:11] == b"JFIF\x00"


def _synthetic_tiles(columns: int, rows: int, tile: int, subsampling: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    level = np.cumsum(rng.integers(-9, 10, (rows * tile, columns * tile, 3)), axis=1) + 128
    level = np.clip(level, 0, 255).astype(np.uint8)
    return [
        tile_codec.encode(
            np.ascontiguousarray(level[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]),
            quality=85,
            subsampling=subsampling,
        )
        for r in range(rows)
        for c in range(columns)
    ]


@pytest.mark.parametrize(("subsampling", "factor"), [(Q420, 2), (Q444, 1)])
def test_synthetic_tiles_splice_to_assembles_samples(subsampling: int, factor: int) -> None:
    """Busy tiles (large DC steps between blocks, long AC runs) in both colour samplings, every
    MCU-aligned corner of a 3 x 2 grid of 64-pixel tiles, crops ending anywhere."""
    tiles = _synthetic_tiles(3, 2, 64, subsampling, seed=factor)
    mcu = 8 * factor
    rng = random.Random(factor)
    for y in range(0, 128, mcu):
        for x in range(0, 192, mcu):
            w, h = rng.randint(1, 192 - x), rng.randint(1, 128 - y)
            c0, r0 = x // 64, y // 64
            columns, rows = (x + w - 1) // 64 - c0 + 1, (y + h - 1) // 64 - r0 + 1
            chosen = [tiles[(r0 + r) * 3 + c0 + c] for r in range(rows) for c in range(columns)]
            spliced, assembled = _both(
                chosen,
                tile_width=64,
                tile_height=64,
                columns=columns,
                x=x - c0 * 64,
                y=y - r0 * 64,
                width=w,
                height=h,
                h_factor=factor,
                v_factor=factor,
            )
            _assert_same_samples(spliced, assembled, (x, y, w, h))


def _vips_tile(seed: int, **options: object) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.cumsum(rng.integers(-9, 10, (64, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    data: bytes = pyvips.Image.new_from_array(pixels, interpretation="srgb").jpegsave_buffer(
        Q=85, subsample_mode="on", **options
    )
    return data


@pytest.mark.parametrize(
    "options",
    [{"restart_interval": 2}, {"interlace": True}, {"optimize_coding": True}],
    ids=["restart markers", "progressive", "tables of their own"],
)
def test_what_cannot_be_copied_is_left_to_assemble(options: dict[str, object]) -> None:
    tiles = [_vips_tile(1, **options), _vips_tile(2, **options)]
    geometry = {"tile_width": 64, "tile_height": 64, "columns": 2, "x": 0, "y": 0, "width": 128, "height": 64}
    spliced, assembled = _both(tiles, **geometry)
    assert spliced is None
    if not options.get("interlace"):
        assert assembled is not None  # the blocks, decoded and encoded again


def test_damage_fails_the_splice_as_it_fails_assemble(q85_pages: Pyramid) -> None:
    """200 random damages of the second of two tiles: the splice fails (ValueError) whenever
    assemble does, and what both make decodes to the same samples: nothing libjpeg would
    warn about is copied into a response."""
    tiles = stored_tiles(q85_pages, 2)
    geometry = {"tile_width": 256, "tile_height": 256, "columns": 2, "x": 0, "y": 0, "width": 300, "height": 200}
    outcomes = set()
    for damaged in damaged_copies(tiles[1], 200, seed=5):
        results: list[bytes | str | None] = []
        for way in ("splice", "assemble"):
            try:
                spliced, assembled = _both([tiles[0], damaged], **geometry)
                results.append(spliced if way == "splice" else assembled)
            except ValueError:
                results.append("error")
                break  # _both calls splice first: an error there stops both
        if results[0] == "error":
            outcomes.add("error")
            continue
        if results[0] is None:
            outcomes.add("declined")
            continue
        assert results[1] not in (None, "error")
        assert isinstance(results[0], bytes)
        assert isinstance(results[1], bytes)
        _assert_same_samples(results[0], results[1], "damaged")
        outcomes.add("same")
    assert "error" in outcomes
    for junk in (b"", b"\xff\xd8", b"not a jpeg at all", bytes(5000)):
        with pytest.raises(ValueError, match="tile 0"):
            _both([junk, tiles[1]], **geometry)


def test_damage_assemble_sees_is_seen_by_the_splice(q85_pages: Pyramid) -> None:
    """The other way round: every damage assemble refuses, the splice refuses too (or declines,
    and assemble is then the one that refuses it)."""
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined]

    tiles = stored_tiles(q85_pages, 2)
    args = {"tile_width": 256, "tile_height": 256, "columns": 2, "x": 0, "y": 0, "width": 300, "height": 200}
    args |= {"quality": 85, "h_factor": 2, "v_factor": 2}
    rng = random.Random(8)
    refused = 0
    for _ in range(200):
        damaged = bytearray(tiles[1])
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(len(damaged) // 2, len(damaged))] = rng.randrange(256)
        pair = [tiles[0], bytes(damaged)]
        try:
            _jpeg_blocks.assemble(pair, **args)
        except ValueError:
            refused += 1
            try:
                spliced = _jpeg_blocks.splice(pair, **args)
            except ValueError:
                continue
            assert spliced is None
    assert refused > 20


def test_the_splice_checks_its_arguments(q85_pages: Pyramid) -> None:
    from iiifserver.image import _jpeg_blocks  # type: ignore[attr-defined]

    tiles = stored_tiles(q85_pages, 2)
    args = {"tile_width": 256, "tile_height": 256, "columns": 2, "x": 0, "y": 0, "width": 300, "height": 200}
    args |= {"quality": 85, "h_factor": 2, "v_factor": 2}
    assert _jpeg_blocks.splice(tiles, **args) is not None
    with pytest.raises(TypeError):
        _jpeg_blocks.splice([tiles[0], "not bytes"], **args)
    with pytest.raises(ValueError, match="whole rows"):
        _jpeg_blocks.splice(tiles[:1], **args)
    for bad in ({"quality": 0}, {"width": 0}, {"x": -16}, {"h_factor": 3}, {"columns": 0}):
        with pytest.raises(ValueError, match="out of range"):
            _jpeg_blocks.splice(tiles, **(args | bad))
    assert _jpeg_blocks.splice(tiles, **(args | {"width": 600})) is None  # three columns' worth from two
    assert _jpeg_blocks.splice(tiles, **(args | {"x": 8})) is None  # off the MCU grid
    assert _jpeg_blocks.splice(tiles, **(args | {"quality": 80})) is None  # other tables
