"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol, one write per response.

Owns: coalescing a response's head with its body. uvicorn writes the status line and headers
as soon as the app starts the response and the body when it comes, two system calls where one
does; for the small tiles and info.json documents of a deep-zoom viewer the second call costs
a tenth of the whole request. The head is held and goes out with the body in one vectored
write, or alone when the response ends without one (HEAD, 304) or the connection closes.
Must not know: IIIF, the app. It sees bytes on a transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()  # a response without a body write: its head alone
        super().on_response_complete()
