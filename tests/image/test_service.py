"""ImageService's identifier checks: shared by concurrent requests, renewed in the background."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import pyvips

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings
from iiifserver.image.request import parse_tile_request
from iiifserver.image.service import ImageService
from iiifserver.image.sources import SourceFile


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("service") / "pic.tif"
    image = pyvips.Image.perlin(512, 384, cell_size=32, seed=5, uchar=True)
    image.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=85)
    return path


class Counting:
    """Counts the source resolutions (stats) an ImageService makes."""

    def __init__(self, service: ImageService) -> None:
        self.calls = 0
        source = service._source
        original, original_recheck = source.resolve, source.recheck

        def resolve(identifier: str) -> SourceFile:
            self.calls += 1
            time.sleep(0.02)  # a slow stat (network storage): concurrent requests overlap it
            return original(identifier)

        def recheck(file: SourceFile) -> SourceFile:
            self.calls += 1
            self.rechecks += 1
            time.sleep(0.02)
            return original_recheck(file)

        self.rechecks = 0
        source.resolve = resolve  # type: ignore[method-assign]
        source.recheck = recheck  # type: ignore[method-assign]


def make(images: Path, tmp_path: Path, interval: float) -> tuple[Any, ImageService, Counting]:
    app = create_app(Settings(images=images, cache=tmp_path / "cache", source_check_interval=interval))
    service: ImageService = app.state.image_service
    service._versions._random = lambda: 0.0  # due for a re-check after exactly half the interval
    return app, service, Counting(service)


TILE = "/iiif/3/pic/0,0,256,256/256,/0/default.jpg"


def test_concurrent_requests_for_a_new_identifier_check_it_once(picture: Path, tmp_path: Path) -> None:
    app, _, counting = make(picture.parent, tmp_path, 30.0)

    async def many() -> list[int]:
        results = await asyncio.gather(*(call(app, TILE if i % 2 else "/iiif/3/pic/info.json") for i in range(40)))
        return [status for status, _, _ in results]

    assert asyncio.run(many()) == [200] * 40
    assert counting.calls == 1


def test_interval_zero_checks_every_request(picture: Path, tmp_path: Path) -> None:
    app, _, counting = make(picture.parent, tmp_path, 0.0)

    async def some() -> None:
        await asyncio.gather(*(call(app, TILE) for _ in range(5)))

    asyncio.run(some())
    assert counting.calls == 5


def test_a_busy_identifier_is_rechecked_in_the_background_before_it_expires(picture: Path, tmp_path: Path) -> None:
    app, service, counting = make(picture.parent, tmp_path, 0.4)

    async def scenario() -> tuple[float, int, int]:
        assert (await call(app, TILE))[0] == 200
        await asyncio.sleep(0.25)  # past half the interval: still trusted, due for a re-check
        start = time.perf_counter()
        status, _, _ = await call(app, TILE)
        waited = time.perf_counter() - start
        assert status == 200
        during = counting.calls
        await service.drain()
        return waited, during, counting.calls

    waited, during, after = asyncio.run(scenario())
    assert waited < 0.02  # served from the trusted version: the 20 ms stat ran in the background
    assert (during, after) == (1, 2)
    assert counting.rechecks == 1  # the cheap re-check of the file it knew


def test_background_recheck_notices_a_replaced_and_a_deleted_file(picture: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(picture, images / "pic.tif")
    app, service, _ = make(images, tmp_path, 0.4)

    async def scenario() -> tuple[list[int], str, str]:
        first = await call(app, "/iiif/3/pic/info.json")
        replacement = pyvips.Image.perlin(300, 200, cell_size=32, seed=6, uchar=True)
        replacement.tiffsave(str(images / "new.tif"), tile=True, pyramid=True, compression="jpeg")
        os.replace(images / "new.tif", images / "pic.tif")
        await asyncio.sleep(0.25)
        await call(app, "/iiif/3/pic/info.json")  # due: re-checked in the background
        await service.drain()
        second = await call(app, "/iiif/3/pic/info.json")  # the new version, without waiting 0.4 s
        (images / "pic.tif").unlink()
        await asyncio.sleep(0.25)
        await call(app, "/iiif/3/pic/info.json")
        await service.drain()
        gone = await call(app, "/iiif/3/pic/info.json")
        return [first[0], second[0], gone[0]], first[2].decode(), second[2].decode()

    statuses, before, after = asyncio.run(scenario())
    assert statuses == [200, 200, 404]
    assert '"width":512' in before
    assert '"width":300' in after


def test_nowait_variants_answer_from_memory_only(picture: Path, tmp_path: Path) -> None:
    """``prepare_nowait``/``entry_nowait`` never check a file: None until ``find`` has, then
    what ``prepare`` gives; and None again once the trust in the file has run out."""
    _, service, counting = make(picture.parent, tmp_path, 0.5)
    request = parse_tile_request(b"256,0,256,256/256,/0/default.jpg")
    assert request is not None

    async def steps() -> None:
        assert service.prepare_nowait("pic", request) is None
        assert counting.calls == 0
        prepared = await service.prepare("pic", request)
        nowait = service.prepare_nowait("pic", request)
        assert nowait == prepared
        assert nowait is not None
        assert nowait.key == prepared.key
        assert service.found_nowait("pic") is service.found_nowait("pic")  # kept while trusted
        assert service.cached(prepared) is None
        entry = service.entry_nowait(prepared)  # the stored tile, from the page cache
        assert entry is not None
        assert service.cached(prepared) == entry  # and kept in the memory tier
        assert service.counters.passthrough_inline == 1
        assert service.entry_nowait(prepared) == entry
        assert service.counters.passthrough_inline == 1
        unaligned = parse_tile_request(b"10,10,256,256/256,/0/default.jpg")
        assert unaligned is not None
        rendered = service.prepare_nowait("pic", unaligned)
        assert rendered is not None
        assert rendered.passthrough is None
        assert service.entry_nowait(rendered) is None  # to be rendered: ``fetch`` does it
        await asyncio.sleep(0.6)
        assert service.prepare_nowait("pic", request) is None
        assert counting.calls == 1

    asyncio.run(steps())
