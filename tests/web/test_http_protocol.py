"""The HTTP protocol: one write per response, nothing held back; repeated requests answered in
the protocol, in order, framed exactly as uvicorn frames them, each reported to the observer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from iiifserver.web import connection_guard
from iiifserver.web.http_protocol import CoalescingTransport, HttpProtocol
from iiifserver.web.observer import AccessLog, Observer, RequestInfo, Way
from iiifserver.web.response import Reply

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class Recorder:
    """A transport that records the system calls it would make."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, chunks: Any) -> None:
        self.calls.append(("writelines", [bytes(c) for c in chunks]))

    def close(self) -> None:
        self.calls.append(("close", None))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def make() -> tuple[CoalescingTransport, Recorder]:
    real = Recorder()
    return CoalescingTransport(real), real  # type: ignore[arg-type]


def test_head_and_body_leave_in_one_vectored_write() -> None:
    transport, real = make()
    transport.write(HEAD)
    assert real.calls == []
    transport.write(b"hello")
    assert real.calls == [("writelines", [HEAD, b"hello"])]
    transport.write(b"more")  # a later chunk of the same body goes straight through
    assert real.calls[-1] == ("write", b"more")


def test_a_head_without_body_goes_out_on_flush() -> None:
    transport, real = make()
    transport.write(b'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n')
    transport.flush()
    transport.flush()  # nothing held: no second write
    assert real.calls == [("write", b'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n')]


def test_interim_responses_are_not_held() -> None:
    transport, real = make()
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert real.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]


def test_close_and_eof_flush_first_and_abort_drops() -> None:
    transport, real = make()
    transport.write(HEAD)
    transport.close()
    assert real.calls == [("write", HEAD), ("close", None)]
    transport, real = make()
    transport.write(HEAD)
    transport.write_eof()
    assert real.calls == [("write", HEAD), ("write_eof", None)]
    transport, real = make()
    transport.write(HEAD)
    transport.abort()
    assert real.calls == [("abort", None)]


def test_other_writes_and_attributes_pass_through() -> None:
    transport, real = make()
    transport.write(b"partial head without end")
    transport.write(bytearray(HEAD))  # not bytes: never held
    transport.writelines([HEAD, b"x"])
    assert real.calls == [
        ("write", b"partial head without end"),
        ("write", HEAD),
        ("writelines", [HEAD, b"x"]),
    ]
    assert transport.get_extra_info("peername") == "info:peername"


def test_writelines_flushes_a_held_head_first() -> None:
    transport, real = make()
    transport.write(HEAD)
    transport.writelines([b"a", b"b"])
    assert real.calls == [("write", HEAD), ("writelines", [b"a", b"b"])]


# --- answering in the protocol ---------------------------------------------------------------

DATE = (b"date", b"Sun, 22 Nov 2026 10:00:00 GMT")
HIT_LINES = b'content-type: image/jpeg\r\netag: "k"\r\ncontent-length: 4\r\n'


class Connection(Recorder):
    """The socket side of one connection, as uvicorn's protocol sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        super().close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Observed:
    """An observer that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[RequestInfo, int, int, Way]] = []

    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        self.calls.append((request, status, bytes_sent, way))


class App:
    """Answers ``/hit/...`` in the protocol (as the fast path does for a memoised request) and
    everything through ASGI; ``/slow`` waits for ``release``."""

    def __init__(self, observer: Observer | None = None) -> None:
        self.asked: list[dict[str, Any]] = []
        self.called: list[str] = []
        self.release = asyncio.Event()
        self.observer = observer

    def answer_in_protocol(self, scope: dict[str, Any]) -> Reply | None:
        self.asked.append(dict(scope))
        if not scope["path"].startswith("/hit/"):
            return None
        return Reply(200, HIT_LINES, b"" if scope["method"] == "HEAD" else b"tile", Way.PROTOCOL_MEMO)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.called.append(scope["path"])
        if scope["path"] == "/slow":
            await self.release.wait()
        body = b"slow!" if scope["path"] == "/slow" else b"tile"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def connect(app: App, access_log: bool = False) -> tuple[HttpProtocol, Connection, ServerState]:
    config = uvicorn.Config(app=app, access_log=access_log, log_config=None, proxy_headers=False)
    state = ServerState()
    state.default_headers = [DATE]
    protocol = HttpProtocol(config=config, server_state=state, app_state={})
    connection = Connection()
    protocol.connection_made(connection)  # type: ignore[arg-type]
    return protocol, connection, state


