"""The wiring of ``create_app``: this worker's figures reach its stats file (while the app runs)
and ``/admin/stats``, the fast path's among them; the start clears a killed writer's debris."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import orjson
import pytest
import pyvips

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import METRICS_DIR_ENV, Settings


def test_the_lifespan_publishes_this_workers_figures_and_forgets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv(METRICS_DIR_ENV, str(run))  # as ``serve`` sets it for its workers
    app = create_app(Settings(images=tmp_path, cache=tmp_path / "cache", manifests=tmp_path / "manifests"))
    own = run / f"stats-{os.getpid()}.json"

    async def running() -> dict[str, object]:
        async with app.router.lifespan_context(app):
            async with asyncio.timeout(5):
                while not own.exists():
                    await asyncio.sleep(0.02)
            figures: dict[str, object] = json.loads(own.read_text())
        return figures

    figures = asyncio.run(running())
    assert set(figures) == {"cache", "service", "lanes", "fast_path"}  # no object store: no block cache
    assert figures["fast_path"] == {"entries": 0, "hits": 0, "tiles_in_protocol": 0}
    assert not own.exists()  # a stopped worker's figures go


def test_admin_stats_show_the_fast_path_beside_the_service(tmp_path: Path) -> None:
    pyvips.Image.black(300, 200, bands=3).tiffsave(str(tmp_path / "img.tif"), tile=True, pyramid=True)
    settings = Settings(images=tmp_path, cache=tmp_path / "cache", manifests=tmp_path / "none", admin_token="secret")
    app = create_app(settings)

    async def requests() -> dict[str, object]:
        for _ in range(2):  # the second is the memo's
            status, _, _ = await call(app, "/iiif/3/img/info.json", headers=[("host", "testserver")])
            assert status == 200
        status, _, body = await call(app, "/admin/stats", headers=[("authorization", "Bearer secret")])
        assert status == 200
        stats: dict[str, object] = orjson.loads(body)
        return stats

    stats = asyncio.run(requests())
    assert stats["fast_path"] == {"entries": 1, "hits": 1, "tiles_in_protocol": 0}
    assert "block_cache" not in stats
    assert {"cache", "service", "lanes", "workers", "total"} <= set(stats)


def test_the_lifespan_clears_a_killed_writers_debris_before_the_first_request(tmp_path: Path) -> None:
    """Attack case E01: a worker killed while it wrote a disk-tier entry leaves a temporary file
    (the entry's own name is only ever given to a complete file, by a rename). The next start
    removes it before the first request, keeps the complete entries, and serves them."""
    pyvips.Image.black(600, 400, bands=3).tiffsave(str(tmp_path / "img.tif"), tile=True, pyramid=True)
    settings = Settings(images=tmp_path, cache=tmp_path / "cache", manifests=tmp_path / "none", disk_cache_admission=1)
    region = "/iiif/3/img/10,10,300,200/150,/0/default.jpg"

    async def first_run() -> bytes:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            status, _, body = await call(app, region)
            assert status == 200
            async with asyncio.timeout(10):  # the background write of the render
                while not _entries(settings.cache):
                    await asyncio.sleep(0.02)
        return body

    rendered = asyncio.run(first_run())
    (entry,) = _entries(settings.cache)
    debris = entry.with_name(f"{'0' * 40}.4242.deadbeef0001.tmp")  # as ``DiskCache.put`` names its temp files
    debris.write_bytes(entry.read_bytes()[:100])  # a write cut short
    an_hour_ago = time.time() - 3600
    os.utime(debris, (an_hour_ago, an_hour_ago))

    async def second_run() -> tuple[bool, int, bytes]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            gone_at_start = not debris.exists()
            status, _, body = await call(app, region)
        return gone_at_start, status, body

    gone_at_start, status, body = asyncio.run(second_run())
    assert gone_at_start
    assert entry.exists()
    assert (status, body) == (200, rendered)


def _entries(cache: Path) -> list[Path]:
    """The disk tier's entry files (named by their 40-hex-digit key)."""
    return [p for p in cache.rglob("*") if p.is_file() and len(p.name) == 40 and p.name.isalnum()]
