"""Operator endpoints under ``/admin``: cache purge and statistics, behind a bearer token.

Owns: the token check (constant-time) and the two routes. Absent unless ``admin_token`` is
set (attack case F12: off by default, authenticated). Put them behind your proxy's access
rules as well; a purge reaches the other worker processes' memory tiers within a second.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iiifserver.errors import BadRequest
from iiifserver.image.request import decode_identifier
from iiifserver.image.service import ImageService
from iiifserver.web.errors import NO_STORE, error_response


def routes(
    service: ImageService, token: str, extra_stats: Callable[[], dict[str, object]] | None = None
) -> list[Route]:
    if not token:
        return []

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def denied() -> Response:
        return JSONResponse(
            {"error": "a valid 'Authorization: Bearer <admin_token>' header is required"},
            status_code=401,
            headers={**NO_STORE, "www-authenticate": 'Bearer realm="iiifserver-admin"'},
        )

    async def purge(request: Request) -> Response:
        if not authorised(request):
            return denied()
        raw = request.query_params.get("identifier")
        try:
            identifier = decode_identifier(raw.encode("utf-8")) if raw is not None else None
        except BadRequest as exc:
            return error_response(exc)
        removed = await service.purge(identifier)
        return JSONResponse({"purged": removed, "identifier": identifier}, headers=NO_STORE)

    async def stats(request: Request) -> Response:
        if not authorised(request):
            return denied()
        return JSONResponse({**service.stats(), **(extra_stats() if extra_stats else {})}, headers=NO_STORE)

    return [
        Route("/admin/cache/purge", purge, methods=["POST"]),
        Route("/admin/stats", stats, methods=["GET"]),
    ]
