"""The one builder of Image API responses, and its ASGI form."""

from __future__ import annotations

import asyncio
from typing import Any

from iiifserver.web.observer import Way
from iiifserver.web.response import Reply, header_lines, header_pairs, image_reply, send_reply, without_header

PAIRS = [(b"etag", b'"k"'), (b"link", b'<http://h/a>;rel="canonical", <p>;rel="profile"'), (b"x-odd", b"a: b")]
LINES = header_lines(PAIRS)


def test_a_200_carries_its_length_and_head_drops_only_the_body() -> None:
    get = image_reply(200, LINES, b"tile", Way.ENDPOINT, head=False)
    head = image_reply(200, LINES, b"tile", Way.ENDPOINT, head=True)
    assert get == Reply(200, LINES + b"content-length: 4\r\n", b"tile", Way.ENDPOINT)
    assert head == Reply(200, get.header_lines, b"", Way.ENDPOINT)


def test_a_304_has_neither_length_nor_body() -> None:
    assert image_reply(304, LINES, b"ignored", Way.MEMO, head=False) == Reply(304, LINES, b"", Way.MEMO)


def test_lines_and_pairs_round_trip_and_a_header_can_be_left_out() -> None:
    assert LINES.endswith(b"\r\n")
    assert header_pairs(LINES) == PAIRS
    assert header_pairs(header_lines(PAIRS, skip=b"link")) == [PAIRS[0], PAIRS[2]]
    assert without_header(LINES, b"x-odd") == header_lines(PAIRS[:2])
    assert without_header(LINES, b"x") == LINES  # a name, not a prefix of one


def test_send_reply_sends_the_same_headers_and_body() -> None:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    reply = image_reply(404, header_lines([(b"content-type", b"application/json")]), b"{}", Way.ENDPOINT, head=False)
    asyncio.run(send_reply(reply, send))
    assert messages == [
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        },
        {"type": "http.response.body", "body": b"{}"},
    ]
