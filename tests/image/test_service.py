"""ImageService: the answered-at-once variants of the request path, from memory and the page cache
only; the lane a render runs in, the render deadline and queued jobs nobody waits for any more."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pyvips

from iiifserver.app import create_app
from iiifserver.config import Settings
from iiifserver.errors import ServiceUnavailable
from iiifserver.image.planner import Plan
from iiifserver.image.request import ImageRequest, parse_tile_request
from iiifserver.image.service import ImageService
from iiifserver.image.source_info import SourceFormat, SourceVersion
from iiifserver.image.tile_grid import TileGrid
from tests.image.conftest import make_service


def test_at_once_variants_answer_from_memory_only(picture: Path, tmp_path: Path) -> None:
    """``prepare_if_known``/``entry_at_once`` never check a file: None until ``find`` has, then
    what ``prepare`` gives; and None again once the trust in the file has run out."""
    _, service, counting = make_service(picture.parent, tmp_path, 0.5)
    request = parse_tile_request(b"256,0,256,256/256,/0/default.jpg")
    assert request is not None

    async def steps() -> None:
        assert service.prepare_if_known("pic", request) is None
        assert counting.calls == 0
        prepared = await service.prepare("pic", request)
        at_once = service.prepare_if_known("pic", request)
        assert at_once == prepared
        assert at_once is not None
        assert at_once.key == prepared.key
        assert service.find_if_known("pic") is service.find_if_known("pic")  # kept while trusted
        assert service.cached(prepared) is None
        entry = service.entry_at_once(prepared)  # the stored tile, from the page cache
        assert entry is not None
        assert service.cached(prepared) is None  # a whole stored tile's first ask: not kept
        assert not service.in_memory(prepared.key)
        assert service.counters.passthrough_inline == 1
        assert service.entry_at_once(prepared) == entry  # read again, and kept this time
        assert service.counters.passthrough_inline == 2
        assert service.cached(prepared) == entry
        assert service.in_memory(prepared.key)
        assert service.entry_at_once(prepared) == entry  # from the memory tier
        assert service.counters.passthrough_inline == 2
        assert service.doorkeeper.first_asks == 1
        edge_request = parse_tile_request(b"0,256,256,128/256,/0/default.jpg")
        assert edge_request is not None
        edge = service.prepare_if_known("pic", edge_request)
        assert edge is not None
        assert edge.passthrough is not None
        assert edge.passthrough.is_edge
        cut = service.entry_at_once(edge)  # a cut edge tile costs a decode: kept at its first ask
        assert cut is not None
        assert service.cached(edge) == cut
        assert service.doorkeeper.first_asks == 1
        # A whole stored tile stretched by a pixel (the last full tile of a floor-rounded level)
        # costs a decode too: kept at its first ask, like a cut one.
        assert prepared.passthrough is not None
        whole_stretched = replace(
            prepared,
            key=prepared.key + "-stretched",
            passthrough=replace(prepared.passthrough, out_width=257),
        )
        assert not whole_stretched.passthrough.is_edge
        stretched = service.entry_at_once(whole_stretched)
        assert stretched is not None
        assert service.cached(whole_stretched) == stretched
        assert service.doorkeeper.first_asks == 1
        unaligned = parse_tile_request(b"10,10,256,256/256,/0/default.jpg")
        assert unaligned is not None
        rendered = service.prepare_if_known("pic", unaligned)
        assert rendered is not None
        assert rendered.passthrough is None
        assert service.entry_at_once(rendered) is None  # to be rendered: ``fetch`` does it
        await asyncio.sleep(0.6)  # past the trust, but in use: re-checked in the background
        assert service.prepare_if_known("pic", request) is not None
        assert counting.calls == 1 + counting.rechecks

    asyncio.run(steps())


# -- lanes by cost, the render deadline, queued jobs nobody waits for ------------------------------


class GatedRender:
    """A render fake for ``BlockingOps``: records each call, blocks while its file's gate is shut."""

    def __init__(self, *gated: str) -> None:
        self.gates = {name: threading.Event() for name in gated}
        self.calls: list[str] = []
        self.running = threading.Semaphore(0)  # released once per render that started

    def __call__(
        self, path: Path, fmt: SourceFormat, plan: Plan, version: SourceVersion, grid: TileGrid | None = None
    ) -> bytes:
        self.calls.append(f"{path.name} {plan.crop}")
        self.running.release()
        gate = self.gates.get(path.name)
        if gate is not None:
            assert gate.wait(10)
        return f"rendered {path.name}".encode()

    def open(self) -> None:
        for gate in self.gates.values():
            gate.set()


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory, picture: Path) -> Path:
    """``pic.tif`` (a 512x384 pyramid) and ``strip.tif`` (2600x2000, untiled: 5.2 MP decoded whole)."""
    folder = tmp_path_factory.mktemp("two")
    shutil.copyfile(picture, folder / "pic.tif")
    pyvips.Image.black(2600, 2000, bands=3).tiffsave(str(folder / "strip.tif"), tile=False, compression="deflate")
    return folder


