"""The hot path: repeated IIIF requests answered before the framework sees them.

Owns: a per-process memo from a raw request (path, and the headers that shape the response:
Host and the X-Forwarded-* of trusted proxies) to how it was last answered (cache key or body,
ETag, headers), and the pure ASGI middleware that replays it. An entry is used only while the
identifier's source version (``ImageService.current_version``) is the one it was made for, and
only when the memory tier still holds the body; anything else (a miss, another version,
``If-Modified-Since``) goes the full way through the app, which records a fresh entry.
Every other GET/HEAD of an Image API path goes straight to its ``image_routes`` endpoint,
without the framework's middleware and routing (the endpoint adds CORS itself); asked by the
HTTP protocol to answer without a task (``answer_in_protocol``), the endpoint gets that chance
too, after the memo. Every request that reaches the ASGI app passes here, so this is where the
observer (``web.observer``) hears of those the protocol did not answer itself.
Must not know: IIIF grammar, images. It replays what ``image_routes`` recorded.
"""

from __future__ import annotations

import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cachetools
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iiifserver.image.service import ImageService
from iiifserver.image.source_info import SourceVersion
from iiifserver.web.headers import etag_matches
from iiifserver.web.observer import Observer, RequestInfo, Way, notify
from iiifserver.web.response import Reply, image_reply, send_reply, without_header

# Where FastPath leaves the key it computed, for the endpoint that records the answer.
MEMO_KEY = "iiifserver.memo_key"
MemoKey = tuple[bytes, ...]  # raw path, scheme, Host, Accept, trusted X-Forwarded-Proto/Host/Prefix
_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix")
_NO_FORWARDED = (b"", b"", b"")
_CONDITIONAL = (b"if-none-match", b"if-modified-since")
_KEYED = (b"host", b"accept", *_FORWARDED)
_PICKED = _KEYED + _CONDITIONAL  # one pass over the request headers finds them all


@dataclass(frozen=True, slots=True)
class Memo:
    identifier: str
    version: SourceVersion
    etag: bytes
    # Every header of the 200 but content-length, as HTTP/1.1 lines ("name: value" CRLF), encoded
    # once. Only the lines are kept: up to 65,536 answers per worker, and a tuple of pairs besides
    # cost about a kilobyte each. The ASGI replay and the 304 derive theirs from them.
    lines: bytes
    key: str | None = None  # the memory tier holds the body (images)
    body: bytes | None = None  # or the body itself (info.json: small, rebuilt per version)

    @property
    def lines_304(self) -> bytes:
        """The 304's lines: no content-type."""
        return without_header(self.lines, b"content-type")


class ResponseMemo:
    """Bounded LRU of ``Memo``; event loop only."""

    def __init__(self, trusted_proxies: Container[str], maxsize: int = 65536) -> None:
        self.trusted = trusted_proxies
        self._entries: cachetools.LRUCache[MemoKey, Memo] = cachetools.LRUCache(maxsize)
        self.hits = 0  # requests answered from the memo

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": self.hits}

    def key(self, scope: Scope, headers: dict[bytes, bytes] | None = None) -> MemoKey:
        """The memo key of ``scope``; ``headers``: its ``_KEYED`` headers when already picked out."""
        if headers is None:
            headers = _headers(scope["headers"], _KEYED)
        client = scope.get("client")
        if client is not None and client[0] in self.trusted:
            get = headers.get
            fwd = (get(b"x-forwarded-proto", b""), get(b"x-forwarded-host", b""), get(b"x-forwarded-prefix", b""))
        else:
            fwd = _NO_FORWARDED
        scheme = scope.get("scheme", "http")
        return (
            scope.get("raw_path") or scope["path"].encode(),
            b"https" if scheme == "https" else b"http" if scheme == "http" else str(scheme).encode(),
            headers.get(b"host", b""),
            headers.get(b"accept", b""),  # info.json's media type is negotiated
            *fwd,
        )

    def get(self, key: MemoKey) -> Memo | None:
        return self._entries.get(key)

    def put(self, key: MemoKey, memo: Memo) -> None:
        self._entries[key] = memo

    def clear(self) -> None:
        """Forget every answer (the access rules changed: some may now need the check)."""
        self._entries.clear()


