"""Presentation API endpoints: manifests and collections under ``/iiif/presentation/3/``.

Owns: routing on the raw path (object ids may hold ``/``; each segment is percent-decoded
once, strictly), the JSON-LD media type, ETag / Last-Modified / 304 and Cache-Control.
The documents come from ``presentation/service.py``.

URLs: ``/iiif/presentation/3/{object}/manifest``, ``/iiif/presentation/3/collection`` (the top
collection) and ``/iiif/presentation/3/collection/{path}``, with ``?page=N`` on large ones; the
Change Discovery log at ``/iiif/discovery/activity/all-changes`` and ``.../page/{n}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iiifserver.config import Settings
from iiifserver.errors import BadRequest, IIIFError, NotFound
from iiifserver.institutions import NONE, Institutions
from iiifserver.presentation.builder import CONTEXT, PRESENTATION_PREFIX
from iiifserver.presentation.changes import ChangeTracker, Published
from iiifserver.presentation.discovery import ACTIVITY_PREFIX, COLLECTION_NAME
from iiifserver.presentation.discovery import CONTEXT as DISCOVERY_CONTEXT
from iiifserver.presentation.service import PresentationService
from iiifserver.web import headers as h
from iiifserver.web.errors import error_response
from iiifserver.web.institutions import document_base, host_institution, request_host
from iiifserver.web.urls import public_base

MAX_PATH_BYTES = 1024
# Descriptions may change at any time: caches revalidate (cheaply, by ETag) after a short while.
DOCUMENT_CACHE_CONTROL = "public, max-age=60"


def routes(
    presentation: PresentationService,
    settings: Settings,
    changes: ChangeTracker | None = None,
    institutions: Callable[[], Institutions] | None = None,
) -> list[Route]:
    registry = institutions or (lambda: NONE)

    async def handle(request: Request) -> Response:
        try:
            return await _dispatch(request, presentation, settings, registry())
        except IIIFError as exc:
            return error_response(exc)

    route = Route(PRESENTATION_PREFIX + "/{rest:path}", handle, methods=["GET", "HEAD"])
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)  # see image_routes: %0A
    if changes is None:
        return [route]
    tracker = changes

    async def handle_activity(request: Request) -> Response:
        try:
            return await _activity(request, tracker, settings)
        except IIIFError as exc:
            return error_response(exc)

    activity = Route(ACTIVITY_PREFIX + "/{rest:path}", handle_activity, methods=["GET", "HEAD"])
    activity.path_regex = re.compile(activity.path_regex.pattern, re.DOTALL)
    return [route, activity]


async def _activity(request: Request, changes: ChangeTracker, settings: Settings) -> Response:
    """The Change Discovery log: the collection and its pages (numbered from 0, oldest first)."""
    rest: str = request.path_params["rest"]
    base = public_base(request, settings)
    document: Published
    number = rest.removeprefix("page/")
    if rest == COLLECTION_NAME:
        document = await changes.collection(base)
    elif number != rest and number.isascii() and number.isdigit() and len(number) <= 9:
        document = await changes.page(base, int(number))
    else:
        raise NotFound("not a Change Discovery URL: use /all-changes or /page/{n}")
    if h.not_modified(request.headers, h.etag(document.key), document.mtime_ns):
        return _not_modified(document.key, document.mtime_ns)
    media_type = h.negotiate_json_ld(request.headers.get("accept"), DISCOVERY_CONTEXT, default_ld=True)
    return Response(document.body, media_type=media_type, headers=_headers(document.key, document.mtime_ns))


async def _dispatch(
    request: Request, presentation: PresentationService, settings: Settings, institutions: Institutions = NONE
) -> Response:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    prefix = PRESENTATION_PREFIX.encode() + b"/"
    if not raw.startswith(prefix) or len(raw) > MAX_PATH_BYTES:
        raise NotFound("not a Presentation API URL")
    segments = [_segment(s) for s in raw[len(prefix) :].split(b"/")]
    base = public_base(request, settings)
    # ``.../manifest`` always names a manifest (an object may be called "collection").
    if len(segments) >= 2 and segments[-1] == "manifest":
        object_id = "/".join(segments[:-1])
        base = document_base(institutions, object_id, base)  # an institution's own public URL
        keyed = await presentation.manifest_key(object_id, base)
        if h.not_modified(request.headers, h.etag(keyed.key), keyed.mtime_ns):
            return _not_modified(keyed.key, keyed.mtime_ns)
        document = await presentation.manifest(object_id, base, keyed)
    elif segments[0] == "collection":
        path = "/".join(segments[1:])
        own = (
            host_institution(institutions, request_host(request.scope, settings.trusted_proxies)) if not path else None
        )
        path = own.slug if own is not None else path  # its own host's top collection is its own
        base = document_base(institutions, path, base)
        page = _page(request.query_params.get("page"))
        keyed, _members = await presentation.collection_key(path, base, page)
        if h.not_modified(request.headers, h.etag(keyed.key), keyed.mtime_ns):
            return _not_modified(keyed.key, keyed.mtime_ns)
        document = await presentation.collection(path, base, page)
    else:
        raise NotFound("not a Presentation API URL: use /{object}/manifest or /collection[/{path}]")
    media_type = h.negotiate_json_ld(request.headers.get("accept"), CONTEXT, default_ld=True)
    return Response(document.body, media_type=media_type, headers=_headers(document.key, document.mtime_ns))


def _headers(key: str, mtime_ns: int) -> dict[str, str]:
    return {
        "etag": h.etag(key),
        "last-modified": h.http_date(mtime_ns),
        "cache-control": DOCUMENT_CACHE_CONTROL,
        "vary": "Accept",
    }


def _not_modified(key: str, mtime_ns: int) -> Response:
    return Response(status_code=304, headers=_headers(key, mtime_ns))


def _segment(raw: bytes) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise NotFound("object ids are UTF-8") from None
    if text in ("", ".", "..") or any(ord(c) < 0x20 or c in "\x7f/\\" for c in text):
        raise NotFound("not a Presentation API URL")
    return text


def _page(value: str | None) -> int:
    if value is None:
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise BadRequest("page must be a positive whole number", parameter="page")
    return int(value)
