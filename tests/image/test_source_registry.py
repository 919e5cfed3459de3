"""SourceRegistry: identifier checks shared by concurrent requests, renewed in the background,
and known sources answered from memory while their file is trusted."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest
import pyvips

from iiifserver.asgi_call import call
from iiifserver.image import source_registry
from tests.image.conftest import make_service

TILE = "/iiif/3/pic/0,0,256,256/256,/0/default.jpg"


def test_concurrent_requests_for_a_new_identifier_check_it_once(picture: Path, tmp_path: Path) -> None:
    app, _, counting = make_service(picture.parent, tmp_path, 30.0)

    async def many() -> list[int]:
        results = await asyncio.gather(*(call(app, TILE if i % 2 else "/iiif/3/pic/info.json") for i in range(40)))
        return [status for status, _, _ in results]

    assert asyncio.run(many()) == [200] * 40
    assert counting.calls == 1


def test_interval_zero_checks_every_request(picture: Path, tmp_path: Path) -> None:
    app, _, counting = make_service(picture.parent, tmp_path, 0.0)

    async def some() -> None:
        await asyncio.gather(*(call(app, TILE) for _ in range(5)))

    asyncio.run(some())
    assert counting.calls == 5


def test_a_busy_identifier_is_rechecked_in_the_background_before_it_expires(picture: Path, tmp_path: Path) -> None:
    app, service, counting = make_service(picture.parent, tmp_path, 0.4)

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
    app, service, _ = make_service(images, tmp_path, 0.4)

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


def test_a_known_source_is_answered_from_memory_until_its_trust_runs_out(picture: Path, tmp_path: Path) -> None:
    _, service, counting = make_service(picture.parent, tmp_path, 0.5)
    registry = service.registry

    async def steps() -> None:
        assert registry.find_if_known("pic") is None
        assert registry.current_version("pic") is None
        known = await registry.find("pic")
        first = registry.find_if_known("pic")
        assert first == known
        assert registry.find_if_known("pic") is first  # kept while trusted: no new KnownSource
        assert registry.current_version("pic") == known.file.version
        assert known.stored is not None
        assert known.stored.has_passthrough
        await asyncio.sleep(0.6)
        # In use: re-checked in the background before its trust ran out (a stat, no probe).
        assert registry.find_if_known("pic") == known
        assert counting.rechecks >= 1
        assert counting.calls == 1 + counting.rechecks

    asyncio.run(steps())


def test_an_identifier_not_in_use_expires(picture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keeper re-checks only what was asked for within ``KEEP_FRESH``: an idle identifier's
    trust runs out, and its next request checks it itself."""
    monkeypatch.setattr(source_registry, "KEEP_FRESH", 0.1)
    _, service, counting = make_service(picture.parent, tmp_path, 0.5)
    registry = service.registry

    async def steps() -> None:
        await registry.find("pic")
        assert registry.find_if_known("pic") is not None
        await asyncio.sleep(0.7)
        assert registry.find_if_known("pic") is None
        assert registry.current_version("pic") is None
        await asyncio.sleep(0.3)
        assert registry._keeper is None  # nothing in use: the keeper stopped
        assert counting.rechecks <= 1  # at most once, while it was still in use

    asyncio.run(steps())


def test_the_keeper_notices_a_replaced_file_within_the_interval(picture: Path, tmp_path: Path) -> None:
    """An image in use that is replaced on disk is served in its new version at most one
    interval later, with no request having to check it."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copyfile(picture, images / "pic.tif")
    _, service, _ = make_service(images, tmp_path, 0.4)
    registry = service.registry

    async def steps() -> None:
        old = await registry.find("pic")
        assert registry.find_if_known("pic") == old
        replacement = images / "new.tif"
        shutil.copyfile(picture, replacement)
        os.utime(replacement, (1_000_000_000, 1_000_000_000))
        os.replace(replacement, images / "pic.tif")
        await asyncio.sleep(0.5)
        now = registry.find_if_known("pic")
        assert now is not None
        assert now.file.version != old.file.version

    asyncio.run(steps())
