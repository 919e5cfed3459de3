"""Image API endpoints: ``/iiif/3/...`` and ``/iiif/2/...``.

Owns: routing on the *raw* request path (``scope["path"]`` has ``%2F`` already decoded, so it
cannot tell a sub-folder identifier from an extra segment), and turning service results into
responses with their headers. The grammar lives in ``image/request.py``, the flow in
``image/service.py``.

The endpoint's ``reply`` is what ``FastPath`` awaits directly for GET and HEAD: a tile miss is
the request a deep-zoom viewer makes most, and the framework's middleware, routing and response
objects cost as much CPU as reading and sending a stored tile. It adds the CORS headers itself
for that reason; the Starlette routes remain for the other methods (405). Cheaper still,
``answer_in_protocol``: the plain tile request of an image already open whose body needs no
await (a stored tile in the page cache, or the memory tier) is answered synchronously, before
uvicorn starts a task; that cut a cold tile's CPU by about a third. Every answer, whichever of
the two gives it, is built by ``web.response.image_reply``.

A request that goes to a lane (a render, a disk-tier read) watches its connection while it
waits: when the client disconnects (``receive()`` answers ``http.disconnect``) the request stops
waiting, which drops its job if still queued and nobody else waits for it, and is recorded as
499 (nginx's "client closed request"; nothing reaches the client). Memory and page-cache hits
answer without a watcher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from iiifserver.cache.entry import Entry
from iiifserver.config import Settings
from iiifserver.errors import BadRequest, IIIFError, NotFound
from iiifserver.image import access as access_rules
from iiifserver.image import canonical, planner
from iiifserver.image import info as info_doc
from iiifserver.image.request import (
    ApiVersion,
    ImageRequest,
    Region,
    RegionKind,
    Size,
    SizeKind,
    decode_identifier,
    encode_identifier,
    parse_image_request,
    parse_tile_request,
)
from iiifserver.image.service import ImageService, Origin, Prepared
from iiifserver.image.source_info import SourceInfo, SourceVersion
from iiifserver.image.source_registry import KnownSource
from iiifserver.web import headers as h
from iiifserver.web.auth import AUTH_CONTEXT_2, Auth
from iiifserver.web.errors import error_response, server_error_response
from iiifserver.web.fast_path import MEMO_KEY, Memo, MemoKey, ResponseMemo
from iiifserver.web.observer import Way
from iiifserver.web.response import Reply, header_lines, image_reply, send_reply
from iiifserver.web.urls import BASE_HEADERS, first_values, scope_base

log = logging.getLogger(__name__)
PREFIXES = {ApiVersion.V3: "/iiif/3", ApiVersion.V2: "/iiif/2"}
_PROFILE_LINK = {
    ApiVersion.V3: f'<{info_doc.PROFILE_3}>;rel="profile"',
    ApiVersion.V2: f'<{info_doc.PROFILE_2}>;rel="profile"',
}
_CONTEXT = {ApiVersion.V3: info_doc.CONTEXT_3, ApiVersion.V2: info_doc.CONTEXT_2}
# Longest raw (still %-encoded) region/size/rotation/quality.format segment accepted.
MAX_PARAMETER_BYTES = 256
_CORS = h.CORS_RESPONSE_HEADERS
# The status recorded for a request whose client left before its answer (never sent).
CLIENT_CLOSED_REQUEST = 499

# The request headers this module reads; parsed once per request.
_READS = (*BASE_HEADERS, b"accept", b"if-none-match", b"if-modified-since")
RawHeaders = list[tuple[bytes, bytes]]


class ImageEndpoint:
    """GET/HEAD of one Image API version, as a bare ASGI app."""

    def __init__(
        self,
        version: ApiVersion,
        service: ImageService,
        settings: Settings,
        memo: ResponseMemo | None,
        access: Auth | None = None,
    ):
        self.version = version
        self.access = access
        self.prefix = PREFIXES[version] + "/"
        self._raw_prefix = self.prefix.encode()
        self.service = service
        self.settings = settings
        self.memo = memo

    def handles(self, path: str) -> bool:
        return path.startswith(self.prefix)

    def answer_in_protocol(self, scope: Scope) -> Reply | None:
        """A plain tile request (``parse_tile_request``) of an identifier already open, whose body
        is in the memory tier or a stored tile in the page cache, answered without awaiting:
        the cold tiles of a deep-zoom view, for ``web.http_protocol``. The same status, headers
        and body as ``reply``; None for anything else, which then goes the full way (so do
        conditional requests and requests with a query)."""
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if not raw.startswith(self._raw_prefix) or scope.get("query_string"):
            return None
        segment, slash, params = raw[len(self._raw_prefix) :].partition(b"/")
        image_request = parse_tile_request(params, self.version) if slash else None
        if image_request is None:
            return None
        request = _Request(scope, first_values(scope["headers"], _READS))
        if b"if-none-match" in request.headers or b"if-modified-since" in request.headers:
            return None
        try:
            identifier = decode_identifier(segment)
            prepared = self.service.prepare_if_known(identifier, image_request)
            if prepared is None:
                return None
            # A restricted or degraded image (or any, before the rules are read) goes the full
            # way, through the access check: one dict lookup for an open one.
            if self.access is not None and prepared.source.file.path in self.access.rules.rules:
                return None
            entry = self.service.entry_at_once(prepared)
            if entry is None:
                return None
            base = f"{scope_base(scope, self.settings, request.headers)}{PREFIXES[self.version]}"
        except Exception:  # the full path answers it: an IIIF error, or a 500 it logs
            return None
        tag, headers = _image_headers(self.version, base, prepared, self.settings)
        headers.append((b"content-type", entry.media_type.encode("latin-1")))
        lines = header_lines(headers)
        if self.memo is not None and self.service.in_memory(prepared.key):  # else nothing to replay
            memo = Memo(identifier, prepared.version, tag.encode(), lines, key=prepared.key)
            self.memo.put(request.memo_key(self.memo), memo)
        return image_reply(200, lines, entry.body, Way.PROTOCOL_TILE, head=scope["method"] == "HEAD")

    async def reply(self, scope: Scope, receive: Receive | None = None) -> Reply:
        """The full answer to a GET or HEAD: a document, an image, a redirect, a 304 or an error.
        With ``receive``, a client that disconnects while its image is produced stops the wait."""
        request = _Request(scope, first_values(scope["headers"], _READS), receive)
        try:
            return await _dispatch(request, self.version, self.service, self.settings, self.memo, self.access)
        except ClientDisconnected:
            return image_reply(CLIENT_CLOSED_REQUEST, b"", b"", Way.ENDPOINT, head=True)
        except IIIFError as exc:
            error = error_response(exc)
            headers = [*error.raw_headers, *h.CORS_RESPONSE_HEADERS]
        except Exception:
            # FastPath calls this endpoint outside the framework's error middleware: the same
            # answer here (logged once, a bare 500, never a trace), and the worker goes on.
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            error = server_error_response()
            headers = list(error.raw_headers)
        lines = header_lines(headers, skip=b"content-length")
        return image_reply(error.status_code, lines, bytes(error.body), Way.ENDPOINT, head=request.head)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_reply(await self.reply(scope, receive), send)


class _Request:
    """What the handlers read of a request."""

    __slots__ = ("head", "headers", "receive", "scope")

    def __init__(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive | None = None) -> None:
        self.scope = scope
        self.headers = headers
        self.head = scope["method"] == "HEAD"
        self.receive = receive

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def not_modified(self, tag: str, mtime_ns: int) -> bool:
        get = self.headers.get
        return h.not_modified_by(get(b"if-none-match"), get(b"if-modified-since"), tag.encode(), mtime_ns)

    def reply(self, status: int, headers: RawHeaders, body: bytes = b"") -> Reply:
        return image_reply(status, header_lines(headers), body, Way.ENDPOINT, head=self.head)

    def memo_key(self, memo: ResponseMemo) -> MemoKey:
        key: MemoKey | None = self.scope.get(MEMO_KEY)  # computed by FastPath already
        return key if key is not None else memo.key(self.scope)


def endpoints(
    service: ImageService, settings: Settings, memo: ResponseMemo | None = None, access: Auth | None = None
) -> list[ImageEndpoint]:
    return [ImageEndpoint(version, service, settings, memo, access) for version in PREFIXES]


def routes(endpoints: list[ImageEndpoint]) -> list[Route]:
    """The endpoints as routes: ``FastPath`` calls them first, so these answer only other methods."""
    out = []
    for endpoint in endpoints:
        route = Route(endpoint.prefix + "{rest:path}", endpoint, methods=["GET", "HEAD"])
        # Starlette's ``path`` convertor is ``.*``, which stops at a decoded newline (%0A): such a
        # request fell through to a bare 404 before the identifier check could refuse it (A13).
        route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
        out.append(route)
    return out


async def _dispatch(
    request: _Request,
    version: ApiVersion,
    service: ImageService,
    settings: Settings,
    memo: ResponseMemo | None,
    access: Auth | None = None,
) -> Reply:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    prefix = PREFIXES[version].encode() + b"/"
    if not raw.startswith(prefix):
        raise NotFound("not an IIIF URL")
    segments = raw[len(prefix) :].split(b"/")
    base = f"{scope_base(request.scope, settings, request.headers)}{PREFIXES[version]}"
    if len(segments) == 1 and segments[0]:
        identifier = decode_identifier(segments[0])
        location = f"{base}/{encode_identifier(identifier)}/info.json"
        return request.reply(303, [(b"location", location.encode("latin-1")), (b"cache-control", b"no-store"), *_CORS])
    if len(segments) == 2 and segments[1] == b"info.json":
        identifier = decode_identifier(segments[0])
        known = None
        if access is not None:
            known, guarded = await _guarded(request, identifier, service, access)
            if guarded is not None:
                return _restricted_info(request, version, identifier, base, guarded, service, settings, access)
        return await _info(request, version, identifier, base, service, settings, memo, known)
    if len(segments) == 5:
        identifier = decode_identifier(segments[0])
        region, size, rotation, quality_format = (_param(seg) for seg in segments[1:])
        image_request = parse_image_request(region, size, rotation, quality_format, version=version)
        known = None
        if access is not None:
            known, guarded = await _guarded(request, identifier, service, access)
            if guarded is not None:
                return await _restricted_image(request, version, identifier, image_request, base, guarded, service)
        return await _image(request, version, identifier, image_request, base, service, settings, memo, known)
    raise NotFound("not an IIIF URL (an identifier with '/' must encode it as %2F)")


async def _info(
    request: _Request,
    version: ApiVersion,
    identifier: str,
    base: str,
    service: ImageService,
    settings: Settings,
    memo: ResponseMemo | None,
    known: KnownSource | None = None,
) -> Reply:
    # ``known``: the access check found the source already (one check per request, not two)
    found = known if known is not None else await service.find(identifier)
    service_id = f"{base}/{encode_identifier(identifier)}"
    tag = h.etag(f"i{version.value}-{found.file.version.token}-{_digest(service_id)}")
    headers = [
        (b"link", _PROFILE_LINK[version].encode()),
        (b"etag", tag.encode()),
        (b"last-modified", h.http_date(found.file.version.mtime_ns).encode()),
        (b"cache-control", settings.cache_control.encode("latin-1")),
        (b"vary", b"Accept"),
        *_CORS,
    ]
    if request.not_modified(tag, found.file.version.mtime_ns):
        return request.reply(304, headers)
    builder = info_doc.info_v3 if version is ApiVersion.V3 else info_doc.info_v2
    body = orjson.dumps(builder(service_id, found.info, service.limits))
    media_type = h.negotiate_json_ld(request.header(b"accept"), _CONTEXT[version], default_ld=version is ApiVersion.V3)
    headers.append((b"content-type", media_type.encode("latin-1")))
    lines = header_lines(headers)
    if memo is not None:
        _remember(memo, request, found.file.identifier, found.file.version, tag, lines, body=body)
    return image_reply(200, lines, body, Way.ENDPOINT, head=request.head)


async def _image(
    request: _Request,
    version: ApiVersion,
    identifier: str,
    image_request: ImageRequest,
    base: str,
    service: ImageService,
    settings: Settings,
    memo: ResponseMemo | None,
    known: KnownSource | None = None,
) -> Reply:
    if known is not None:  # the access check found the source already (one check per request, not two)
        prepared = service.prepare_known(identifier, known, image_request, "")
    else:
        prepared = await service.prepare(identifier, image_request)
    tag, headers = _image_headers(version, base, prepared, settings)
    if request.not_modified(tag, prepared.version.mtime_ns):
        return request.reply(304, headers)
    entry, way = await _entry(service, prepared, request.receive)
    headers.append((b"content-type", entry.media_type.encode("latin-1")))
    lines = header_lines(headers)
    if memo is not None and service.in_memory(prepared.key):  # else nothing to replay
        _remember(memo, request, identifier, prepared.version, tag, lines, key=prepared.key)
    return image_reply(200, lines, entry.body, way, head=request.head)


@dataclass(frozen=True, slots=True)
class _Guarded:
    """An image under an access rule, as asked for: its full tier (``authorized`` or not) or its degraded tier."""

    known: KnownSource
    rule: access_rules.Rule
    degraded: bool
    authorized: bool


async def _guarded(
    request: _Request, identifier: str, service: ImageService, access: Auth
) -> tuple[KnownSource, _Guarded | None]:
    """The source of ``identifier`` and the access rule it is under (None when its image is open:
    the usual path then, with the source found here)."""
    name, degraded = access_rules.split_degraded(identifier)
    known = service.find_if_known(name)
    if known is None:
        known = await service.find(name)
    elif not degraded and known.file.path not in access.rules.rules:
        return known, None  # open, and known: one dict lookup
    rule = await access.rule(known.file.path)
    if degraded:
        if rule is None or rule.degraded_max is None:
            raise NotFound(f"no image {identifier!r}", parameter="identifier")
        return known, _Guarded(known, rule, True, False)
    if rule is None:
        return known, None
    headers = first_values(request.scope["headers"], (b"cookie", b"authorization", access.header))
    return known, _Guarded(known, rule, False, access.authorized(request.scope, headers))


def _restricted_info(
    request: _Request,
    version: ApiVersion,
    identifier: str,
    base: str,
    guarded: _Guarded,
    service: ImageService,
    settings: Settings,
    access: Auth,
) -> Reply:
    """info.json of a restricted image (401 with the services and no pixels until logged in,
    for Authentication 1.0 viewers; 200 once logged in) or of its degraded tier (capped sizes
    and scale factors). Never memoised, never ``public``."""
    known = guarded.known
    # Denied with a degraded tier: the degraded tier's document (its own id), as Authentication
    # 1.0 viewers expect (Mirador and UV show it, and their login, when the id differs).
    degraded = guarded.degraded or (not guarded.authorized and guarded.rule.degraded_max is not None)
    name = access_rules.split_degraded(identifier)[0]
    shown = name + access_rules.DEGRADED_SUFFIX if degraded else name
    service_id = f"{base}/{encode_identifier(shown)}"
    builder = info_doc.info_v3 if version is ApiVersion.V3 else info_doc.info_v2
    if degraded:
        assert guarded.rule.degraded_max is not None
        virtual = access_rules.virtual_info(known.info, guarded.rule.degraded_max)
        document = builder(service_id, virtual, service.limits)
        _cap(document, virtual, version)
    else:
        document = builder(service_id, known.info, service.limits)
    root = base[: -len(PREFIXES[version])]
    document["service"] = [*document.get("service", []), *access.services(root, name)]
    if version is ApiVersion.V3:
        document["@context"] = [AUTH_CONTEXT_2, info_doc.CONTEXT_3]
    status = 200 if guarded.degraded or guarded.authorized else 401
    headers = [
        (b"link", _PROFILE_LINK[version].encode()),
        (b"cache-control", b"private, no-store" if not guarded.degraded else b"private, max-age=3600"),
        (b"vary", b"Accept, Cookie, Authorization"),
        *_CORS,
    ]
    media_type = h.negotiate_json_ld(request.header(b"accept"), _CONTEXT[version], default_ld=version is ApiVersion.V3)
    headers.append((b"content-type", media_type.encode("latin-1")))
    return image_reply(status, header_lines(headers), orjson.dumps(document), Way.ENDPOINT, head=request.head)


def _cap(document: dict[str, Any], virtual: SourceInfo, version: ApiVersion) -> None:
    """The degraded tier's info.json: its own size, and nothing larger (sizes, maxWidth/maxHeight)."""
    w, h = virtual.width, virtual.height
    sizes = [size for size in document.get("sizes", []) if size["width"] <= w and size["height"] <= h]
    document["sizes"] = sizes or [{"width": w, "height": h}]
    limits: dict[str, Any] = document
    profile = document.get("profile")
    if version is ApiVersion.V2 and isinstance(profile, list) and isinstance(profile[-1], dict):
        limits = profile[-1]
    limits["maxWidth"], limits["maxHeight"] = w, h
    limits.pop("maxArea", None)


