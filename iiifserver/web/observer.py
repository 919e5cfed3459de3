"""The one hook every answered HTTP request passes through, whichever way it was answered.

Owns: ``Way`` (the paths a request can take to its answer), ``RequestInfo`` (what an observer
learns of the request), the ``Observer`` protocol, and ``AccessLog``, the observer that writes
uvicorn's access-log line for the answers uvicorn never sees. Metrics, structured access logs
and access-control checks plug in here: ``web.http_protocol`` calls the observer for the
answers it gives itself, ``web.fast_path`` for every request that reaches the ASGI app.
Without an observer (the default) each path pays one ``is None`` check.
Must not know: IIIF, the framework, how a response is built.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class Way(enum.Enum):
    """How a request was answered (stable values: metric labels and log fields use them)."""

    PROTOCOL_MEMO = "protocol_memo"  # the memo, replayed by the HTTP protocol without an ASGI task
    PROTOCOL_TILE = "protocol_tile"  # a cold stored tile, read by the HTTP protocol without a task
    MEMO = "memo"  # the memo, replayed through ASGI (uvicorn's stock protocol, a busy connection)
    ENDPOINT = "endpoint"  # the Image API endpoint, called directly by the fast path
    FRAMEWORK = "framework"  # Starlette's middleware and routing: pages, manifests, admin, errors


ANSWERED_IN_PROTOCOL = frozenset({Way.PROTOCOL_MEMO, Way.PROTOCOL_TILE})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    method: str
    raw_path: bytes  # as sent, still %-encoded
    query_string: bytes
    http_version: str
    client: tuple[str, int] | None
    start: float  # time.monotonic() when the request was taken up
    duration: float  # seconds, until its response was handed to the transport


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


class AccessLog:
    """uvicorn's access-log line (same logger, same arguments, so uvicorn's formatter applies)
    for the answers given in the HTTP protocol; uvicorn's request cycle logs the others itself."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("uvicorn.access")

    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        if way not in ANSWERED_IN_PROTOCOL:
            return
        path = request.raw_path.decode("latin-1")
        if request.query_string:
            path = f"{path}?{request.query_string.decode('latin-1')}"
        client = request.client
        self.logger.info(
            '%s - "%s %s HTTP/%s" %d',
            f"{client[0]}:{client[1]}" if client else "",
            request.method,
            path,
            request.http_version,
            status,
        )
