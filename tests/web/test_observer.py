"""Every answered request reaches the observer exactly once, with the way it was answered: in the
protocol (memo, cold tile) and through ASGI (memo, endpoint, framework)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings
from iiifserver.web.http_protocol import HttpProtocol
from iiifserver.web.observer import AccessLog, RequestInfo, Way
from tests.web.conftest import ImageRoot
from tests.web.test_http_protocol import Connection, sent

INFO = "/iiif/3/sample/info.json"
TILE = "/iiif/3/sample/256,0,256,256/256,/0/default.jpg"


class Observed:
    def __init__(self) -> None:
        self.calls: list[tuple[RequestInfo, int, int, Way]] = []

    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        self.calls.append((request, status, bytes_sent, way))


def make(image_root: ImageRoot, tmp_path: Path, observer: Observed) -> Any:
    return create_app(Settings(images=image_root.root, cache=tmp_path, source_check_interval=60.0), observer)


def test_each_way_reports_once_with_its_status(image_root: ImageRoot, tmp_path: Path) -> None:
    observer = Observed()
    app = make(image_root, tmp_path, observer)
    config = uvicorn.Config(app=app, log_config=None, proxy_headers=False, lifespan="off")

    async def over_protocol(path: str, *headers: bytes) -> bytes:
        state = ServerState()
        protocol = HttpProtocol(config=config, server_state=state, app_state={})
        connection = Connection()
        protocol.connection_made(connection)  # type: ignore[arg-type]
        request = b"GET %s HTTP/1.1\r\nHost: testserver\r\n%s\r\n" % (path.encode(), b"".join(headers))
        protocol.data_received(request)
        await asyncio.gather(*state.tasks)
        protocol.connection_lost(None)
        return sent(connection)

    def last(expected_calls: int) -> tuple[str, bytes, int, int, Way]:
        assert len(observer.calls) == expected_calls  # exactly one more per request
        request, status, bytes_sent, way = observer.calls[-1]
        assert request.duration >= 0
        return request.method, request.raw_path, status, bytes_sent, way

    async def run() -> None:
        out = await over_protocol(INFO)  # first sight: the endpoint, through ASGI
        body = out.partition(b"\r\n\r\n")[2]
        assert last(1) == ("GET", INFO.encode(), 200, len(body), Way.ENDPOINT)
        out = await over_protocol(INFO)  # memoised: replayed in the protocol
        assert last(2) == ("GET", INFO.encode(), 200, len(body), Way.PROTOCOL_MEMO)
        out = await over_protocol(TILE)  # the image is open: a cold stored tile, in the protocol
        tile = out.partition(b"\r\n\r\n")[2]
        assert tile.startswith(b"\xff\xd8")
        assert last(3) == ("GET", TILE.encode(), 200, len(tile), Way.PROTOCOL_TILE)
        await over_protocol("/health")
        assert last(4) == ("GET", b"/health", 200, 3, Way.FRAMEWORK)
        await over_protocol("/iiif/3/nothing/info.json")
        assert last(5) == ("GET", b"/iiif/3/nothing/info.json", 404, last(5)[3], Way.ENDPOINT)
        out = await over_protocol(TILE)  # asked again: kept in memory, and its answer memoised
        assert last(6) == ("GET", TILE.encode(), 200, len(tile), Way.PROTOCOL_TILE)
        # Through ASGI (uvicorn's stock protocol, or a connection with a request in flight).
        status, headers, replayed = await call(app, TILE, headers=[("host", "testserver")])
        assert (status, replayed) == (200, tile)
        assert last(7) == ("GET", TILE.encode(), 200, len(tile), Way.MEMO)
        etag = dict(headers)["etag"]
        status, _, _ = await call(app, TILE, method="HEAD", headers=[("host", "testserver"), ("if-none-match", etag)])
        assert last(8) == ("HEAD", TILE.encode(), 304, 0, Way.MEMO)
        status, _, _ = await call(app, "/iiif/3/sample/info.json?x=1", headers=[("host", "testserver")])
        assert last(9)[2:] == (200, len(body), Way.ENDPOINT)
        assert observer.calls[-1][0].query_string == b"x=1"
        status, _, _ = await call(app, "/no/such/page")
        assert last(10) == ("GET", b"/no/such/page", 404, last(10)[3], Way.FRAMEWORK)
        await app.state.image_service.drain()

    asyncio.run(run())


def test_without_an_observer_nothing_is_reported_and_answers_are_the_same(
    image_root: ImageRoot, tmp_path: Path
) -> None:
    app = create_app(Settings(images=image_root.root, cache=tmp_path, metrics=False))
    assert app.observer is None  # no metrics, no access log: one ``is None`` check
    observed = make(image_root, tmp_path / "observed", Observed())

    async def run() -> None:
        for path in (INFO, TILE, INFO, "/health", "/iiif/3/nothing/info.json"):
            plain = await call(app, path, headers=[("host", "testserver")])
            assert plain == await call(observed, path, headers=[("host", "testserver")])
        await app.state.image_service.drain()
        await observed.state.image_service.drain()

    asyncio.run(run())


def test_access_log_setting_installs_the_access_log_observer(image_root: ImageRoot, tmp_path: Path) -> None:
    app = create_app(Settings(images=image_root.root, cache=tmp_path, access_log=True, metrics=False))
    assert isinstance(app.observer, AccessLog)


def test_access_log_observer_writes_every_way_once(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog()
    request = RequestInfo.of("GET", b"/iiif/3/a%2Fb/info.json", b"q=1", "1.1", ("10.0.0.1", 5), 0.0, 0.001)
    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        for way in Way:
            log.answered(request, 200, 10, way)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == len(Way)  # uvicorn's own access log is off: this one logs them all
    for line, way in zip(lines, Way, strict=True):
        assert ' 10.0.0.1 "GET /iiif/3/a%2Fb/info.json?q=1 HTTP/1.1" 200 10 1.000ms ' in line
        assert f"ms {way.value} id=" in line