async def _restricted_image(
    request: _Request,
    version: ApiVersion,
    identifier: str,
    image_request: ImageRequest,
    base: str,
    guarded: _Guarded,
    service: ImageService,
) -> Reply:
    """An image of a restricted image's full tier (only with a session, token or trusted user) or
    of its degraded tier (at most its resolution). The tier is part of the cache key; the answer
    is ``private`` and never memoised."""
    known = guarded.known
    canonical_path = None
    if guarded.degraded:
        # In the degraded tier's own pixels (``virtual_info``), then the same region of the
        # source at the same output size; never above the tier's resolution.
        degraded_max = guarded.rule.degraded_max
        assert degraded_max is not None
        virtual = access_rules.virtual_info(known.info, degraded_max)
        resolved = planner.resolve(image_request, virtual, service.limits)
        region = resolved.region
        box = access_rules.real_box(region.x, region.y, region.w, region.h, known.info, virtual)
        if resolved.upscaled or not access_rules.within_degraded(
            known.info, degraded_max, box[2], box[3], resolved.width, resolved.height
        ):
            raise access_rules.OverDegradedTier(f"{identifier!r} is shown at most {degraded_max} pixels")
        canonical_path = canonical.canonical_path(resolved, version)
        image_request = dataclasses.replace(
            image_request,
            region=Region(RegionKind.PIXELS, pixels=box),
            size=Size(SizeKind.EXACT, width=resolved.width, height=resolved.height),
        )
        tier = access_rules.TIER_DEGRADED
    elif not guarded.authorized:
        raise access_rules.Unauthorized(f"{identifier!r} is restricted: log in to see it")
    else:
        tier = access_rules.TIER_RESTRICTED
    prepared = service.prepare_known(identifier, known, image_request, tier)
    canonical_url = f"{base}/{encode_identifier(prepared.identifier)}/{canonical_path or prepared.canonical}"
    tag = h.etag(prepared.key)
    headers = [
        (b"link", f'<{canonical_url}>;rel="canonical", {_PROFILE_LINK[version]}'.encode("latin-1")),
        (b"etag", tag.encode()),
        (b"last-modified", h.http_date(prepared.version.mtime_ns).encode()),
        (b"cache-control", b"private, max-age=3600" if guarded.degraded else b"private, no-store"),
        (b"vary", b"Cookie, Authorization"),
        *_CORS,
    ]
    if request.not_modified(tag, prepared.version.mtime_ns):
        return request.reply(304, headers)
    entry, way = await _entry(service, prepared, request.receive)
    headers.append((b"content-type", entry.media_type.encode("latin-1")))
    return image_reply(200, header_lines(headers), entry.body, way, head=request.head)


