"""HTTP headers of IIIF responses.

Owns: CORS (a pure ASGI middleware, so errors and 404s get it too, and OPTIONS preflights are
answered for every path), content negotiation of JSON-LD documents, Link, ETag,
Last-Modified and conditional-request checks (``etag_matches``: the one ETag matcher).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = "GET, HEAD, OPTIONS"
EXPOSE_HEADERS = "Link, ETag, Last-Modified, Content-Length, Content-Type, Retry-After"
CORS_RESPONSE_HEADERS = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
)


class CORSMiddleware:
    """``Access-Control-Allow-Origin: *`` on every response; OPTIONS answered directly.

    The IIIF validators send a plain OPTIONS (no preflight headers) and expect the CORS header,
    so OPTIONS is answered whatever its headers say.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            request_headers = Headers(scope=scope).get("access-control-request-headers", "")
            headers = [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-max-age", b"86400"),
                (b"allow", ALLOW_METHODS.encode()),
                (b"content-length", b"0"),
            ]
            if request_headers:
                headers.append((b"access-control-allow-headers", request_headers.encode("latin-1")))
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(name == b"access-control-allow-origin" for name, _ in headers):  # set by endpoints
                    message["headers"] = [*headers, *CORS_RESPONSE_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def negotiate_json_ld(accept: str | None, profile_context: str, *, default_ld: bool) -> str:
    """Content-Type for an info.json / manifest (RFC 9110 section 12.5.1, q-values honoured).

    3.0 documents default to JSON-LD with the profile; 2.1 info.json defaults to plain JSON and
    gives JSON-LD only when asked. A client that prefers application/json (or refuses JSON-LD
    with ``q=0``) gets that. Nothing acceptable: the default, rather than a 406 viewers choke on.
    """
    ld = f'application/ld+json;profile="{profile_context}"'
    default = ld if default_ld else "application/json"
    if not accept:
        return default
    q_ld, ld_named = _accept_quality(accept, "application/ld+json")
    q_json, _ = _accept_quality(accept, "application/json")
    if q_ld == 0 and q_json == 0:
        return default
    if q_ld > q_json:
        return ld
    if q_json > q_ld:
        return "application/json"
    # Equal preference: JSON-LD if it is our default or the client named it (2.1: "explicitly asks").
    return ld if default_ld or ld_named else "application/json"


_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)", re.ASCII)


def _accept_quality(accept: str, media_type: str) -> tuple[float, bool]:
    """q of the most specific range in ``accept`` matching ``media_type``; and whether it was named."""
    main = media_type.split("/")[0]
    best_rank, best_q = 0, 0.0
    for part in accept.split(","):
        range_, *params = (p.strip() for p in part.split(";"))
        range_ = range_.lower()
        rank = {media_type: 3, f"{main}/*": 2, "*/*": 1}.get(range_, 0)
        if rank <= best_rank:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q" and _QVALUE.fullmatch(value.strip()):
                q = float(value.strip())
        best_rank, best_q = rank, q
    return best_q, best_rank == 3


def etag(key: str) -> str:
    return f'"{key}"'


@functools.lru_cache(maxsize=4096)  # one per source version; formatting costs more than a lookup
def http_date(mtime_ns: int) -> str:
    return format_datetime(datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).replace(microsecond=0), usegmt=True)


def not_modified(headers: Headers, tag: str, mtime_ns: int) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match wins; If-Modified-Since only without it."""
    if_none_match = headers.get("if-none-match")
    if_modified_since = headers.get("if-modified-since")
    return not_modified_by(
        None if if_none_match is None else if_none_match.encode("latin-1"),
        None if if_modified_since is None else if_modified_since.encode("latin-1"),
        tag.encode("latin-1"),
        mtime_ns,
    )


def not_modified_by(if_none_match: bytes | None, if_modified_since: bytes | None, tag: bytes, mtime_ns: int) -> bool:
    """``not_modified`` given the two raw header values (None: absent) and the encoded ETag."""
    if if_none_match is not None:
        return etag_matches(if_none_match, tag)
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since.decode("latin-1"))
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            return False
        return int(mtime_ns // 1_000_000_000) <= int(since.timestamp())
    return False


def etag_matches(if_none_match: bytes, tag: bytes) -> bool:
    """Whether an If-None-Match value lists ``tag`` (weak comparison: ``W/`` ignored) or is ``*``.
    The only ETag matcher: the memo replay and the full path both ask it."""
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == tag or candidate == b"*":
            return True
    return False
