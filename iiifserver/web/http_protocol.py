"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol, one write per response.

Owns: coalescing a response's head with its body. uvicorn writes the status line and headers
as soon as the app starts the response and the body when it comes, two system calls where one
does; for the small tiles and info.json documents of a deep-zoom viewer the second call costs
a tenth of the whole request. The head is held and goes out with the body in one vectored
write, or alone when the response ends without one (HEAD, 304) or the connection closes.
Also owns: answering in the protocol. An app may offer ``answer_in_protocol(scope)``: a
synchronous lookup that returns either a complete ``web.response.Reply`` or ``None``. For a GET
or HEAD whose connection has nothing else in flight, the protocol asks it as soon as the
request's headers are parsed and, on a reply, writes it right there: no task, no ASGI messages,
no trip round the event loop. That is how repeated tiles and info.json documents are served
(they spent two thirds of their time in that machinery), and cold stored tiles. Anything else,
and every ``None``, goes the usual way through uvicorn's request cycle. An app may also offer an
``observer`` (``web.observer``): it hears of each request answered here.
Slow and greedy clients are bounded by ``web.connection_guard`` (deadlines, size and connection
caps); its sweep also closes idle keep-alive connections, so unlike uvicorn's protocol this one
arms no keep-alive timer per response.
This class leans on uvicorn internals (``web.uvicorn_contract`` lists and checks them before
the server starts, and falls back to uvicorn's stock protocol when they do not hold).
Must not know: IIIF, the app. It sees bytes on a transport and, at most, that lookup and observer.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from iiifserver.web.connection_guard import ConnectionGuardMixin
from iiifserver.web.observer import Observer, RequestInfo, notify
from iiifserver.web.response import Reply

AnswerInProtocol = Callable[[dict[str, Any]], Reply | None]

_HEAD_START = b"HTTP/1.1 "
_HEAD_END = b"\r\n\r\n"
_INTERIM = b"HTTP/1.1 1"  # 1xx (100 Continue): the client waits for it, it must leave at once


class CoalescingTransport:
    """A transport that holds a response head until the next write, flush or close."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif _is_head(data):
            self._held = bytes(data)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.flush()
        self._transport.writelines(chunks)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self._transport, name)


def _is_head(data: bytes | bytearray | memoryview) -> bool:
    if not isinstance(data, bytes):
        return False
    return data.startswith(_HEAD_START) and data.endswith(_HEAD_END) and not data.startswith(_INTERIM)


class _Answered:
    """Stands in for uvicorn's request cycle once a request was answered here: complete, so
    the parser's later callbacks (body, message end) and a disconnect leave it alone."""

    __slots__ = ()
    response_complete = True
    disconnected = False
    keep_alive = True

    class message_event:  # the attribute uvicorn calls ``set()`` on
        @staticmethod
        def set() -> None:
            pass


_ANSWERED = _Answered()
_CONNECTION_CLOSE = b"connection: close\r\n"


class HttpProtocol(ConnectionGuardMixin, HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``CoalescingTransport``, answering itself what the
    app's ``answer_in_protocol`` can."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lookup = getattr(self.app, "answer_in_protocol", None)
        self._lookup: AnswerInProtocol | None = lookup if callable(lookup) else None
        self._observer: Observer | None = getattr(self.app, "observer", None)
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._default_lines = b""

    @property
    def answers_in_protocol(self) -> bool:
        """Whether the app offers the lookup (uvicorn's own middlewares, when on, hide it)."""
        return self._lookup is not None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        if not self._guard_headers_complete():
            return  # refused (request line too long) or the connection is closing
        if self._lookup is None or not self._answered_in_protocol(self._lookup):
            HttpToolsProtocol.on_headers_complete(self)

    def on_response_complete(self) -> None:
        # uvicorn's own, less its keep-alive timer (a timer made and cancelled per response):
        # the guard's sweep closes idle connections instead.
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()  # a response without a body write: its head alone
        self.server_state.total_requests += 1
        self._guard_response_complete()
        if transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # the next pipelined request starts now
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)

    def _answered_in_protocol(self, lookup: AnswerInProtocol) -> bool:
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return False  # an earlier request on this connection is still being answered
        if self.expect_100_continue or self.flow.write_paused or self.root_path:
            return False
        if self.limit_concurrency is not None:
            return False  # uvicorn's own check decides
        observer = self._observer
        start = time.monotonic() if observer is not None else 0.0
        parser = self.parser
        method = parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        if parser.should_upgrade():
            return False
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        http_version = parser.get_http_version()
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope["method"] = method.decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = url.query or b""
        reply = lookup(scope)
        if reply is None:
            return False  # uvicorn sets up the same scope again and runs the app
        status, lines, body, way = reply
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        if keep_alive and self._guard.balance is not None and self._guard.balance.take():
            keep_alive = False  # this worker holds more than its share: the client reconnects
        defaults = self.server_state.default_headers  # a new list each second (the date)
        if defaults is not self._defaults:
            self._defaults = defaults
            self._default_lines = b"".join(b"%s: %s\r\n" % (name, value) for name, value in defaults)
        head = b"".join(
            (STATUS_LINE[status], self._default_lines, lines, b"" if keep_alive else _CONNECTION_CLOSE, b"\r\n")
        )
        self.cycle = _ANSWERED  # type: ignore[assignment]
        transport = self.transport
        if body:
            transport.writelines((head, body))
        else:
            transport.write(head)
            transport.flush()  # type: ignore[attr-defined]
        if observer is not None:
            # tuple.__new__: a named tuple's own constructor is a Python call, on every request here
            info = tuple.__new__(RequestInfo, (scope, start, time.monotonic() - start))
            notify(observer, info, status, len(body), way)
        if not keep_alive:
            transport.close()
        self.on_response_complete()
        return True