class ClientDisconnected(Exception):
    """The client went away while its image was being produced."""


async def _entry(service: ImageService, prepared: Prepared, receive: Receive | None) -> tuple[Entry, Way]:
    """``prepared``'s entry and the way it came: the memory tier's, else ``_fetch``'s."""
    entry = service.cached(prepared)
    if entry is not None:
        return entry, Way.MEMORY
    entry, origin = await _fetch(service, prepared, receive)
    return entry, Way(origin)  # the same words


async def _fetch(service: ImageService, prepared: Prepared, receive: Receive | None) -> tuple[Entry, Origin]:
    """``service.fetch_with_origin``, given up when the client disconnects meanwhile.

    A watcher task reads ``receive`` and cancels this request's task on ``http.disconnect``;
    cancelling drops the request's place in the single flight (and its queued job, when no
    other request waits for it). Stored tiles in the page cache need no watcher: no waiting.
    """
    if receive is None:
        return await service.fetch_with_origin(prepared)
    if prepared.passthrough is not None:
        entry = service.entry_at_once(prepared)
        if entry is not None:
            return entry, "passthrough"
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task))
    try:
        return await service.fetch_with_origin(prepared)
    except asyncio.CancelledError:
        # Ours (the watcher's) only when nobody else cancelled the task too (a shutdown).
        if watcher.done() and not watcher.cancelled() and task.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[object]) -> None:
    while True:
        message = await receive()  # a GET's empty body first, then nothing until a disconnect
        if message["type"] == "http.disconnect":
            task.cancel()
            return


