"""The hot path: repeated IIIF requests answered before the framework sees them.

Owns: a per-process memo from a raw request (path, and the headers that shape the response:
Host and the X-Forwarded-* of trusted proxies) to how it was last answered (cache key or body,
ETag, headers), and the pure ASGI middleware that replays it. An entry is used only while the
identifier's source version (``ImageService.current_version``) is the one it was made for, and
only when the memory tier still holds the body; anything else (a miss, another version,
``If-Modified-Since``) goes the full way through the app, which records a fresh entry.
Every other GET/HEAD of an Image API path goes straight to its ``image_routes`` endpoint,
without the framework's middleware and routing (the endpoint adds CORS itself); asked to
answer at once (``answer_at_once``), the endpoint gets that chance too, after the memo.
Must not know: IIIF grammar, images. It replays what ``image_routes`` recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cachetools
from starlette.types import ASGIApp, Receive, Scope, Send

from iiifserver.image.service import ImageService
from iiifserver.image.source_info import SourceVersion

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
    # cost about a kilobyte each. The rare ASGI replay and 304 derive theirs from them.
    lines: bytes
    key: str | None = None  # the memory tier holds the body (images)
    body: bytes | None = None  # or the body itself (info.json: small, rebuilt per version)

    @classmethod
    def of(
        cls,
        identifier: str,
        version: SourceVersion,
        etag: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        key: str | None = None,
        body: bytes | None = None,
    ) -> Memo:
        return cls(identifier, version, etag, header_lines(headers), key=key, body=body)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        pairs = (line.split(b": ", 1) for line in self.lines.split(b"\r\n")[:-1])
        return [(name, value) for name, value in pairs]

    @property
    def lines_304(self) -> bytes:
        """The 304's lines: no content-type."""
        return b"".join(line for line in self.lines.splitlines(keepends=True) if not line.startswith(b"content-type:"))


def header_lines(headers: Iterable[tuple[bytes, bytes]], skip: bytes = b"") -> bytes:
    """``name: value`` CRLF lines, as ``web.http_protocol`` writes them."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers if name != skip)


class ResponseMemo:
    """Bounded LRU of ``Memo``; event loop only."""

    def __init__(self, trusted_proxies: frozenset[str], maxsize: int = 65536) -> None:
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


# status, every header as encoded "name: value" CRLF lines (content-length too), body
AtOnce = tuple[int, bytes, bytes]


class Endpoint(Protocol):
    def handles(self, path: str) -> bool: ...

    def answer_at_once(self, scope: Scope) -> AtOnce | None: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class FastPath:
    """Replays memoised answers of GET/HEAD ``/iiif/`` requests, sends the other GET/HEAD of
    ``endpoints``' paths to them directly; everything else passes through."""

    def __init__(
        self, app: ASGIApp, service: ImageService, memo: ResponseMemo, endpoints: Sequence[Endpoint] = ()
    ) -> None:
        self.app = app
        self.service = service
        self.memo = memo
        self.endpoints = tuple(endpoints)
        self.tiles_at_once = 0  # requests an endpoint answered at once (cold tiles)

    def stats(self) -> dict[str, int]:
        return {**self.memo.stats(), "tiles_at_once": self.tiles_at_once}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"].startswith("/iiif/"):
            found = self._replay(scope)
            if found is not None:
                self.memo.hits += 1
                memo, body = found
                if body is None:
                    status, headers = 304, [(k, v) for k, v in memo.headers if k != b"content-type"]
                else:
                    status, headers = 200, [*memo.headers, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body if body and scope["method"] == "GET" else b""})
                return
            path = scope["path"]
            for endpoint in self.endpoints:
                if endpoint.handles(path):
                    await endpoint(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def answer_at_once(self, scope: Scope) -> AtOnce | None:
        """The answer to an HTTP ``scope`` as (status, encoded header lines, body) without
        awaiting anything (the HTTP protocol asks before it starts a task): the memoised one,
        else the endpoint's own (``ImageEndpoint.answer_at_once``: cold tiles); ``None`` when the
        request must go the full way."""
        method = scope["method"]
        if (method != "GET" and method != "HEAD") or not scope["path"].startswith("/iiif/"):
            return None
        found = self._replay(scope)
        if found is None:
            path = scope["path"]
            for endpoint in self.endpoints:
                if endpoint.handles(path):
                    answer = endpoint.answer_at_once(scope)
                    if answer is not None:
                        self.tiles_at_once += 1
                    return answer
            return None
        self.memo.hits += 1
        memo, body = found
        if body is None:
            return 304, memo.lines_304, b""
        lines = memo.lines + b"content-length: %d\r\n" % len(body)
        return 200, lines, body if method == "GET" else b""

    def _replay(self, scope: Scope) -> tuple[Memo, bytes | None] | None:
        """The memo for ``scope`` and the body to send (None: 304), if it may be replayed."""
        if scope.get("query_string"):
            return None
        headers = _headers(scope["headers"], _PICKED)
        key = scope[MEMO_KEY] = self.memo.key(scope, headers)
        memo = self.memo.get(key)
        if memo is None or self.service.current_version(memo.identifier) != memo.version:
            return None
        if_none_match = headers.get(b"if-none-match")
        if if_none_match is None and b"if-modified-since" in headers:
            return None  # date comparison: the full path does it
        if if_none_match is not None and _etag_matches(if_none_match, memo.etag):
            return memo, None
        body = memo.body
        if body is None:
            entry = self.service.cached_key(memo.key) if memo.key is not None else None
            if entry is None:
                return None
            body = entry.body
        return memo, body


def _headers(raw: Iterable[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> dict[bytes, bytes]:
    # ASGI header names are lower-case; only the first occurrence of each counts here.
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in names and name not in found:
            found[name] = value
    return found


def _etag_matches(header: bytes, etag: bytes) -> bool:
    for candidate in header.split(b","):
        tag = candidate.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == etag or tag == b"*":
            return True
    return False