def sent(connection: Connection) -> bytes:
    out = b""
    for kind, data in connection.calls:
        if kind == "write":
            out += data
        elif kind == "writelines":
            out += b"".join(data)
    return out


def test_a_hit_is_written_in_one_call_without_a_task() -> None:
    async def run() -> None:
        app = App()
        protocol, connection, state = connect(app)
        protocol.data_received(b"GET /hit/a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.calls == [
            (
                "writelines",
                [
                    b"HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-type: image/jpeg\r\n"
                    b'etag: "k"\r\ncontent-length: 4\r\n\r\n',
                    b"tile",
                ],
            )
        ]
        assert app.called == []
        assert not state.tasks
        assert state.total_requests == 1
        # Idle now: the connection guard's sweep closes it after keep_alive_timeout, and no
        # keep-alive timer is armed per response (uvicorn's would be).
        assert protocol._phase == connection_guard.IDLE
        assert protocol.timeout_keep_alive_task is None
        scope = app.asked[0]
        assert (scope["method"], scope["path"], scope["raw_path"], scope["query_string"]) == (
            "GET",
            "/hit/a",
            b"/hit/a",
            b"",
        )
        assert scope["client"] == ("127.0.0.1", 50000)
        assert (b"host", b"x") in scope["headers"]
        protocol.connection_lost(None)

    asyncio.run(run())


