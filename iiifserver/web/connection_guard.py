"""Slow and greedy clients, bounded by the HTTP protocol itself: deadlines and caps per connection.

Owns: the limits a client meets before the app sees a request (``ConnectionLimits``, from the
settings), and enforcing them in uvicorn's httptools protocol through ``ConnectionGuardMixin``:
a deadline for a request's headers (from its first byte, or from the connection's opening for the
first request) and for its body, an idle keep-alive deadline, a cap on the request target (414)
and on the header block (431), and a cap on open connections per worker process: under pressure
the oldest idle connections (keep-alive ones, and those that have sent nothing yet) are closed
first, and when none can go the new one is answered 503 and closed at once. Refusals are short
plain-text responses with ``connection: close``; the rest of what the client sends is read and
dropped for a moment (so the client sees the response rather than a reset), then the connection
closes. Each event kind is logged at most once per ``LOG_INTERVAL``, with a count.
How, cheaply: no timer per request. Each connection notes its phase and since when (a clock read
once per sweep); one timer per worker process sweeps the connections every ``interval`` seconds.
A keep-alive request arriving whole in one read costs a few attribute writes.
Both our protocol (``web.http_protocol``) and the fallback ``GuardedHttpToolsProtocol`` (uvicorn's
stock protocol with only this guard) use the mixin; ``web.uvicorn_contract`` checks what it relies on.
Must not know: IIIF, the app (beyond an optional ``connection_limits`` attribute on it).
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from iiifserver.config import Settings
from iiifserver.web import connection_balance

log = logging.getLogger(__name__)

LOG_INTERVAL = 10.0  # seconds: at most one log line per event kind in this time
LINGER = 2.0  # seconds a refused connection is read (and dropped) before it is closed
LINGER_BYTES = 4 * 1024 * 1024  # ...or this many bytes, whichever comes first
FD_RESERVE = 256  # descriptors kept for image files, the disk cache and logs below RLIMIT_NOFILE

# The phase of a connection, as the sweep judges it.
HEAD = 0  # reading a request's headers (a new connection too): the header deadline
BODY = 1  # headers read, reading the body: the body deadline
WAIT = 2  # whole request read, the app is answering: no deadline here
IDLE = 3  # every request answered, nothing begun: the keep-alive deadline
DONE = 4  # refused or closing: what comes in is dropped, closed after LINGER


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What a client may take before the app sees its request (see ``Settings`` for each)."""

    header_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    max_request_line: int
    max_header_bytes: int
    max_connections: int
    balance: bool = False  # even out keep-alive connections across workers (``connection_balance``)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.header_timeout,
            settings.body_timeout,
            settings.keep_alive_timeout,
            settings.max_request_line,
            settings.max_header_bytes,
            settings.max_connections,
            settings.balance_connections,
        )

    @property
    def interval(self) -> float:
        """How often the sweep runs: a quarter of the shortest deadline, at most a second."""
        return max(0.05, min(1.0, self.header_timeout / 4, self.body_timeout / 4, self.keep_alive_timeout / 4))


def refusal(status: int, text: str) -> bytes:
    """A complete short plain-text response that closes the connection."""
    body = text.encode("ascii") + b"\n"
    phrase = http.HTTPStatus(status).phrase.encode("ascii")
    head = b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % (
        status,
        phrase,
        len(body),
    )
    extra = b"retry-after: 1\r\n" if status == 503 else b""
    return head + extra + b"connection: close\r\n\r\n" + body


REFUSALS = {
    408: refusal(408, "Request timeout"),
    414: refusal(414, "Request line too long"),
    431: refusal(431, "Request header fields too large"),
    503: refusal(503, "Too many connections"),
}
EVENTS = {
    "header_timeout": "headers not complete in time (408)",
    "body_timeout": "body not complete in time (408)",
    "request_line": "request line too long (414)",
    "header_bytes": "header block too large (431)",
    "evicted": "idle connections closed to admit new ones (connection cap)",
    "refused": "new connections refused at the connection cap (503)",
}


