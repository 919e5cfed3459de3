"""This worker's figures: what the metrics take from the service, its tiers and its lanes; the
statistics beside the service's own; publishing them once a second."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from iiifserver.app import IIIFApplication, create_app
from iiifserver.cache.entry import Entry
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.image.block_cache import BlockCache
from iiifserver.image.object_store import ObjectStore
from iiifserver.image.service import ImageService, Lanes
from iiifserver.web.admin import WorkerStats
from iiifserver.web.fast_path import FastPath
from iiifserver.web.metrics import Metrics
from iiifserver.web.worker_figures import WorkerFigures, cache_figures, lane_figures, publish_every_second


def app_of(tmp_path: Path, **overrides: Any) -> IIIFApplication:
    return create_app(Settings(images=tmp_path, cache=tmp_path / "cache", **overrides))


def service_of(app: IIIFApplication) -> ImageService:
    service: ImageService = app.state.image_service
    return service


def test_cache_figures_follow_the_service_and_its_tiers(tmp_path: Path) -> None:
    service = service_of(app_of(tmp_path, memory_cache_mb=4, disk_cache_mb=4))
    cache = service.cache
    assert cache is not None
    assert cache.disk is not None
    service.counters.renders = 3
    service.counters.passthrough = 2
    cache.memory.put("k1", Entry(b"body", "image/jpeg", "img"))
    assert cache.memory.get("k1") is not None
    assert cache.memory.get("k2") is None
    assert cache.disk.get("img", "0" * 40) is None
    assert cache_figures(service) == {
        "renders": 3,
        "renders_deferred": 0,
        "stored_tiles_not_kept": 0,
        "passthrough": 2,
        "memory_hits": 1,
        "memory_misses": 1,
        "disk_hits": 0,
        "disk_misses": 1,
    }


def test_cache_figures_without_a_cache_and_with_a_shared_tier(tmp_path: Path) -> None:
    bare = service_of(app_of(tmp_path, memory_cache_mb=0, disk_cache_mb=0))
    assert sorted(cache_figures(bare)) == ["passthrough", "renders", "renders_deferred", "stored_tiles_not_kept"]
    shared = service_of(app_of(tmp_path, disk_cache_mb=0, shared_cache_url="redis://127.0.0.1:1/0"))
    assert shared.cache is not None
    assert shared.cache.shared is not None
    try:
        figures = cache_figures(shared)
    finally:
        shared.cache.shared.close()
    assert "disk_hits" not in figures
    assert {name: figures[name] for name in figures if name.startswith("shared")} == {
        "shared_hits": 0,
        "shared_misses": 0,
        "shared_facts_hits": 0,
        "shared_facts_misses": 0,
        "shared_up": 0,  # never reached (no ping yet): not up
    }


def test_lane_figures_count_waiting_and_busy_per_lane() -> None:
    lanes = Lanes(Lane("io", 1, 10, 1.0), Lane("tile", 1, 10, 1.0), Lane("heavy", 1, 10, 1.0), Lane("bg", 1, 10, 1.0))
    gate = threading.Event()

    async def busy() -> dict[str, int]:
        first = lanes.tile.run(gate.wait, 5)
        second = asyncio.ensure_future(lanes.tile.run(gate.wait, 5))  # waits for the one thread
        await asyncio.sleep(0.01)
        figures = lane_figures(lanes)
        gate.set()
        await first
        await second
        return figures

    figures = asyncio.run(busy())
    assert figures == {
        "io": 0,
        "io:busy": 0,
        "tile": 1,
        "tile:busy": 1,
        "heavy": 0,
        "heavy:busy": 0,
        "bg": 0,
        "bg:busy": 0,
    }
    # Without a background lane the re-checks run in the io lane: counted once, as io.
    shared_io = Lanes(lanes.io, lanes.tile, lanes.heavy)
    assert sorted(lane_figures(shared_io)) == ["heavy", "heavy:busy", "io", "io:busy", "tile", "tile:busy"]


def test_worker_figures_add_the_fast_path_and_the_block_cache(tmp_path: Path) -> None:
    app = app_of(tmp_path)
    service = service_of(app)
    assert app.fast_path is not None
    # The fast path is asked for at each call: the app gets its own after the service exists.
    current: list[FastPath | None] = [None]
    figures = WorkerFigures(service, None, lambda: current[0])
    assert figures.extra() == {"fast_path": {}}
    current[0] = app.fast_path
    app.fast_path.memo.hits = 7
    assert figures.extra() == {"fast_path": {"entries": 0, "hits": 7, "tiles_in_protocol": 0}}
    every = figures.all()
    assert every == {**service.stats(), "fast_path": {"entries": 0, "hits": 7, "tiles_in_protocol": 0}}

    blocks = BlockCache(tmp_path / "blocks", 1 << 20)
    blocks.fetched, blocks.hits, blocks.nbytes = 4, 9, 4096
    with_store = WorkerFigures(service, ObjectStore(1.0, blocks), lambda: None)
    assert with_store.extra() == {"fast_path": {}, "block_cache": {"fetched": 4, "hits": 9, "bytes": 4096}}
    assert "block_cache" not in WorkerFigures(service, ObjectStore(1.0), lambda: None).extra()


class CountedMetrics:
    published = 0

    def publish(self) -> None:
        self.published += 1


def test_publish_writes_this_workers_figures_and_survives_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workers = WorkerStats(tmp_path)
    metrics = CountedMetrics()
    calls = 0

    def figures() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("figures broken")
        return {"round": calls}

    async def run() -> None:
        lane = Lane("io", 1, 10, 1.0)
        publisher = asyncio.create_task(publish_every_second(cast(Metrics, metrics), workers, figures, lane))
        async with asyncio.timeout(5):
            while calls < 2 or workers.read() == {}:
                await asyncio.sleep(0.02)
        publisher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publisher

    asyncio.run(run())
    assert "publishing metrics" in caplog.text
    assert metrics.published >= 2  # the metrics too, every round
    written = json.loads((tmp_path / f"stats-{os.getpid()}.json").read_text())
    assert written == {"round": 2}


def test_publish_without_a_run_folder_asks_for_no_figures(caplog: pytest.LogCaptureFixture) -> None:
    def figures() -> dict[str, object]:
        raise AssertionError("no stats file to write: no figures needed")

    async def one_round() -> None:
        publisher = asyncio.create_task(publish_every_second(None, WorkerStats(None), figures, Lane("io", 1, 10, 1.0)))
        await asyncio.sleep(0.05)
        assert not publisher.done()
        publisher.cancel()

    asyncio.run(one_round())
    assert "publishing metrics" not in caplog.text