class Endpoint(Protocol):
    def handles(self, path: str) -> bool: ...

    def answer_in_protocol(self, scope: Scope) -> Reply | None: ...

    async def reply(self, scope: Scope, receive: Receive | None = None) -> Reply: ...


class FastPath:
    """Replays memoised answers of GET/HEAD ``/iiif/`` requests, sends the other GET/HEAD of
    ``endpoints``' paths to them directly; everything else passes through to ``app``. Every HTTP
    request it is given is reported to ``observer`` (when there is one) once answered."""

    def __init__(
        self,
        app: ASGIApp,
        service: ImageService,
        memo: ResponseMemo,
        endpoints: Sequence[Endpoint] = (),
        observer: Observer | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.memo = memo
        self.endpoints = tuple(endpoints)
        self.observer = observer
        self.tiles_in_protocol = 0  # cold tiles an endpoint answered in the protocol

    def stats(self) -> dict[str, int]:
        return {**self.memo.stats(), "tiles_in_protocol": self.tiles_in_protocol}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observer = self.observer
        start = time.monotonic() if observer is not None else 0.0
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"].startswith("/iiif/"):
            reply = self._replay(scope, Way.MEMO)
            if reply is None:
                endpoint = self._endpoint(scope["path"])
                if endpoint is not None:
                    reply = await endpoint.reply(scope, receive)
            else:
                self.memo.hits += 1
            if reply is not None:
                await send_reply(reply, send)
                if observer is not None:
                    notify(observer, request_info(scope, start), reply.status, len(reply.body), reply.way)
                return
        if observer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
        else:
            await self._framework_observed(observer, start, scope, receive, send)

    async def _framework_observed(
        self, observer: Observer, start: float, scope: Scope, receive: Receive, send: Send
    ) -> None:
        status, sent = 500, 0  # an app that raises before starting: uvicorn answers 500

        async def counting(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            notify(observer, request_info(scope, start), status, sent, Way.FRAMEWORK)

    def answer_in_protocol(self, scope: Scope) -> Reply | None:
        """The complete answer to an HTTP ``scope`` without awaiting anything, for the HTTP
        protocol to write before it starts a task: the memoised one, else the endpoint's own
        (``ImageEndpoint.answer_in_protocol``: cold tiles); ``None`` when the request must go
        the full way."""
        method = scope["method"]
        if (method != "GET" and method != "HEAD") or not scope["path"].startswith("/iiif/"):
            return None
        reply = self._replay(scope, Way.PROTOCOL_MEMO)
        if reply is not None:
            self.memo.hits += 1
            return reply
        endpoint = self._endpoint(scope["path"])
        if endpoint is None:
            return None
        reply = endpoint.answer_in_protocol(scope)
        if reply is not None:
            self.tiles_in_protocol += 1
        return reply

    def _endpoint(self, path: str) -> Endpoint | None:
        for endpoint in self.endpoints:
            if endpoint.handles(path):
                return endpoint
        return None

    def _replay(self, scope: Scope, way: Way) -> Reply | None:
        """The memoised answer to ``scope`` (200, or 304 when its ETag matches), if it may be replayed."""
        if scope.get("query_string"):
            return None
        headers = _headers(scope["headers"], _PICKED)
        key = scope[MEMO_KEY] = self.memo.key(scope, headers)
        memo = self.memo.get(key)
        if memo is None or self.service.current_version(memo.identifier) != memo.version:
            return None
        if_none_match = headers.get(b"if-none-match")
        if if_none_match is None:
            if b"if-modified-since" in headers:
                return None  # date comparison: the full path does it
        elif etag_matches(if_none_match, memo.etag):
            return image_reply(304, memo.lines_304, b"", way, head=True)
        body = memo.body
        if body is None:
            entry = self.service.cached_key(memo.key) if memo.key is not None else None
            if entry is None:
                return None
            body = entry.body
        return image_reply(200, memo.lines, body, way, head=scope["method"] == "HEAD")


def request_info(scope: Scope, start: float) -> RequestInfo:
    """What the observer learns of an ASGI request answered now."""
    return RequestInfo(scope, start, time.monotonic() - start)


def _headers(raw: Iterable[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> dict[bytes, bytes]:
    # ASGI header names are lower-case; only the first occurrence of each counts here.
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in names and name not in found:
            found[name] = value
    return found