def fd_budget(wanted: int) -> int:
    """``wanted`` connections, or fewer when the process may not open that many descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(16, soft - FD_RESERVE))


class Guard:
    """One per worker process (per uvicorn ``ServerState``): its connections, the sweep, the log."""

    def __init__(self, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.loop = loop
        self.now = loop.time()  # the coarse clock connections read: refreshed by each sweep
        self.interval = limits.interval
        self.max_connections = fd_budget(limits.max_connections)
        if self.max_connections < limits.max_connections:
            log.warning(
                "max_connections lowered from %d to %d per worker: the open-files limit (ulimit -n) is lower",
                limits.max_connections,
                self.max_connections,
            )
        self.connections: set[ConnectionGuardMixin] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}
        self.quiet = False  # the start-up check's own conversations log nothing
        self.balance = connection_balance.for_this_process() if limits.balance else None

    def admit(self, protocol: ConnectionGuardMixin) -> bool:
        """Count a new connection in; False: it must be refused (the cap, nothing idle to close)."""
        self.now = self.loop.time()
        if len(self.connections) >= self.max_connections and not self._evict():
            self.note("refused")
            return False
        self.connections.add(protocol)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self.sweep)
        return True

    def leave(self, protocol: ConnectionGuardMixin) -> None:
        self.connections.discard(protocol)
        if not self.connections and self.balance is not None:
            self.balance.publish(0)  # the sweep stops with the last connection

    def _evict(self) -> bool:
        """Close the oldest idle connections (a batch, so a flood does not scan on every accept)."""
        idle = [p for p in self.connections if p._phase >= IDLE or (p._fresh and p._phase == HEAD)]
        if not idle:
            return False
        idle.sort(key=lambda p: p._since)
        for protocol in idle[: max(1, self.max_connections // 64)]:
            protocol._guard_close()
            self.note("evicted")
        return True

    def sweep(self) -> None:
        """Every ``interval`` seconds: close what is past its deadline."""
        now = self.now = self.loop.time()
        limits = self.limits
        for protocol in list(self.connections):
            phase = protocol._phase
            age = now - protocol._since
            if phase == IDLE:
                if age >= limits.keep_alive_timeout:
                    protocol._guard_close()
            elif phase == HEAD:
                if protocol._open == 0 and age >= limits.header_timeout:
                    if protocol._fresh:  # nothing ever sent: no one to answer, just go
                        protocol._guard_close()
                    else:
                        protocol._refuse(408, "header_timeout")
            elif phase == BODY:
                if protocol._open <= 1 and age >= limits.body_timeout:
                    protocol._refuse(408, "body_timeout")
            elif phase == DONE and age >= LINGER:
                protocol._guard_close()
        self.flush(now)
        if self.balance is not None:
            self.balance.refresh(len(self.connections))
        self._timer = self.loop.call_later(self.interval, self.sweep) if self.connections else None

    def note(self, kind: str) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self.now - self._logged.get(kind, -LOG_INTERVAL) >= LOG_INTERVAL:
            self._write(kind)

    def flush(self, now: float) -> None:
        """Log the counts held back by the interval once it has passed."""
        for kind in [kind for kind, count in self._counts.items() if count]:
            if now - self._logged.get(kind, -LOG_INTERVAL) >= LOG_INTERVAL:
                self._write(kind)

    def _write(self, kind: str) -> None:
        if not self.quiet:
            log.warning("connection guard: %d x %s", self._counts[kind], EVENTS[kind])
        self._counts[kind] = 0
        self._logged[kind] = self.now


_guards: weakref.WeakKeyDictionary[Any, Guard] = weakref.WeakKeyDictionary()


def guard_for(server_state: Any, app: Any, loop: asyncio.AbstractEventLoop) -> Guard:
    """The worker's guard (one per uvicorn ``ServerState``), made on its first connection."""
    guard = _guards.get(server_state)
    if guard is None or guard.loop is not loop:
        limits = getattr(app, "connection_limits", None)
        if not isinstance(limits, ConnectionLimits):  # an app wrapped by uvicorn's middlewares hides it
            limits = ConnectionLimits.from_settings(Settings())
        guard = _guards[server_state] = Guard(limits, loop)
    return guard


class _Refused:
    """Stands in for uvicorn's request cycle after a refusal: complete, so the parser's later
    callbacks (body, message end) and a disconnect leave it alone."""

    __slots__ = ()
    response_complete = True
    response_started = True
    disconnected = False
    keep_alive = False

    class message_event:  # the attribute uvicorn calls ``set()`` on
        @staticmethod
        def set() -> None:
            pass


_REFUSED = _Refused()

if TYPE_CHECKING:
    _Base = HttpToolsProtocol
