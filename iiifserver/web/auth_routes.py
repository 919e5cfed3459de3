"""The routes under ``/auth/``: login, the access token services, the probe and logout.

Owns: the login page (IIIF Authorization Flow 2.0's active access service, Authentication API
1.0's login service) and its form, the session cookie's flags (HttpOnly; ``SameSite=None; Secure``
over https), the token services (2.0: ``AuthAccessToken2`` by postMessage; 1.0: the same with
1.0's shape, or JSON without a window), the probe (``AuthProbeResult2``), logout, and their pages
(strict Content-Security-Policy, never cached).
Must not know: how sessions, tokens and passwords are made and checked (``web.auth``,
``web.auth_users``), image rendering, caches.
"""

from __future__ import annotations

import asyncio
import html
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from iiifserver.config import Settings
from iiifserver.errors import IIIFError
from iiifserver.image.access import DEGRADED_SUFFIX
from iiifserver.image.request import decode_identifier, encode_identifier
from iiifserver.web.auth import AUTH_CONTEXT_2, ORIGIN, SESSION_COOKIE, TEXT, Auth
from iiifserver.web.auth_users import LoginCheck
from iiifserver.web.urls import scope_base

MAX_FORM_BYTES = 4096


def routes(auth: Auth, find: Callable[[str], Awaitable[Any]]) -> list[Route]:
    """``find``: identifier -> the image's ``KnownSource`` (raises ``IIIFError`` when there is none)."""

    async def login(request: Request) -> Response:
        origin = request.query_params.get("origin", "")
        headers = _headers(request)
        user = auth.proxy_user(request.scope, headers)
        error = ""
        if user is None and request.method == "POST":
            body = await request.body()
            if len(body) > MAX_FORM_BYTES:
                return _page("Login", "<p>Form too large.</p>", status=413)
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            origin = form.get("origin", origin)
            if auth.check is not None:
                user = await _off_loop(auth.check, form.get("user", ""), form.get("password", ""))
            error = "" if user is not None else "The user name or password was not accepted."
        if user is not None:
            _, cookie = auth.new_session(user)
            response = _page(
                "Logged in", f"<p>Logged in as {html.escape(user)}. This window can be closed.</p>", close=True
            )
            response.set_cookie(SESSION_COOKIE, cookie, **_cookie_flags(auth.settings, request))
            return response
        if auth.check is None:
            note = "<p>No login is configured on this server (see docs/access.md).</p>"
            return _page("Login", note, status=200)
        form_html = (
            f'<form method="post" action="login"><input type="hidden" name="origin" value="{html.escape(origin)}">'
            '<p><label>User <input name="user" autocomplete="username" required autofocus></label></p>'
            '<p><label>Password <input name="password" type="password" autocomplete="current-password" required>'
            '</label></p><p><button type="submit">Log in</button></p></form>'
        )
        message = f'<p role="alert">{html.escape(error)}</p>' if error else ""
        return _page(
            "Login", f"<h1>{html.escape(TEXT['heading'])}</h1>{message}{form_html}", status=401 if error else 200
        )

    async def token(request: Request) -> Response:
        version = request.path_params["version"]
        message_id = request.query_params.get("messageId", "")
        origin = request.query_params.get("origin", "")
        headers = _headers(request)
        session = auth.session(headers)
        if session is None:
            user = auth.proxy_user(request.scope, headers)
            session = auth.new_session(user)[0] if user is not None else None
        if version == "1" and not message_id:  # 1.0's JSON form (no window)
            if session is None:
                return _json({"error": "missingCredentials", "description": "Not logged in."}, 401)
            value, expires_in = auth.token(session)
            return _json({"accessToken": value, "expiresIn": expires_in})
        if not auth.valid_origin(origin):
            # Never posted anywhere but the origin the viewer gave; a bad one gets no token.
            target = origin if ORIGIN.fullmatch(origin) else ""
            return _message(_error(version, "invalidOrigin", message_id), target)
        if session is None:
            return _message(_error(version, "missingAspect", message_id), origin)
        value, expires_in = auth.token(session)
        body: dict[str, Any] = {"accessToken": value, "expiresIn": expires_in, "messageId": message_id}
        if version == "2":
            body = {"@context": AUTH_CONTEXT_2, "type": "AuthAccessToken2", **body}
        return _message(body, origin)

    async def probe(request: Request) -> Response:
        raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
        segment = raw.rpartition(b"/")[2]
        headers = _headers(request)
        result: dict[str, Any] = {"@context": AUTH_CONTEXT_2, "type": "AuthProbeResult2"}
        try:
            identifier = decode_identifier(segment)
            known = await find(identifier)
            rule = await auth.rule(known.file.path)
        except IIIFError as exc:
            return _json({**result, "status": exc.status})
        session = auth.token_session(headers)
        if rule is None or session is not None or auth.proxy_user(request.scope, headers) is not None:
            return _json({**result, "status": 200})
        result.update(status=401, heading={"en": [TEXT["heading"]]}, note={"en": [TEXT["note"]]})
        if rule.degraded_max is not None:
            root = scope_base(request.scope, auth.settings)
            degraded = encode_identifier(identifier + DEGRADED_SUFFIX)
            result["substitute"] = [{"id": f"{root}/iiif/3/{degraded}", "type": "ImageService3"}]
        return _json(result)

    async def logout(request: Request) -> Response:
        headers = _headers(request)
        session = auth.session(headers)
        if session is not None:
            auth.revoke(session)
        response = _page("Logged out", "<p>You are logged out. This window can be closed.</p>", close=True)
        response.delete_cookie(SESSION_COOKIE, path="/", **_delete_flags(auth.settings, request))
        return response

    return [
        Route("/auth/login", login, methods=["GET", "POST"]),
        Route("/auth/{version:str}/token", token, methods=["GET"]),
        Route("/auth/2/probe/{identifier:path}", probe, methods=["GET"]),
        Route("/auth/logout", logout, methods=["GET"]),
    ]


