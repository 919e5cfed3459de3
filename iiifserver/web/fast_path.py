"""The hot path: repeated IIIF requests answered before the framework sees them.

Owns: a per-process memo from a raw request (path, and the headers that shape the response:
Host and the X-Forwarded-* of trusted proxies) to how it was last answered (cache key or body,
ETag, headers), and the pure ASGI middleware that replays it. An entry is used only while the
identifier's source version (``ImageService.current_version``) is the one it was made for, and
only when the memory tier still holds the body; anything else (a miss, another version,
``If-Modified-Since``) goes the full way through the app, which records a fresh entry.
Every other GET/HEAD of an Image API path goes straight to its ``image_routes`` endpoint,
without the framework's middleware and routing (the endpoint adds CORS itself).
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


@dataclass(frozen=True, slots=True)
class Memo:
    identifier: str
    version: SourceVersion
    etag: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # every header of the 200 but content-length
    key: str | None = None  # the memory tier holds the body (images)
    body: bytes | None = None  # or the body itself (info.json: small, rebuilt per version)


class ResponseMemo:
    """Bounded LRU of ``Memo``; event loop only."""

    def __init__(self, trusted_proxies: frozenset[str], maxsize: int = 65536) -> None:
        self.trusted = trusted_proxies
        self._entries: cachetools.LRUCache[MemoKey, Memo] = cachetools.LRUCache(maxsize)
        self.hits = 0  # requests answered from the memo

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": self.hits}

    def key(self, scope: Scope) -> MemoKey:
        headers = _headers(scope["headers"], (b"host", b"accept", *_FORWARDED))
        client = scope.get("client")
        trusted = client is not None and client[0] in self.trusted
        fwd = tuple(headers.get(name, b"") for name in _FORWARDED) if trusted else (b"", b"", b"")
        return (
            scope.get("raw_path") or scope["path"].encode(),
            str(scope.get("scheme", "http")).encode(),
            headers.get(b"host", b""),
            headers.get(b"accept", b""),  # info.json's media type is negotiated
            *fwd,
        )

    def get(self, key: MemoKey) -> Memo | None:
        return self._entries.get(key)

    def put(self, key: MemoKey, memo: Memo) -> None:
        self._entries[key] = memo


class Endpoint(Protocol):
    def handles(self, path: str) -> bool: ...

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"].startswith("/iiif/"):
            answer = self.answer_at_once(scope)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            path = scope["path"]
            for endpoint in self.endpoints:
                if endpoint.handles(path):
                    await endpoint(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def answer_at_once(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The memoised answer to an HTTP ``scope``, without awaiting anything (the HTTP protocol
        asks before it starts a task); ``None`` when the request must go the full way."""
        method = scope["method"]
        if (method != "GET" and method != "HEAD") or not scope["path"].startswith("/iiif/"):
            return None
        answer = self._answer(scope)
        if answer is None:
            return None
        self.memo.hits += 1
        return answer if method == "GET" else (answer[0], answer[1], b"")

    def _answer(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        if scope.get("query_string"):
            return None
        key = scope[MEMO_KEY] = self.memo.key(scope)
        memo = self.memo.get(key)
        if memo is None or self.service.current_version(memo.identifier) != memo.version:
            return None
        conditional = _headers(scope["headers"], (b"if-none-match", b"if-modified-since"))
        if b"if-modified-since" in conditional and b"if-none-match" not in conditional:
            return None  # date comparison: the full path does it
        if_none_match = conditional.get(b"if-none-match")
        if if_none_match is not None and _etag_matches(if_none_match, memo.etag):
            return 304, [(k, v) for k, v in memo.headers if k != b"content-type"], b""
        body = memo.body
        if body is None:
            entry = self.service.cached_key(memo.key) if memo.key is not None else None
            if entry is None:
                return None
            body = entry.body
        return 200, [*memo.headers, (b"content-length", str(len(body)).encode())], body


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