def _image_headers(version: ApiVersion, base: str, prepared: Prepared, settings: Settings) -> tuple[str, RawHeaders]:
    """The ETag and the headers of an image response, but its content type and length."""
    canonical_url = f"{base}/{encode_identifier(prepared.identifier)}/{prepared.canonical}"
    tag = h.etag(prepared.key)
    return tag, [
        (b"link", f'<{canonical_url}>;rel="canonical", {_PROFILE_LINK[version]}'.encode("latin-1")),
        (b"etag", tag.encode()),
        (b"last-modified", h.http_date(prepared.version.mtime_ns).encode()),
        (b"cache-control", settings.cache_control.encode("latin-1")),
        *_CORS,
    ]


def _remember(
    memo: ResponseMemo,
    request: _Request,
    identifier: str,
    version: SourceVersion,
    tag: str,
    lines: bytes,
    *,
    key: str | None = None,
    body: bytes | None = None,
) -> None:
    """Record this answer for the fast path (``lines``: every header but content-length)."""
    memo.put(request.memo_key(memo), Memo(identifier, version, tag.encode(), lines, key=key, body=body))


def _param(segment: bytes) -> str:
    """Percent-decode one parameter segment (clients may send ``%5E`` for ``^``, ``%21`` for ``!``)."""
    # Real parameters are short. Bounding them keeps huge digit strings from the parser: int()
    # refuses more than 4300 digits with a ValueError, a 500 (attack case B07).
    if len(segment) > MAX_PARAMETER_BYTES:
        raise BadRequest(f"request parameter longer than {MAX_PARAMETER_BYTES} bytes")
    try:
        return unquote_to_bytes(segment).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("request parameters must be ASCII") from None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