else:
    _Base = object


class ConnectionGuardMixin(_Base):
    """The guard's hooks into uvicorn's httptools protocol; put it before ``HttpToolsProtocol``."""

    _guard: Guard
    _phase = HEAD
    _since = 0.0
    _open = 0  # requests whose headers were read and whose response is not complete
    _head_bytes = 0  # bytes read while in HEAD (counted from the read that found the phase HEAD)
    _fresh = True  # nothing received on this connection yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self._guard = guard_for(self.server_state, self.app, self.loop)
        if not guard.admit(self):
            self._phase = DONE
            self.transport.write(REFUSALS[503])
            self.transport.close()
            return
        self._since = guard.now

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == HEAD:
            self._fresh = False
            counted = self._head_bytes + len(data)
            if counted > self._guard.limits.max_header_bytes:
                self._head_overflow(data)
                return
            self._head_bytes = counted
        elif phase == DONE:
            self._head_bytes += len(data)  # dropped; counted so a flood is cut short
            if self._head_bytes > LINGER_BYTES:
                self._guard_close()
            return
        super().data_received(data)

    def _head_overflow(self, data: bytes) -> None:
        """More than the header cap in HEAD: parse up to the cap; if the headers are still not
        complete, refuse (414 when the request target alone is over its cap, else 431)."""
        allowance = self._guard.limits.max_header_bytes - self._head_bytes
        self._head_bytes += allowance
        if allowance > 0:
            super().data_received(data[:allowance])
        if self.transport.is_closing() or self._phase == DONE:
            return
        if self._phase == HEAD:
            if len(getattr(self, "url", b"")) > self._guard.limits.max_request_line:
                self._refuse(414, "request_line")
            else:
                self._refuse(431, "header_bytes")
        elif len(data) > allowance:  # the head ended within the cap: the rest is body or the next request
            self.data_received(data[allowance:])

    def on_message_begin(self) -> None:
        if self._phase != HEAD and self._phase != DONE:
            self._phase = HEAD
            self._since = self._guard.now
            self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._guard_headers_complete():
            super().on_headers_complete()

    def _guard_headers_complete(self) -> bool:
        """Bookkeeping when a request's headers are complete; False: it was refused (or the
        connection already was), and nothing more may be done with it."""
        if self._phase == DONE:
            return False
        if len(self.url) > self._guard.limits.max_request_line:
            if self._open == 0:
                self.cycle = _REFUSED  # type: ignore[assignment]  # the parser goes on to the body
            self._refuse(414, "request_line")
            return False
        self._phase = BODY
        self._since = self._guard.now
        self._open += 1
        return True

    def on_message_complete(self) -> None:
        if self._phase != DONE:
            self._phase = WAIT if self._open else IDLE
            self._since = self._guard.now
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._guard_response_complete()
        super().on_response_complete()

    def _guard_response_complete(self) -> None:
        if self._open:
            self._open -= 1
        phase = self._phase
        if phase == WAIT:
            if not self._open:
                self._phase = IDLE
                self._since = self._guard.now
        elif phase <= BODY:  # HEAD or BODY
            self._since = self._guard.now  # the client waited for us: its deadline starts again

    def _refuse(self, status: int, kind: str) -> None:
        """Answer ``status`` (when no other response is under way on this connection), stop
        parsing, drop what follows for a moment, then close."""
        self._guard.note(kind)
        transport = self.transport
        if transport.is_closing():
            return
        answer = self._open == 0
        if self._open == 1 and self._phase == BODY:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started and not cycle.response_complete:
                # The app is waiting for this body: it hears a disconnect and its answer is dropped.
                cycle.disconnected = True
                cycle.message_event.set()
                answer = True
        self._phase = DONE
        self._since = self._guard.now
        self._head_bytes = 0
        if not answer:
            self._guard_close()
            return
        transport.write(REFUSALS[status])
        if transport.can_write_eof():
            transport.write_eof()  # the client reads the answer and an end; we read until it closes
        else:
            transport.close()

    def _guard_close(self) -> None:
        self._phase = DONE
        self._guard.leave(self)
        if not self.transport.is_closing():
            self.transport.close()


class GuardedHttpToolsProtocol(ConnectionGuardMixin, HttpToolsProtocol):
    """uvicorn's stock httptools protocol with only the connection guard: the fallback when
    ``web.http_protocol`` cannot be used."""
