"""Typed errors -> HTTP responses, in one place.

Owns: the status, body and headers of every error response. Bodies are short plain text that
name the parameter or identifier; never a path or a stack trace. Errors are never cached.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from iiifserver.errors import IIIFError, ServiceUnavailable

log = logging.getLogger(__name__)

# Bodies echo client text (identifiers): never let a browser sniff them into HTML.
NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def error_response(exc: IIIFError) -> Response:
    headers = dict(NO_STORE)
    if isinstance(exc, ServiceUnavailable):
        headers["retry-after"] = str(exc.retry_after)
    return _plain(exc.status, str(exc), headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = "not an IIIF URL" if exc.status_code == 404 else str(exc.detail)
    # Keep the exception's own headers: a 405 must say which methods are allowed (``Allow``).
    return _plain(exc.status_code, detail, {**(exc.headers or {}), **NO_STORE})


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    # Full detail goes to the log only; the client learns nothing about the internals.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return server_error_response()


def server_error_response() -> Response:
    """The 500 of an unexpected error (the caller logs it)."""
    # Starlette runs the handler above in ServerErrorMiddleware, outside every user middleware,
    # so the CORS middleware never sees a 500: without this a browser viewer cannot read it.
    headers = {**NO_STORE, "access-control-allow-origin": "*"}
    return _plain(500, "unexpected server error", headers)


def _plain(status: int, detail: str, headers: dict[str, str]) -> Response:
    phrase = HTTPStatus(status).phrase
    return PlainTextResponse(f"{status} {phrase}: {detail}\n", status_code=status, headers=headers)