def _headers(request: Request) -> dict[bytes, bytes]:
    """The request's headers as ``Auth``'s checks take them (lower-case names, bytes)."""
    return {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()}


def _cookie_flags(settings: Settings, request: Request) -> dict[str, Any]:
    flags: dict[str, Any] = {"max_age": settings.auth_session_seconds, "path": "/", "httponly": True}
    return {**flags, **_delete_flags(settings, request)}


def _delete_flags(settings: Settings, request: Request) -> dict[str, Any]:
    # Viewers on other sites load our images: the cookie must be sent cross-site, which
    # browsers allow only for Secure cookies over https. Over plain http (a laptop), Lax.
    if scope_base(request.scope, settings).startswith("https://"):
        return {"secure": True, "samesite": "none", "httponly": True}
    return {"samesite": "lax", "httponly": True}


async def _off_loop(check: LoginCheck, user: str, password: str) -> str | None:
    return await asyncio.to_thread(check, user, password)  # scrypt takes tens of milliseconds


def _error(version: str, profile: str, message_id: str) -> dict[str, Any]:
    if version == "2":
        return {
            "@context": AUTH_CONTEXT_2,
            "type": "AuthAccessTokenError2",
            "profile": profile,
            "messageId": message_id,
        }
    names = {"invalidOrigin": "invalidOrigin", "missingAspect": "missingCredentials"}
    return {"error": names.get(profile, "invalidRequest"), "description": profile, "messageId": message_id}


def _json(body: dict[str, Any], status: int = 200) -> Response:
    headers = {"cache-control": "no-store"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, no ``<!--``."""
    return orjson.dumps(value).decode().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _message(message: dict[str, Any], origin: str) -> Response:
    """The token service's page: posts ``message`` to the parent window at ``origin`` only."""
    nonce = secrets.token_urlsafe(16)
    data = _script_json({"message": message, "origin": origin})
    script = (
        "const d=JSON.parse(document.getElementById('d').textContent);"
        "if(d.origin&&window.parent!==window)window.parent.postMessage(d.message,d.origin);"
    )
    body = (
        '<!doctype html><html><head><meta charset="utf-8"><title>token</title></head><body>'
        f'<script type="application/json" id="d">{data}</script><script nonce="{nonce}">{script}</script></body></html>'
    )
    csp = f"default-src 'none'; script-src 'nonce-{nonce}'"  # framed by viewers of any origin: no frame-ancestors
    return HTMLResponse(body, headers={"cache-control": "no-store", "content-security-policy": csp})


def _page(title: str, content: str, *, status: int = 200, close: bool = False) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    script = f'<script nonce="{nonce}">setTimeout(function(){{window.close()}},300)</script>' if close else ""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{font:16px system-ui,sans-serif;max-width:30em;margin:3em auto;padding:0 1em}</style>"
        f"</head><body>{content}{script}</body></html>"
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store", "content-security-policy": csp})
