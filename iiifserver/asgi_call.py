"""One HTTP request to an ASGI app, in-process (``iiifserver get``). No network, no framework.

Owns: building the ASGI scope for a raw path (kept raw, so ``%2F`` survives exactly as it
would over HTTP) and collecting the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

# The ASGI signatures, spelled out so that this module needs no web framework.
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


async def call(
    app: ASGIApp, path: str, *, method: str = "GET", headers: list[tuple[str, str]] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    raw_path, _, query = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "root_path": "",
        "query_string": query.encode("latin-1"),
        "headers": _with_host([(k.lower().encode(), v.encode()) for k, v in headers or []]),
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
        "state": {},
    }
    status = 500
    response_headers: list[tuple[str, str]] = []
    body = bytearray()
    sent = False
    # The client "disconnects" only once the whole response is in: responses that watch for a
    # disconnect while they stream (files) would otherwise stop after the first chunk.
    complete = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                complete.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette re-raises after it has sent the 500 (so servers can log it); the response
        # is what the caller asked for.
        if not response_headers and status == 500 and not body:
            raise
    return status, response_headers, bytes(body)


def _with_host(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return headers if any(name == b"host" for name, _ in headers) else [(b"host", b"localhost"), *headers]