def fake_service(images: Path, tmp_path: Path, render: GatedRender, **settings: Any) -> ImageService:
    options: dict[str, Any] = {"tile_threads": 1, "heavy_threads": 1, "disk_cache_mb": 0, **settings}
    app = create_app(Settings(images=images, cache=tmp_path / "cache", tile_passthrough=False, **options))
    service: ImageService = app.state.image_service
    service._ops = replace(service._ops, render=render)
    return service


def tile(url: str) -> ImageRequest:
    request = parse_tile_request(url.encode())
    assert request is not None
    return request


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


def test_tiles_of_a_strip_tiff_go_to_the_heavy_lane_and_do_not_hold_up_pyramid_tiles(
    two_sources: Path, tmp_path: Path
) -> None:
    render = GatedRender("strip.tif")
    service = fake_service(two_sources, tmp_path, render)

    async def steps() -> None:
        strip_tiles = [await service.prepare("strip", tile(f"{x},0,256,256/256,/0/default.jpg")) for x in (0, 256, 512)]
        assert all(p.plan.heavy for p in strip_tiles)
        assert strip_tiles[0].plan.decode_pixels == 2600 * 2000
        pyramid_tile = await service.prepare("pic", tile("0,0,256,256/256,/0/default.jpg"))
        assert not pyramid_tile.plan.heavy
        flood = [asyncio.create_task(service.fetch(p)) for p in strip_tiles]
        await until(lambda: service.lanes.heavy.busy == 1 and service.lanes.heavy.waiting == 2)
        # The heavy lane is full and its render blocked: a pyramid tile is not queued behind it.
        async with asyncio.timeout(5):
            entry = await service.fetch(pyramid_tile)
        assert entry.body == b"rendered pic.tif"
        assert service.lanes.tile.waiting == 0
        assert not any(task.done() for task in flood)
        render.open()
        assert [e.body for e in await asyncio.gather(*flood)] == [b"rendered strip.tif"] * 3

    asyncio.run(steps())


def test_render_deadline_answers_503_and_the_finished_render_serves_the_retry(
    two_sources: Path, tmp_path: Path
) -> None:
    render = GatedRender("pic.tif")
    service = fake_service(two_sources, tmp_path, render, render_timeout=0.2)

    async def steps() -> None:
        prepared = await service.prepare("pic", tile("0,0,256,256/256,/0/default.jpg"))
        with pytest.raises(ServiceUnavailable, match=r"longer than 0\.2 s") as caught:
            await service.fetch(prepared)
        assert caught.value.retry_after == 5
        assert service.counters.render_timeouts == 1
        assert service.lanes.tile.busy == 1  # a running render cannot be stopped: still counted
        render.open()
        await until(lambda: service.lanes.tile.busy == 0)
        entry = await service.fetch(prepared)  # kept when it ended, under its own key
        assert entry.body == b"rendered pic.tif"
        assert len(render.calls) == 1
        assert service.counters.renders == 1

    asyncio.run(steps())


def test_a_queued_render_whose_deadline_passed_is_dropped_before_it_starts(two_sources: Path, tmp_path: Path) -> None:
    render = GatedRender("pic.tif")
    service = fake_service(two_sources, tmp_path, render, render_timeout=0.3, queue_timeout=10.0)

    async def steps() -> None:
        first = await service.prepare("pic", tile("0,0,256,256/256,/0/default.jpg"))
        second = await service.prepare("pic", tile("256,0,256,128/256,/0/default.jpg"))
        running = asyncio.create_task(service.fetch(first))
        await until(lambda: service.lanes.tile.busy == 1)
        with pytest.raises(ServiceUnavailable):
            await service.fetch(second)  # queued behind ``first`` until the deadline
        await until(lambda: service.lanes.tile.waiting == 0)  # given back within a loop iteration or two
        assert service.lanes.tile.dropped == 1
        assert service.stats()["service"]["in_flight"] == 1  # type: ignore[index]
        render.open()
        with pytest.raises(ServiceUnavailable):
            await running  # past its own deadline too, while it ran
        await until(lambda: service.lanes.tile.busy == 0)
        assert render.calls == [f"pic.tif {first.plan.crop}"]  # the dropped job never ran
        assert (await service.fetch(first)).body == b"rendered pic.tif"
        assert len(render.calls) == 1

    asyncio.run(steps())


