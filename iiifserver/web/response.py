"""A complete response of the Image API, and the one function that builds it.

Owns: ``Reply`` (status, encoded header lines, body, and the ``Way`` it was answered) and
``image_reply``, through which every Image API response passes whatever answers it: the memo
replayed in the HTTP protocol or through ASGI, a cold tile read in the protocol, the endpoint's
full path (200, 303, 304 and errors). The header lines are the form the HTTP protocol writes;
the ASGI paths derive their header pairs from them (``send_reply``), so both say the same.
Must not know: IIIF, where the parts come from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from starlette.types import Send

from iiifserver.web.observer import Way


class Reply(NamedTuple):
    """A complete response. A named tuple rather than a frozen dataclass: one is built for each
    request answered in the protocol, and a tuple costs a fraction of a dataclass's ``__init__``."""

    status: int
    # Every header, content-length included (but for 304), as encoded "name: value" CRLF lines;
    # the protocol adds the status line, its default headers (date) and the blank line.
    header_lines: bytes
    body: bytes  # empty for HEAD and 304
    way: Way


_new = tuple.__new__  # builds a Reply without NamedTuple's Python-level __new__


def image_reply(status: int, lines: bytes, body: bytes, way: Way, *, head: bool) -> Reply:
    """The response with ``lines`` (every header but content-length) and ``body``: a 304 as it
    is (no length, no body), anything else with the body's length, and without the body for HEAD."""
    if status == 304:
        return _new(Reply, (304, lines, b"", way))
    lines += b"content-length: %d\r\n" % len(body)
    return _new(Reply, (status, lines, b"" if head else body, way))


def header_lines(headers: Iterable[tuple[bytes, bytes]], skip: bytes = b"") -> bytes:
    """``name: value`` CRLF lines, as ``web.http_protocol`` writes them (``skip``: a name left out)."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers if name != skip)


def header_pairs(lines: bytes) -> list[tuple[bytes, bytes]]:
    """The ASGI header pairs of ``lines`` (values may contain ": ")."""
    pairs = (line.split(b": ", 1) for line in lines.split(b"\r\n")[:-1])
    return [(name, value) for name, value in pairs]


def without_header(lines: bytes, name: bytes) -> bytes:
    """``lines`` without the ``name`` header (lower-case, as every line here is)."""
    prefix = name + b":"
    return b"".join(line for line in lines.splitlines(keepends=True) if not line.startswith(prefix))


async def send_reply(reply: Reply, send: Send) -> None:
    """``reply`` as the two ASGI messages."""
    await send({"type": "http.response.start", "status": reply.status, "headers": header_pairs(reply.header_lines)})
    await send({"type": "http.response.body", "body": reply.body})
