"""The uvicorn internals our protocol and supervisor rely on hold for the installed versions (an
upgrade that breaks one fails here, loudly); when one does not hold, start-up falls back to
uvicorn's own protocol or socket with one warning, and the fallback serves correct answers."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import Server

from iiifserver import serving
from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.cli import server_config
from iiifserver.config import WORKER_ENV, Settings
from iiifserver.web import uvicorn_contract
from iiifserver.web.connection_guard import GuardedHttpToolsProtocol
from iiifserver.web.http_protocol import HttpProtocol
from tests.web.conftest import ImageRoot

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
WARNING = "uvicorn internals iiifserver relies on do not hold"


def test_the_contract_holds_for_the_installed_versions() -> None:
    assert uvicorn_contract.check() == []


def test_installed_versions_are_the_tested_ones_and_pyproject_pins_them() -> None:
    for name, version in uvicorn_contract.versions().items():
        assert uvicorn_contract.in_tested_range(version, uvicorn_contract.TESTED[name]), (name, version)
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = {dep.split(">=")[0].split("[")[0]: dep[dep.index(">=") :] for dep in dependencies if ">=" in dep}
    assert {name: pins[name] for name in uvicorn_contract.TESTED} == uvicorn_contract.TESTED


@pytest.mark.parametrize(
    ("version", "inside"),
    [("0.55.0", True), ("0.55.12", True), ("0.54.9", False), ("0.56.0", False), ("1.0", False), ("0.55rc1", False)],
)
def test_tested_range(version: str, inside: bool) -> None:
    assert uvicorn_contract.in_tested_range(version, ">=0.55,<0.56") is inside


def test_what_the_check_relies_on_is_what_the_protocol_uses() -> None:
    # Every name the check lists exists on a real connection (a typo would pass silently otherwise).
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(app=lambda *_: None, log_config=None, lifespan="off")
        protocol = HttpProtocol(config=config, server_state=uvicorn.server.ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()
    for name in uvicorn_contract.PROTOCOL_ATTRIBUTES:
        assert hasattr(protocol, name), name
    for name in uvicorn_contract.PARSER_METHODS:
        assert callable(getattr(protocol.parser, name)), name
    assert httptools_impl.STATUS_LINE[200] == b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    ("target", "name", "named", "guarded"),
    [
        # uvicorn's own cycle reads STATUS_LINE too: without it the stock protocol answers 500s,
        # which the guard's conversation notices.
        (httptools_impl, "STATUS_LINE", "STATUS_LINE", False),
        (httptools_impl.HttpToolsProtocol, "shutdown", "shutdown", True),
        # What the connection guard hooks into: the fallback then runs without it, and says so.
        (httptools_impl.HttpToolsProtocol, "on_response_complete", "on_response_complete", False),
        (httptools_impl.HttpToolsProtocol, "on_message_begin", "on_message_begin", False),
    ],
)
def test_a_broken_protocol_contract_falls_back_with_one_warning(
    target: Any,
    name: str,
    named: str,
    guarded: bool,
    image_root: ImageRoot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(images=image_root.root, cache=tmp_path)
    monkeypatch.setenv(WORKER_ENV, settings.to_json())
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="iiifserver.web.uvicorn_contract"):
        patch.delattr(target, name)
        breaches = uvicorn_contract.check()
        assert breaches
        parts = {breach.part for breach in breaches}
        assert (uvicorn_contract.Part.GUARD in parts) is not guarded
        assert uvicorn_contract.Part.SUPERVISOR not in parts
        config = server_config(settings)
    if guarded:
        assert config.http is GuardedHttpToolsProtocol
    else:
        assert config.http == uvicorn_contract.STOCK_PROTOCOL == "httptools"
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert WARNING in warnings[0]
    assert named in warnings[0]
    assert "uvicorn>=0.55,<0.56" in warnings[0]  # the tested range
    assert "stock httptools protocol" in warnings[0]
    assert ("WITHOUT the connection guard" in warnings[0]) is not guarded


def test_a_conversation_that_goes_wrong_is_a_breach(monkeypatch: pytest.MonkeyPatch) -> None:
    # An attribute can exist and still change meaning: say, a request is no longer started the
    # way our protocol starts the next pipelined one.
    monkeypatch.setattr(httptools_impl.HttpToolsProtocol, "_start_asgi_task", lambda self, cycle, app: None)
    breaches = [str(breach) for breach in uvicorn_contract.protocol_breaches()]
    assert any("a miss after an answer went []" in breach for breach in breaches), breaches


def test_a_request_line_the_guard_no_longer_sees_is_a_guard_breach(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httptools_impl.HttpToolsProtocol, "on_url", lambda self, url: None)
    breaches = uvicorn_contract.protocol_breaches()
    assert any(breach.part is uvicorn_contract.Part.GUARD for breach in breaches), breaches


def test_a_broken_supervisor_contract_shares_one_socket_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def startup(self: Server, sockets: list[socket.socket] | None = None) -> None:
        if sockets:  # a truth test first would see our per-worker list empty, and bind nothing
            pass

    monkeypatch.setattr(Server, "startup", startup)
    handed: list[Any] = []

    class Supervisor:
        def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
            handed.extend(sockets)

        def run(self) -> None:
            pass

    monkeypatch.setattr(serving, "Multiprocess", Supervisor)
    config = uvicorn.Config(app="iiifserver.app:worker_app", host="127.0.0.1", port=0, workers=2, log_config=None)
    with caplog.at_level(logging.WARNING, logger="iiifserver.web.uvicorn_contract"):
        serving.run(config)
    try:
        assert len(handed) == 1
        assert isinstance(handed[0], socket.socket)  # uvicorn's shared socket, bound in the parent
        assert type(handed) is not serving.PerWorkerSocket
    finally:
        for sock in handed:
            sock.close()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "supervisor: Server.startup no longer iterates" in warnings[0]


@pytest.mark.parametrize("protocol", [uvicorn_contract.STOCK_PROTOCOL, GuardedHttpToolsProtocol])
def test_the_fallback_protocol_serves_the_same_answers(image_root: ImageRoot, tmp_path: Path, protocol: Any) -> None:
    """uvicorn's stock protocol over a real socket: the first answer (the endpoint), the replay
    (the memo through ASGI), a 304 and an error are what the app answers in process."""
    settings = Settings(images=image_root.root, cache=tmp_path / "served", source_check_interval=60.0)
    app = create_app(settings)
    reference = create_app(Settings(images=image_root.root, cache=tmp_path / "reference"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol,
        loop="asyncio",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server thread ended"
            assert time.monotonic() < deadline, "the server did not start within 20 s"
            time.sleep(0.02)
        assert config.http_protocol_class in (httptools_impl.HttpToolsProtocol, GuardedHttpToolsProtocol)
        host = f"127.0.0.1:{port}"
        tile = "/iiif/3/sample/0,0,256,256/256,/0/default.jpg"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        etag = ""
        for path, extra in [
            ("/iiif/3/sample/info.json", {}),
            ("/iiif/3/sample/info.json", {}),
            (tile, {}),
            (tile, {}),  # a whole stored tile is kept (and memoised) from its second ask
            (tile, {}),
            (tile, {"if-none-match": "ETAG"}),
            ("/iiif/3/nothing/info.json", {}),
            ("/health", {}),
        ]:
            headers = {name: etag if value == "ETAG" else value for name, value in extra.items()}
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            got = {k.lower(): v for k, v in response.getheaders() if k.lower() != "date"}
            status, expected_headers, expected = asyncio.run(
                call(reference, path, headers=[("host", host), *headers.items()])
            )
            assert (response.status, body) == (status, expected), path
            assert got == dict(expected_headers), path
            etag = got.get("etag", etag)
        connection.close()
        assert app.state.memo.hits == 3  # info.json, the tile and its 304, replayed through ASGI
    finally:
        server.should_exit = True
        thread.join(timeout=30)
