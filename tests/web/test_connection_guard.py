"""Slow and greedy clients against a real server over real sockets (attack cases C09, C10, C11):
deadlines, size caps and the connection cap hold in our protocol and in the guarded fallback,
and well-behaved clients (keep-alive, pipelining) do not notice them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from iiifserver.app import create_app
from iiifserver.config import Settings
from iiifserver.web import connection_guard
from iiifserver.web.connection_guard import ConnectionLimits, GuardedHttpToolsProtocol
from iiifserver.web.http_protocol import HttpProtocol

LIMITS = ConnectionLimits(
    header_timeout=1.0,
    body_timeout=1.0,
    keep_alive_timeout=1.0,
    max_request_line=1024,
    max_header_bytes=4096,
    max_connections=8,
)


class App:
    """Answers every request with the length of its body, once the body is read."""

    connection_limits = LIMITS

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"%d" % size
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=[HttpProtocol, GuardedHttpToolsProtocol], ids=["ours", "fallback"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(
        App(),
        host="127.0.0.1",
        port=free,
        http=request.param,
        loop="uvloop",
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,  # uvicorn's proxy middleware would hide the app's connection_limits
        timeout_keep_alive=1,
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
        yield free
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic()


def is_open(sock: socket.socket) -> bool:
    """The server has neither closed this connection nor sent anything on it."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except ConnectionResetError:
        return False


def request(sock: socket.socket, path: str = "/", extra: bytes = b"") -> bytes:
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra))
    return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_silent_connection_is_closed_by_the_header_deadline(port: int) -> None:
    start = time.monotonic()
    with connect(port) as sock:
        data, closed = read_until_closed(sock)
    assert data == b""  # it never asked anything: no answer, just the close
    assert LIMITS.header_timeout * 0.7 <= closed - start <= LIMITS.header_timeout + 1.0


def test_a_trickling_client_gets_408_and_is_closed(port: int) -> None:
    start = time.monotonic()
    line = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100
    with connect(port) as sock:
        answer = b""
        for byte in line:  # a byte every 0.2 s; the whole head would take 24 s
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                answer, closed = read_until_closed(sock)
                break
        else:
            pytest.fail("the trickle was never cut off")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close\r\n" in answer
    assert closed - start <= LIMITS.header_timeout + 1.0


def test_deadlines_are_per_request_on_a_keep_alive_connection(port: int) -> None:
    # Five requests over two seconds on one connection (twice the header deadline): all served.
    with connect(port) as sock:
        for _ in range(5):
            assert request(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.4)
        assert is_open(sock)


@pytest.mark.parametrize("protocol_class", [HttpProtocol, GuardedHttpToolsProtocol])
def test_pipelined_requests_are_answered_in_order(protocol_class: type[HttpProtocol]) -> None:
    # Over a fake transport: uvicorn 0.55's own protocol now and then closes a real connection
    # that pipelines (3 in 40 tries, with or without the guard), which would make this flaky.
    from tests.web.test_http_protocol import Connection, sent

    async def run() -> None:
        state = ServerState()
        config = uvicorn.Config(app=App(), log_config=None, proxy_headers=False, lifespan="off")
        protocol = protocol_class(config=config, server_state=state, app_state={})
        connection = Connection()
        protocol.connection_made(connection)  # type: ignore[arg-type]
        protocol.data_received(b"".join(b"POST /%d HTTP/1.1\r\nContent-Length: 1\r\n\r\n%d" % (n, n) for n in range(3)))
        while state.total_requests < 3:
            await asyncio.gather(*state.tasks)
        assert sent(connection).count(b"HTTP/1.1 200 OK") == 3
        assert protocol._phase == connection_guard.IDLE
        assert protocol._open == 0
        assert not connection.closing
        protocol.connection_lost(None)

    asyncio.run(run())


def test_an_idle_keep_alive_connection_is_closed(port: int) -> None:
    with connect(port) as sock:
        assert request(sock).startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        time.sleep(LIMITS.keep_alive_timeout / 3)
        assert is_open(sock)
        data, closed = read_until_closed(sock)
    assert data == b""
    assert closed - answered <= LIMITS.keep_alive_timeout + 1.0


def test_a_huge_header_gets_431_and_the_connection_closes(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"z" * 1024 * 1024)  # 1 MiB of one header
        answer, _ = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:80]
    assert b"connection: close\r\n" in answer


@pytest.mark.parametrize("length", [2000, 100_000])
def test_a_long_request_line_gets_414(port: int, length: int) -> None:
    # 2000: over the line cap, head within the header cap; 100 000: over both (the line decides).
    with connect(port) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /" + b"a" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, _ = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 414 "), answer[:80]
    assert answer.endswith(b"\r\n\r\nRequest line too long\n")


