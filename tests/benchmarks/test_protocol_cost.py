"""benchmarks/protocol_cost.py: its measurement runs against the real app and fails loudly when a
repeated tile is no longer answered inside the protocol (the thing it exists to measure)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pyvips

from benchmarks import protocol_cost


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    picture = pyvips.Image.xyz(2048, 512).extract_band(0).cast("uchar").bandjoin([128, 64])
    picture.tiffsave(
        str(folder / "pic.tif"), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=85
    )
    return folder


def test_requests_are_eight_tiles_of_one_row() -> None:
    batch = protocol_cost.requests("pic.tif")
    assert len(set(batch)) == 8
    assert batch[1].startswith(b"GET /iiif/3/pic.tif/256,0,256,256/256,/0/default.jpg HTTP/1.1\r\n")
    assert all(request.endswith(b"\r\n\r\n") for request in batch)


@pytest.mark.parametrize("overrides", [{}, {"metrics": False}])
def test_measures_repeated_tiles_answered_in_the_protocol(images: Path, overrides: dict[str, bool]) -> None:
    result = asyncio.run(protocol_cost.measure(images, overrides, per_round=200, rounds=2, image="pic.tif"))
    assert result["skipped"] == []
    assert len(result["rounds_us"]) == 2
    assert 0 < result["us_per_request"] == min(result["rounds_us"])


def test_a_tile_that_is_not_answered_in_the_protocol_fails_the_run(images: Path) -> None:
    with pytest.raises(RuntimeError, match="not answered inside the protocol"):
        asyncio.run(protocol_cost.measure(images, {}, per_round=10, rounds=1, image="missing.tif"))