def test_head_http_1_0_and_connection_close() -> None:
    async def run() -> None:
        app = App()
        protocol, connection, _ = connect(app)
        protocol.data_received(b"HEAD /hit/a HTTP/1.1\r\n\r\n")
        assert connection.calls[-1][0] == "write"  # the head alone, content-length kept
        assert sent(connection).endswith(b"content-length: 4\r\n\r\n")
        assert not connection.closing
        protocol.data_received(b"GET /hit/b HTTP/1.0\r\n\r\n")
        assert b"connection: close\r\n\r\ntile" in sent(connection)
        assert connection.closing
        assert app.asked[-1]["http_version"] == "1.0"
        protocol, connection, _ = connect(app)
        protocol.data_received(b"GET /hit/c HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert sent(connection).endswith(b"connection: close\r\n\r\ntile")
        assert connection.closing

    asyncio.run(run())


def test_misses_and_other_methods_go_through_the_app() -> None:
    async def run() -> None:
        app = App()
        protocol, connection, state = connect(app)
        protocol.data_received(b"GET /miss HTTP/1.1\r\n\r\n")
        await asyncio.gather(*state.tasks)
        assert app.called == ["/miss"]
        assert len(app.asked) == 1
        protocol.data_received(b"POST /hit/a HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
        await asyncio.gather(*state.tasks)
        assert app.called == ["/miss", "/hit/a"]
        assert len(app.asked) == 1
        assert sent(connection).count(b"HTTP/1.1 200 OK") == 2
        protocol.connection_lost(None)

    asyncio.run(run())


def test_encoded_paths_and_queries_reach_the_lookup_as_uvicorn_parses_them() -> None:
    async def run() -> None:
        app = App()
        protocol, _, _ = connect(app)
        protocol.data_received(b"GET /hit/a%2Fb%20c?x=1 HTTP/1.1\r\n\r\n")
        scope = app.asked[0]
        assert scope["path"] == "/hit/a/b c"
        assert scope["raw_path"] == b"/hit/a%2Fb%20c"
        assert scope["query_string"] == b"x=1"
        protocol.connection_lost(None)

    asyncio.run(run())


def test_pipelined_requests_are_answered_in_order() -> None:
    # A hit behind a request still being answered must wait its turn, never overtake it.
    async def run() -> None:
        app = App()
        protocol, connection, state = connect(app)
        protocol.data_received(b"GET /slow HTTP/1.1\r\n\r\nGET /hit/a HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.01)
        assert sent(connection) == b""
        app.release.set()
        for _ in range(10):
            await asyncio.gather(*state.tasks)
            await asyncio.sleep(0)
        out = sent(connection)
        assert out.index(b"slow!") < out.index(b"tile")
        assert out.count(b"HTTP/1.1 200 OK") == 2
        protocol.connection_lost(None)

    asyncio.run(run())


def test_a_request_body_after_an_answer_is_skipped_and_the_next_request_parsed() -> None:
    async def run() -> None:
        app = App()
        protocol, connection, _ = connect(app)
        protocol.data_received(b"GET /hit/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /hit/b HTTP/1.1\r\n\r\n")
        assert [scope["path"] for scope in app.asked] == ["/hit/a", "/hit/b"]
        assert sent(connection).count(b"HTTP/1.1 200 OK") == 2
        protocol.connection_lost(None)  # after an answer: nothing waits, nothing raises

    asyncio.run(run())


def test_expect_continue_and_a_full_send_buffer_go_the_usual_way() -> None:
    async def run() -> None:
        app = App()
        protocol, connection, state = connect(app)
        protocol.data_received(b"GET /hit/a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")
        await asyncio.gather(*state.tasks)
        assert app.called == ["/hit/a"]
        protocol.flow.pause_writing()  # the client is not reading: don't pile more onto its buffer
        protocol.data_received(b"GET /hit/b HTTP/1.1\r\n\r\n")
        assert app.asked == []
        protocol.flow.resume_writing()
        await asyncio.gather(*state.tasks)
        assert app.called == ["/hit/a", "/hit/b"]
        assert sent(connection).count(b"HTTP/1.1 200 OK") == 2
        protocol.connection_lost(None)

    asyncio.run(run())


def test_answers_in_the_protocol_are_access_logged_through_the_observer(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        app = App(observer=AccessLog())
        protocol, _, state = connect(app, access_log=True)
        protocol.access_log = False  # uvicorn's own log of the ASGI answers: not this test's subject
        protocol.data_received(b"GET /hit/a%20b?q=1 HTTP/1.1\r\n\r\nGET /miss HTTP/1.1\r\n\r\n")
        await asyncio.gather(*state.tasks)
        protocol.connection_lost(None)

    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        asyncio.run(run())
    messages = [record.getMessage() for record in caplog.records if record.name == "iiifserver.access"]
    # This fake app answers /miss through ASGI without telling the observer (the real app's
    # fast path does): the protocol's own answer is logged, once, with its way.
    assert len(messages) == 1
    assert ' 127.0.0.1 "GET /hit/a%20b?q=1 HTTP/1.1" 200 4 ' in messages[0]
    assert "ms protocol_memo id=" in messages[0]


def test_each_answer_in_the_protocol_is_observed_once() -> None:
    async def run() -> None:
        observer = Observed()
        app = App(observer=observer)
        protocol, _, state = connect(app)
        protocol.data_received(b"GET /hit/a?q=1 HTTP/1.1\r\n\r\nHEAD /hit/b HTTP/1.0\r\n\r\n")
        assert [(status, sent, way) for _, status, sent, way in observer.calls] == [
            (200, 4, Way.PROTOCOL_MEMO),
            (200, 0, Way.PROTOCOL_MEMO),
        ]
        first, second = observer.calls[0][0], observer.calls[1][0]
        assert (first.method, first.raw_path, first.query_string, first.http_version) == (
            "GET",
            b"/hit/a",
            b"q=1",
            "1.1",
        )
        assert first.client == ("127.0.0.1", 50000)
        assert 0 <= first.duration < 1
        assert first.start <= second.start
        assert (second.method, second.http_version) == ("HEAD", "1.0")
        protocol, _, state = connect(app)
        protocol.data_received(b"GET /miss HTTP/1.1\r\n\r\n")
        await asyncio.gather(*state.tasks)
        assert len(observer.calls) == 2  # an ASGI answer is the app's to report (FastPath does)
        protocol.connection_lost(None)

    asyncio.run(run())


def test_a_failing_observer_never_breaks_the_response(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
            raise RuntimeError("observer bug")

    async def run() -> bytes:
        protocol, connection, _ = connect(App(observer=Broken()))
        protocol.data_received(b"GET /hit/a HTTP/1.1\r\n\r\n")
        protocol.connection_lost(None)
        return sent(connection)

    with caplog.at_level(logging.ERROR, logger="iiifserver.web.observer"):
        out = asyncio.run(run())
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\ntile")
    assert "request observer failed" in caplog.text


def test_an_app_without_the_lookup_is_served_as_usual() -> None:
    async def run() -> None:
        async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        config = uvicorn.Config(app=plain, log_config=None)
        state = ServerState()
        protocol = HttpProtocol(config=config, server_state=state, app_state={})
        connection = Connection()
        protocol.connection_made(connection)  # type: ignore[arg-type]
        protocol.data_received(b"GET /hit/a HTTP/1.1\r\n\r\n")
        await asyncio.gather(*state.tasks)
        assert sent(connection).startswith(b"HTTP/1.1 204 No Content")
        assert not protocol.answers_in_protocol
        protocol.connection_lost(None)

    asyncio.run(run())
