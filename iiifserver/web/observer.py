"""The one hook every answered HTTP request passes through, whichever way it was answered.

Owns: ``Way`` (the paths a request can take to its answer), ``RequestInfo`` (what an observer
learns of the request), the ``Observer`` protocol, ``Observers`` (several behind one hook), and
``AccessLog``, the one access log: every request, whichever way it was answered, in text or as
JSON lines (uvicorn's own access log is off). Metrics (``web.metrics``) and access-control
checks plug in here too: ``web.http_protocol`` calls the observer for the answers it gives
itself, ``web.fast_path`` for every request that reaches the ASGI app.
Without an observer (the default) each path pays one ``is None`` check.
Must not know: IIIF, the framework, how a response is built.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import time
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import orjson

from iiifserver.logs import ACCESS_LOGGER

log = logging.getLogger(__name__)


class Way(enum.Enum):
    """How a request was answered (stable values: metric labels and log fields use them)."""

    # Members are singletons: identity hashing is correct, and Enum's own __hash__ is a Python
    # call that the metrics paid on every request (a dict key per request holds a Way).
    __hash__ = object.__hash__

    PROTOCOL_MEMO = "protocol_memo"  # the memo, replayed by the HTTP protocol without an ASGI task
    PROTOCOL_TILE = "protocol_tile"  # a cold stored tile, read by the HTTP protocol without a task
    MEMO = "memo"  # the memo, replayed through ASGI (uvicorn's stock protocol, a busy connection)
    ENDPOINT = "endpoint"  # the Image API endpoint, called directly by the fast path
    FRAMEWORK = "framework"  # Starlette's middleware and routing: pages, manifests, admin, errors
    # The endpoint's image bodies, by where the body came from (``ImageService.fetch_with_origin``).
    MEMORY = "memory"  # the memory tier
    PASSTHROUGH = "passthrough"  # a stored tile of the source, as it is (or cut, or stretched)
    DISK = "disk"  # the disk tier
    SHARED = "shared"  # the shared tier (Redis): rendered by another instance
    RENDER = "render"  # rendered by libvips


ANSWERED_IN_PROTOCOL = frozenset({Way.PROTOCOL_MEMO, Way.PROTOCOL_TILE})


class RequestInfo(NamedTuple):
    """What an observer learns of a request: its ASGI scope (as uvicorn made it, with the method,
    paths and query the protocol or the app filled in), when it was taken up and how long it took.

    A named tuple of three: one is built for every request answered in the protocol, where each
    field it copies costs (a frozen dataclass's construction alone was a few percent of hot-tile
    throughput). The properties read the scope when an observer asks (the access log does, the
    metrics read ``scope`` and ``duration`` only)."""

    scope: Mapping[str, Any]
    start: float  # time.monotonic() when the request was taken up
    duration: float  # seconds, until its response was handed to the transport

    @classmethod
    def of(
        cls,
        method: str,
        raw_path: bytes,
        query_string: bytes = b"",
        http_version: str = "1.1",
        client: tuple[str, int] | None = None,
        start: float = 0.0,
        duration: float = 0.0,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> RequestInfo:
        """One made from its parts (tests, and callers without a scope)."""
        scope = {
            "method": method,
            "raw_path": raw_path,
            "path": raw_path.decode("latin-1"),
            "query_string": query_string,
            "http_version": http_version,
            "client": client,
            "headers": headers,
        }
        return cls(scope, start, duration)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def raw_path(self) -> bytes:
        """As sent, still %-encoded."""
        return raw_path_of(self.scope)

    @property
    def query_string(self) -> bytes:
        return bytes(self.scope.get("query_string") or b"")

    @property
    def http_version(self) -> str:
        return str(self.scope.get("http_version", "1.1"))

    @property
    def client(self) -> tuple[str, int] | None:
        return self.scope.get("client")

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        """As in the ASGI scope: lower-case names."""
        return self.scope.get("headers") or ()


def raw_path_of(scope: Mapping[str, Any]) -> bytes:
    """The request target's path as sent (uvicorn sets ``raw_path``; the ASGI spec lets it be absent)."""
    raw = scope.get("raw_path")
    return raw if raw else str(scope["path"]).encode("utf-8")