def test_a_body_trickled_past_its_deadline_gets_408(port: int) -> None:
    start = time.monotonic()
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        answer = b""
        for _ in range(50):  # a byte every 0.1 s: 5 s for the whole body
            try:
                sock.sendall(b"b")
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                answer, closed = read_until_closed(sock)
                break
        else:
            pytest.fail("the trickled body was never cut off")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
    assert closed - start <= LIMITS.body_timeout + 1.0
    with connect(port) as sock:  # a body sent at once is read whole
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert read_response(sock).endswith(b"\r\n\r\n5")


def test_at_the_connection_cap_the_oldest_idle_go_first(port: int) -> None:
    cap = LIMITS.max_connections
    idle = []
    for _ in range(cap):
        idle.append(connect(port))
        time.sleep(0.02)  # in order of age
    try:
        time.sleep(0.1)
        extra = 3
        with connect(port) as first:
            assert request(first).startswith(b"HTTP/1.1 200 ")  # a new client is served
            newcomers = [connect(port) for _ in range(extra - 1)]
            time.sleep(0.2)
            assert request(newcomers[-1]).startswith(b"HTTP/1.1 200 ")
            for sock in newcomers:
                sock.close()
        # The server closes an evicted connection in a later loop iteration than the accept that
        # evicted it: on a loaded machine its end may reach us a moment after the newcomer's answer.
        deadline = time.monotonic() + 0.25
        while any(is_open(sock) for sock in idle[:extra]) and time.monotonic() < deadline:
            time.sleep(0.01)
        states = [is_open(sock) for sock in idle]
        assert states[:extra] == [False] * extra  # the oldest idle were closed
        assert all(states[extra:])  # the younger ones were left alone
    finally:
        for sock in idle:
            sock.close()


def test_at_the_cap_with_nothing_idle_a_new_connection_gets_503(port: int) -> None:
    busy = [connect(port) for _ in range(LIMITS.max_connections)]
    try:
        for sock in busy:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # mid-headers: not idle, cannot go
        time.sleep(0.1)
        with connect(port) as sock:
            answer, _ = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:80]
        assert all(is_open(sock) for sock in busy)
    finally:
        for sock in busy:
            sock.close()


def test_huge_headers_do_not_grow_the_worker(port: int) -> None:
    # Without the cap the parser would hold every byte of an unfinished header: 6 x 1 MiB here.
    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    before = resident()
    socks = [connect(port) for _ in range(6)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: ")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"z" * 1024 * 1024)
        time.sleep(0.3)
        grown = resident() - before
    finally:
        for sock in socks:
            sock.close()
    assert grown < 3 * 1024 * 1024, grown


def test_the_app_carries_the_limits_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        images=tmp_path,
        cache=tmp_path / "cache",
        header_timeout=3.0,
        body_timeout=4.0,
        keep_alive_timeout=2.0,
        max_request_line=2048,
        max_header_bytes=16384,
        max_connections=100,
        balance_connections=False,
    )
    app = create_app(settings)
    assert app.connection_limits == ConnectionLimits(3.0, 4.0, 2.0, 2048, 16384, 100, False)
    assert create_app(dataclasses.replace(settings, balance_connections=True)).connection_limits.balance
    assert connection_guard.ConnectionLimits.from_settings(Settings()).max_header_bytes == 32768


def test_each_event_kind_is_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        guard = connection_guard.Guard(LIMITS, loop)
        with caplog.at_level("WARNING", logger="iiifserver.web.connection_guard"):
            for _ in range(1000):
                guard.note("header_bytes")
            guard.note("refused")
            guard.now += connection_guard.LOG_INTERVAL
            guard.flush(guard.now)
    finally:
        loop.close()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "connection guard: 1 x header block too large (431)",
        "connection guard: 1 x new connections refused at the connection cap (503)",
        "connection guard: 999 x header block too large (431)",
    ]


@pytest.mark.e2e
def test_the_serve_command_applies_the_limits(demo_images: Path, tmp_path: Path) -> None:
    """``iiifserver serve`` flags reach the worker's protocol: a real process, real settings."""
    from tests.e2e.conftest import start_server, stop_server

    flags = ("--header-timeout", "1", "--max-header-bytes", "4096", "--max-request-line", "2048")
    proc, port = start_server(demo_images, tmp_path / "cache", *flags, log=tmp_path / "server.log", workers=1)
    try:
        start = time.monotonic()
        with connect(port) as sock:
            data, closed = read_until_closed(sock)
        assert data == b""
        assert closed - start <= 2.5
        with connect(port) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 8192 + b"\r\n\r\n")
            answer, _ = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        with connect(port) as sock:
            assert request(sock, "/health").startswith(b"HTTP/1.1 200 ")
    finally:
        stop_server(proc)
