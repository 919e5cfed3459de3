"""In-process requests (`iiifserver get`): raw paths kept raw; a sent 500 is a response, not a crash."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Receive, Scope, Send

from iiifserver.asgi_call import call


async def echo_raw_path(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-path", scope["path"].encode())]})
    await send({"type": "http.response.body", "body": scope["raw_path"]})


async def fails_after_sending(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"unexpected server error"})
    raise RuntimeError("re-raised for the server's log")


async def fails_before_sending(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("nothing was sent")


def test_raw_path_is_sent_byte_exact() -> None:
    status, headers, body = asyncio.run(call(echo_raw_path, "/iiif/3/a%2Fb/../info.json?x=1"))
    assert status == 200
    assert body == b"/iiif/3/a%2Fb/../info.json"
    assert ("x-path", "/iiif/3/a/b/../info.json") in headers


def test_error_after_response_is_returned() -> None:
    status, _, body = asyncio.run(call(fails_after_sending, "/"))
    assert (status, body) == (500, b"unexpected server error")


def test_error_before_response_propagates() -> None:
    with pytest.raises(RuntimeError, match="nothing was sent"):
        asyncio.run(call(fails_before_sending, "/"))


async def streams_until_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Like a file response: two chunks, and a watcher that stops it when the client leaves."""
    await receive()  # the request
    await send({"type": "http.response.start", "status": 200, "headers": []})
    watcher = asyncio.ensure_future(receive())
    for chunk in (b"first ", b"second"):
        await asyncio.sleep(0)
        if watcher.done():
            return  # the client left: a real server stops sending
        await send({"type": "http.response.body", "body": chunk, "more_body": chunk == b"first "})
    assert (await watcher)["type"] == "http.disconnect"


def test_the_client_stays_until_the_whole_body_is_in() -> None:
    status, _, body = asyncio.run(call(streams_until_disconnect, "/viewers/x.js"))
    assert (status, body) == (200, b"first second")
