"""/metrics: every request counted once by kind, status and way; cache, render and lane figures;
one scrape of a real multi-worker server covers every worker."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings
from iiifserver.web.metrics import Metrics, kind_of
from iiifserver.web.observer import RequestInfo, Way
from tests.web.conftest import ImageRoot

HOST = [("host", "testserver")]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (b"/iiif/3/sample/256,0,256,256/256,/0/default.jpg", "tile"),
        (b"/iiif/2/a%2Fb/full/256,256/0/default.jpg", "tile"),
        (b"/iiif/3/x/full/max/0/default.jpg", "region"),
        (b"/iiif/3/x/0,0,10,10/10,/90/default.jpg", "region"),
        (b"/iiif/3/x/pct:0,0,10,10/10,/0/default.jpg", "region"),
        (b"/iiif/3/x/info.json", "info.json"),
        (b"/iiif/3/x", "other"),
        (b"/iiif/presentation/3/x/manifest", "manifest"),
        (b"/iiif/presentation/3/collection/sub", "collection"),
        (b"/", "page"),
        (b"/objects/x", "page"),
        (b"/metrics", "other"),
        (b"/viewers/openseadragon/openseadragon.min.js", "other"),
    ],
)
def test_kinds(path: bytes, kind: str) -> None:
    assert kind_of(path, Way.MEMO) == kind


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def requests_total(found: dict[Any, float], kind: str, status: str, way: str) -> float:
    key = ("iiifserver_requests_total", (("kind", kind), ("status", status), ("way", way)))
    return found.get(key, 0.0)


def test_scrape_counts_each_kind_and_way_exactly(image_root: ImageRoot, tmp_path: Path) -> None:
    app = create_app(Settings(images=image_root.root, cache=tmp_path, source_check_interval=60.0))
    assert isinstance(app.observer, Metrics)
    info = "/iiif/3/sample/info.json"
    tile = "/iiif/3/sample/256,0,256,256/256,/0/default.jpg"
    region = "/iiif/3/sample/pct:10,10,30,20/150,/0/default.png"

    async def run() -> dict[Any, float]:
        assert (await call(app, info, headers=HOST))[0] == 200  # endpoint
        assert (await call(app, info, headers=HOST))[0] == 200  # memo
        assert (await call(app, tile, headers=HOST))[0] == 200  # a stored tile: passthrough
        assert (await call(app, region, headers=HOST))[0] == 200  # rendered
        await app.state.image_service.drain()
        app.state.memo._entries.clear()  # so the next one goes to the endpoint: memory tier
        assert (await call(app, region, headers=HOST))[0] == 200
        assert (await call(app, "/iiif/3/nothing/info.json", headers=HOST))[0] == 404
        assert (await call(app, "/health"))[0] == 200
        status, headers, body = await call(app, "/metrics")
        assert status == 200
        assert dict(headers)["content-type"].startswith("text/plain")
        first = samples(body.decode())
        status, _, body = await call(app, "/metrics")
        second = samples(body.decode())
        assert (
            requests_total(second, "other", "200", "framework")
            == requests_total(first, "other", "200", "framework") + 1
        )
        return first

    found = asyncio.run(run())
    assert requests_total(found, "info.json", "200", "endpoint") == 1
    assert requests_total(found, "info.json", "200", "memo") == 1
    assert requests_total(found, "tile", "200", "passthrough") == 1
    assert requests_total(found, "region", "200", "render") == 1
    assert requests_total(found, "region", "200", "memory") == 1
    assert requests_total(found, "info.json", "404", "endpoint") == 1
    assert requests_total(found, "other", "200", "framework") == 1  # /health (this scrape is counted after)
    assert found[("iiifserver_request_duration_seconds_count", (("kind", "info.json"),))] == 3
    assert found[("iiifserver_renders_total", ())] == 1
    assert found[("iiifserver_render_duration_seconds_count", ())] == 1
    assert found[("iiifserver_cache_hits_total", (("tier", "memory"),))] >= 1
    assert found[("iiifserver_cache_hits_total", (("tier", "passthrough"),))] == 1
    assert ("iiifserver_lane_waiting", (("lane", "tile"),)) in found
    assert found[("iiifserver_workers", ())] == 1


def test_protocol_answers_are_counted() -> None:
    metrics = Metrics()
    request = RequestInfo.of("GET", b"/iiif/3/a/0,0,256,256/256,/0/default.jpg", b"", "1.1", None, 0.0, 0.0001)
    for _ in range(3):
        metrics.answered(request, 200, 100, Way.PROTOCOL_TILE)
    metrics.answered(request, 304, 0, Way.PROTOCOL_MEMO)
    found = samples(metrics.exposition().decode())
    assert requests_total(found, "tile", "200", "protocol_tile") == 3
    assert requests_total(found, "tile", "304", "protocol_memo") == 1
    assert found[("iiifserver_request_duration_seconds_bucket", (("kind", "tile"), ("le", "0.0005")))] == 4
    assert found[("iiifserver_request_duration_seconds_sum", (("kind", "tile"),))] == pytest.approx(0.0004)


def test_metrics_token(image_root: ImageRoot, tmp_path: Path) -> None:
    app = create_app(Settings(images=image_root.root, cache=tmp_path, metrics_token="m" * 20))
    assert asyncio.run(call(app, "/metrics"))[0] == 401
    ok = asyncio.run(call(app, "/metrics", headers=[("authorization", "Bearer " + "m" * 20)]))
    assert ok[0] == 200
    off = create_app(Settings(images=image_root.root, cache=tmp_path, metrics=False))
    assert asyncio.run(call(off, "/metrics"))[0] == 404


@pytest.mark.e2e
def test_one_scrape_sums_two_workers(image_root: ImageRoot, tmp_path: Path) -> None:
    from tests.e2e.conftest import start_server, stop_server

    token = "t" * 24
    proc, port = start_server(
        image_root.root, tmp_path / "cache", "--admin-token", token, log=tmp_path / "server.log", workers=2
    )
    base = f"http://127.0.0.1:{port}"
    try:
        n = 40
        for _ in range(n):  # a new connection each: the kernel spreads them over both workers
            with urllib.request.urlopen(f"{base}/iiif/3/sample/info.json", timeout=10) as response:
                assert response.status == 200
        deadline = time.monotonic() + 15
        total = 0.0
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                found = samples(response.read().decode())
            total = sum(
                value
                for (name, labels), value in found.items()
                if name == "iiifserver_requests_total" and ("kind", "info.json") in labels
            )
            if total == n and found.get(("iiifserver_workers", ())) == 2:
                break
            time.sleep(0.3)
        assert total == n  # counted exactly once, whichever worker answered or scraped
        assert found[("iiifserver_workers", ())] == 2
        stats_request = urllib.request.Request(f"{base}/admin/stats", headers={"Authorization": f"Bearer {token}"})
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline + 10:  # each worker writes its figures once a second
            with urllib.request.urlopen(stats_request, timeout=10) as response:
                stats = json.loads(response.read())
            if len(stats["workers"]) == 2:
                break
            time.sleep(0.3)
        assert len(stats["workers"]) == 2
        assert stats["total"]["lanes"]["tile"]["threads"] == sum(
            worker["lanes"]["tile"]["threads"] for worker in stats["workers"].values()
        )
    finally:
        stop_server(proc)


@pytest.mark.e2e
def test_one_worker_scrapes_its_own_counts(image_root: ImageRoot, tmp_path: Path) -> None:
    """With one worker the app runs in the ``serve`` process itself: its values must still reach
    the files the scrape reads (prometheus_client picks its store when first imported)."""
    from tests.e2e.conftest import start_server, stop_server

    proc, port = start_server(image_root.root, tmp_path / "cache", log=tmp_path / "server.log", workers=1)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"{base}/iiif/3/sample/info.json", timeout=10) as response:
                assert response.status == 200
        deadline = time.monotonic() + 15
        total = 0.0
        while time.monotonic() < deadline and total != 3:
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                found = samples(response.read().decode())
            total = sum(
                value
                for (name, labels), value in found.items()
                if name == "iiifserver_requests_total" and ("kind", "info.json") in labels
            )
            time.sleep(0.2)
        assert total == 3
        assert found[("iiifserver_workers", ())] == 1
    finally:
        stop_server(proc)