def test_a_body_on_disk_is_not_queued_behind_renders(two_sources: Path, tmp_path: Path) -> None:
    """C06: with the tile lane's thread busy and its queue full (a flood of distinct renders), a
    render kept in the disk tier is read in the I/O lane and answered, while a new render is
    still shed with 503; with a thread free it takes the one-hop way (disk lookup and render
    in the lane's thread) as before."""
    settings: dict[str, Any] = {"disk_cache_mb": 64, "disk_cache_admission": 1, "max_waiting": 2}
    cached_url = "0,0,256,256/256,/0/default.jpg"

    async def keep_on_disk() -> None:
        service = fake_service(two_sources, tmp_path, GatedRender(), **settings)
        assert (await service.fetch(await service.prepare("pic", tile(cached_url)))).body == b"rendered pic.tif"
        await service.drain()

    asyncio.run(keep_on_disk())

    render = GatedRender("pic.tif")
    service = fake_service(two_sources, tmp_path, render, **settings)  # memory tier empty, same disk

    async def steps() -> None:
        cached = await service.prepare("pic", tile(cached_url))
        flood = [await service.prepare("pic", tile(f"{x},128,128,128/128,/0/default.jpg")) for x in (0, 128, 256)]
        tasks = [asyncio.create_task(service.fetch(p)) for p in flood]
        await until(lambda: service.lanes.tile.busy == 1 and service.lanes.tile.waiting == 2)
        async with asyncio.timeout(5):
            entry, origin = await service.fetch_with_origin(cached)
        assert (entry.body, origin) == (b"rendered pic.tif", "disk")
        assert not any(task.done() for task in tasks)
        shed = await service.prepare("pic", tile("384,256,128,128/128,/0/default.jpg"))
        with pytest.raises(ServiceUnavailable, match="queue full"):
            await service.fetch(shed)  # renders beyond the queue are still shed
        render.open()
        assert [e.body for e in await asyncio.gather(*tasks)] == [b"rendered pic.tif"] * 3
        assert len(render.calls) == 3  # the cached one was not rendered again

    asyncio.run(steps())


def test_with_a_render_thread_free_the_disk_lookup_rides_the_render_hop(two_sources: Path, tmp_path: Path) -> None:
    """No queue: the disk tier is looked up in the render lane's thread (one hop), the I/O lane unused."""
    settings: dict[str, Any] = {"disk_cache_mb": 64, "disk_cache_admission": 1}
    url = "0,0,256,256/256,/0/default.jpg"

    async def keep_on_disk() -> None:
        service = fake_service(two_sources, tmp_path, GatedRender(), **settings)
        await service.fetch(await service.prepare("pic", tile(url)))
        await service.drain()

    asyncio.run(keep_on_disk())
    service = fake_service(two_sources, tmp_path, GatedRender(), **settings)
    io_jobs: list[object] = []
    run_io = service.lanes.io.run

    def counting(fn: Any, *args: Any) -> Any:
        io_jobs.append(fn)
        return run_io(fn, *args)

    async def steps() -> None:
        prepared = await service.prepare("pic", tile(url))
        service.lanes.io.run = counting  # type: ignore[method-assign]
        entry, origin = await service.fetch_with_origin(prepared)
        assert (entry.body, origin) == (b"rendered pic.tif", "disk")
        assert io_jobs == []

    asyncio.run(steps())


def test_a_busy_io_lane_does_not_refuse_a_queued_render(two_sources: Path, tmp_path: Path) -> None:
    """Renders queued and the I/O lane full: the disk lookup is skipped, not turned into a 503; the
    request waits its turn in the render lane, whose job looks in the disk tier itself."""
    render = GatedRender("pic.tif")
    service = fake_service(two_sources, tmp_path, render, disk_cache_mb=64, max_waiting=4)

    async def full(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable("server busy (io queue full)", retry_after=2)

    async def steps() -> None:
        first = await service.prepare("pic", tile("0,0,256,256/256,/0/default.jpg"))
        second = await service.prepare("pic", tile("256,0,256,128/256,/0/default.jpg"))
        running = asyncio.create_task(service.fetch(first))
        await until(lambda: service.lanes.tile.busy == 1)
        service.lanes.io.run = full  # type: ignore[method-assign]
        queued = asyncio.create_task(service.fetch(second))
        await until(lambda: service.lanes.tile.waiting == 1)
        render.open()
        assert [e.body for e in await asyncio.gather(running, queued)] == [b"rendered pic.tif"] * 2

    asyncio.run(steps())
