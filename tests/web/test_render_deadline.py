"""Through the app: limits after rotation (400), the render deadline (503 + Retry-After) and a
client that disconnects while its render is queued (its job is dropped, never run)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyvips

from iiifserver import asgi_call
from iiifserver.app import create_app
from iiifserver.config import Settings
from iiifserver.image.planner import Plan
from iiifserver.image.service import ImageService
from iiifserver.image.source_info import SourceFormat, SourceVersion
from iiifserver.image.tile_grid import TileGrid


def make_app(tmp_path: Path, **settings: Any) -> tuple[Any, ImageService]:
    images = tmp_path / "img"
    images.mkdir()
    pyvips.Image.black(512, 384, bands=3).tiffsave(
        str(images / "pic.tif"), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg"
    )
    options: dict[str, Any] = {"tile_threads": 1, "heavy_threads": 1, "disk_cache_mb": 0, **settings}
    app = create_app(Settings(images=images, cache=tmp_path / "cache", tile_passthrough=False, **options))
    return app, app.state.image_service


class Gate:
    """Render fake: blocks until opened, records the crop of every render it ran."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.crops: list[tuple[int, int]] = []

    def __call__(
        self, path: Path, fmt: SourceFormat, plan: Plan, version: SourceVersion, grid: TileGrid | None = None
    ) -> bytes:
        self.crops.append((plan.crop.x, plan.crop.y))
        assert self.open.wait(10)
        return b"rendered"


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def call_then_disconnect(app: Any, path: str, gone: asyncio.Event) -> int:
    """A GET whose client disconnects when ``gone`` is set; the status the app answered."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def test_rotated_output_over_the_limits_is_400_and_max_is_fitted(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, max_width=500, max_height=500, max_area=100_000)

    async def steps() -> None:
        # 300x225 is within the limits; turned 45 degrees it is 371x371, 137,641 px > maxArea.
        status, _, body = await asgi_call.call(app, "/iiif/3/pic/full/300,/45/default.jpg")
        assert status == 400
        assert b"rotation" in body
        assert (await asgi_call.call(app, "/iiif/3/pic/full/300,/0/default.jpg"))[0] == 200
        status, headers, body = await asgi_call.call(app, "/iiif/3/pic/full/max/45/default.png")
        assert status == 200
        image = pyvips.Image.new_from_buffer(body, "")
        assert image.width * image.height <= 100_000
        assert image.width <= 500
        assert image.height <= 500
        link = dict(headers)["link"]
        assert "/full/max/45/" not in link  # fitted: no longer what ``max`` is unrotated

    asyncio.run(steps())


def test_render_deadline_is_503_with_retry_after_and_the_retry_gets_the_image(tmp_path: Path) -> None:
    app, service = make_app(tmp_path, render_timeout=0.2)
    gate = Gate()
    service._ops = replace(service._ops, render=gate)
    url = "/iiif/3/pic/0,0,256,256/256,/0/default.jpg"

    async def steps() -> None:
        status, headers, _ = await asgi_call.call(app, url)
        assert status == 503
        assert dict(headers)["retry-after"] == "5"
        gate.open.set()
        await until(lambda: service.lanes.tile.busy == 0)
        status, _, body = await asgi_call.call(app, url)
        assert (status, body) == (200, b"rendered")
        assert len(gate.crops) == 1

    asyncio.run(steps())


def test_a_client_that_disconnects_frees_its_queue_place_and_its_render_never_runs(tmp_path: Path) -> None:
    app, service = make_app(tmp_path)
    gate = Gate()
    service._ops = replace(service._ops, render=gate)
    lane = service.lanes.tile

    async def steps() -> None:
        first = asyncio.create_task(asgi_call.call(app, "/iiif/3/pic/0,0,256,256/256,/0/default.jpg"))
        await until(lambda: lane.busy == 1)
        gone = asyncio.Event()
        leaving = asyncio.create_task(call_then_disconnect(app, "/iiif/3/pic/256,0,256,256/256,/0/default.jpg", gone))
        await until(lambda: lane.waiting == 1)
        gone.set()
        assert await leaving == 499  # recorded, never sent to anybody
        await until(lambda: lane.waiting == 0)
        assert lane.dropped == 1
        gate.open.set()
        assert (await first)[0] == 200
        await until(lambda: lane.busy == 0)
        assert gate.crops == [(0, 0)]  # the disconnected request's render never ran

    asyncio.run(steps())


def test_a_render_others_wait_for_goes_on_when_one_client_disconnects(tmp_path: Path) -> None:
    app, service = make_app(tmp_path)
    gate = Gate()
    service._ops = replace(service._ops, render=gate)
    lane = service.lanes.tile
    url = "/iiif/3/pic/256,0,256,256/256,/0/default.jpg"

    async def steps() -> None:
        blocker = asyncio.create_task(asgi_call.call(app, "/iiif/3/pic/0,0,256,256/256,/0/default.jpg"))
        await until(lambda: lane.busy == 1)
        gone = asyncio.Event()
        leaving = asyncio.create_task(call_then_disconnect(app, url, gone))
        await until(lambda: lane.waiting == 1)
        staying = asyncio.create_task(asgi_call.call(app, url))  # joins the same flight
        await until(lambda: any(len(f.waiters) == 2 for f in service._flights._flights.values()))
        gone.set()
        assert await leaving == 499
        gate.open.set()
        assert (await staying)[0] == 200
        assert (await blocker)[0] == 200
        assert sorted(gate.crops) == [(0, 0), (256, 0)]
        assert lane.dropped == 0

    asyncio.run(steps())