class Observer(Protocol):
    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        """Called once per answered request; ``bytes_sent``: body bytes (0 for HEAD and 304).
        Runs on the event loop: it must be quick and must not raise (a raise is logged)."""


def notify(observer: Observer, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
    """``observer.answered``, its exceptions logged: an observer never breaks a response."""
    try:
        observer.answered(request, status, bytes_sent, way)
    except Exception:
        log.exception("request observer failed")


class Observers:
    """Several observers behind one hook, each told in turn (and each failure logged alone)."""

    __slots__ = ("observers",)

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        for observer in self.observers:
            notify(observer, request, status, bytes_sent, way)


def combined(observers: Sequence[Observer | None]) -> Observer | None:
    """One observer for all of ``observers`` (None among them left out); None when there is none."""
    present = [observer for observer in observers if observer is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else Observers(present)


_MAX_REQUEST_ID = 128


class AccessLog:
    """One line per answered request on the ``iiifserver.access`` logger, whichever way it was
    answered: ``text`` (the default, human-readable) or ``json`` (one object per line).

    Fields: time (ISO 8601, UTC, milliseconds), request id (the request's ``X-Request-Id`` when it
    is printable and at most 128 characters, else one made here: a per-process random prefix and
    a counter), client (the peer's address; behind a trusted proxy, the right-most address of
    ``X-Forwarded-For`` that is not itself a trusted proxy), method, path (with query), status,
    bytes (body bytes sent), duration (milliseconds), way (``Way``'s value). The id is not echoed
    in the response: that would add a header to every answer given in the protocol.
    """

    def __init__(
        self,
        fmt: str = "text",
        trusted_proxies: Container[str] = (),
        logger: logging.Logger | None = None,
        institution_of: Callable[[bytes], str] | None = None,
    ) -> None:
        # ``institution_of``: raw path -> institution slug or "" (several institutions served):
        # each line then names the institution the request was about.
        self.institution_of = institution_of
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown access log format {fmt!r}")
        self.json = fmt == "json"
        self.trusted = trusted_proxies
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count(1)

    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        path = request.raw_path.decode("latin-1")
        if request.query_string:
            path = f"{path}?{request.query_string.decode('latin-1')}"
        request_id, forwarded_for = _picked(request.headers)
        if request_id is None:
            request_id = f"{self._prefix}-{next(self._counter):x}"
        client = self.client(request.client, forwarded_for)
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        duration_ms = round(request.duration * 1000, 3)
        institution = self.institution_of(request.raw_path) if self.institution_of is not None else ""
        if self.json:
            fields = {
                "time": stamp,
                "request_id": request_id,
                "client": client,
                "method": request.method,
                "path": path,
                "http_version": request.http_version,
                "status": status,
                "bytes": bytes_sent,
                "duration_ms": duration_ms,
                "way": way.value,
            }
            if self.institution_of is not None:
                fields["institution"] = institution
            self.logger.info("%s", orjson.dumps(fields).decode())
        else:
            self.logger.info(
                '%s %s "%s %s HTTP/%s" %d %d %.3fms %s id=%s',
                stamp,
                client or "-",
                request.method,
                path,
                request.http_version,
                status,
                bytes_sent,
                duration_ms,
                way.value,
                request_id + (f" institution={institution}" if institution else ""),
            )

    def client(self, peer: tuple[str, int] | None, forwarded_for: bytes | None) -> str:
        """The client's address: the peer, or behind trusted proxies the right-most untrusted hop."""
        if peer is None:
            return ""
        address = peer[0]
        if forwarded_for is None or address not in self.trusted:
            return address
        hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
        for hop in reversed(hops):
            if hop not in self.trusted:
                return hop[:64]  # a client-controlled value: bounded in the log
            address = hop
        return address[:64]  # every hop a trusted proxy: the left-most


def _picked(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str | None, bytes | None]:
    request_id: str | None = None
    forwarded_for: bytes | None = None
    for name, value in headers:
        if name == b"x-request-id" and request_id is None:
            text = value.decode("latin-1").strip()
            if 0 < len(text) <= _MAX_REQUEST_ID and text.isascii() and text.isprintable():
                request_id = text
        elif name == b"x-forwarded-for":
            # Several headers are one list, in order.
            forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
    return request_id, forwarded_for
