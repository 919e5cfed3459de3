"""Login, sessions and access tokens of restricted images: IIIF Authorization Flow 2.0 and the
Authentication API 1.0 beside it.

Owns: password hashes (``hashlib.scrypt``) and the users file, the pluggable login check, login
sessions (signed, expiring cookies, HttpOnly, ``SameSite=None; Secure`` over https) and their
revocation on logout, access tokens (signed, expiring, bound to the session), the trusted-header
mode (a single sign-on proxy names the user; believed only from ``trusted_proxies``), the
viewer-origin check of the token services, the service descriptions in info.json, and the
routes under ``/auth/``: login (the active access service of 2.0, the login service of 1.0),
the token services (2.0: ``AuthAccessToken2`` by postMessage; 1.0: the same with 1.0's shape),
the probe (``AuthProbeResult2``) and logout.
Must not know: descriptions (the rules come from ``image.access``), image rendering, caches.

Tokens and sessions are stateless (an HMAC over their content with ``auth_secret``); logout
adds the session to a per-process list of revoked sessions kept until they would expire anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import os
import re
import secrets
import time
import tomllib
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from iiifserver.config import Settings, TrustedProxies
from iiifserver.errors import IIIFError, ServiceUnavailable
from iiifserver.image.access import DEGRADED_SUFFIX, AccessRules, Rule
from iiifserver.image.request import decode_identifier, encode_identifier
from iiifserver.web.urls import scope_base

log = logging.getLogger(__name__)
AUTH_CONTEXT_2 = "http://iiif.io/api/auth/2/context.json"
AUTH_CONTEXT_1 = "http://iiif.io/api/auth/1/context.json"
SESSION_COOKIE = "iiifserver_session"
PROBE_PROFILE = "http://iiif.io/api/auth/2/probe"  # a compatibility tag for Mirador 4.0, see ``services``
MIN_SECRET_LENGTH = 32
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 16 MiB and 50 ms per check: slow enough, and stdlib
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?", re.ASCII)
_USER = re.compile(r"[A-Za-z0-9._@+-]{1,128}", re.ASCII)
MAX_FORM_BYTES = 4096
TEXT = {
    "label": "Log in to see this image in full",
    "heading": "This image is restricted",
    "note": "Log in with your account to see the full image; without it, a smaller version is shown if there is one.",
    "confirm": "Log in",
    "logout": "Log out",
}


# -- passwords and the users file ---------------------------------------------------------------


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), for the users file."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT, maxmem=64 * 1024 * 1024, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or int(n) > 2**20 or int(r) > 32 or int(p) > 16:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=128 * 1024 * 1024,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class LoginCheck(Protocol):
    """The pluggable check: a user name and password -> the user's name, or None."""

    def __call__(self, user: str, password: str) -> str | None: ...


class UsersFile:
    """Users from a TOML file: ``[users] NAME = "scrypt$..."``; re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: tuple[int, int] | None = None
        self._users: dict[str, str] = {}

    def users(self) -> dict[str, str]:
        try:
            st = os.stat(self.path)
        except OSError:
            return {}
        if (st.st_mtime_ns, st.st_size) != self._version:
            self._users = read_users(self.path)
            self._version = (st.st_mtime_ns, st.st_size)
        return self._users

    def __call__(self, user: str, password: str) -> str | None:
        stored = self.users().get(user)
        if stored is None:
            verify_password(hash_password("x"), password)  # the same time whether the user exists or not
            return None
        return user if verify_password(stored, password) else None


def read_users(path: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    users = data.get("users", {})
    return {str(name): str(value) for name, value in users.items()} if isinstance(users, dict) else {}


def add_user(path: Path, user: str, password: str) -> None:
    """Add or replace ``user`` in the users file (created with mode 0600)."""
    if not _USER.fullmatch(user):
        raise ValueError("user names are 1 to 128 of A-Z a-z 0-9 . _ @ + -")
    users = read_users(path) if path.exists() else {}
    users[user] = hash_password(password)
    lines = ["# iiifserver login users (iiifserver users add NAME); scrypt password hashes", "[users]"]
    lines += [f'"{name}" = "{value}"' for name, value in sorted(users.items())]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


# -- sessions and tokens --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    sid: str
    expires: int


class Signer:
    """HMAC-SHA256 over ``kind|fields``; values are ``fields.mac`` in URL-safe base64."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"iiifserver-auth\0" + secret.encode()).digest()

    def sign(self, kind: str, *fields: str) -> str:
        payload = "|".join(fields)
        mac = hmac.new(self._key, f"{kind}|{payload}".encode(), hashlib.sha256).digest()
        return _b64(payload.encode()) + "." + _b64(mac)

    def open(self, kind: str, value: str) -> list[str] | None:
        body, _, mac = value.partition(".")
        try:
            payload = _unb64(body).decode()
            got = _unb64(mac)
        except ValueError:
            return None
        expected = hmac.new(self._key, f"{kind}|{payload}".encode(), hashlib.sha256).digest()
        return payload.split("|") if hmac.compare_digest(got, expected) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if len(text) > 4096:
        raise ValueError("too long")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


class Auth:
    """The access checks and services of one worker process."""

    def __init__(self, settings: Settings, rules: AccessRules, check: LoginCheck | None = None) -> None:
        self.settings = settings
        self.rules = rules
        secret = settings.auth_secret or secrets.token_urlsafe(32)
        if (
            not settings.auth_secret
            and settings.workers > 1
            and (settings.auth_users_file or settings.auth_trusted_header)
        ):
            # Each worker would sign with its own random secret: a login would hold on one only.
            log.warning("auth_secret is not set: logins to restricted images need it with workers > 1")
        self.signer = Signer(secret)
        if check is None and settings.auth_users_file:
            check = UsersFile(Path(settings.auth_users_file))
        self.check = check
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.header = settings.auth_trusted_header.lower().encode()
        self.origins = frozenset(o.strip().rstrip("/") for o in settings.auth_allowed_origins.split(",") if o.strip())
        self._revoked: dict[str, int] = {}  # sid -> expiry
        self.load: Callable[[], Awaitable[None]] | None = None  # loads the first rules (app wiring)

    # checks

    def new_session(self, user: str) -> tuple[Session, str]:
        session = Session(user, secrets.token_urlsafe(12), int(time.time()) + self.settings.auth_session_seconds)
        return session, self.signer.sign("session", session.user, session.sid, str(session.expires))

    def _session_of(self, fields: list[str] | None) -> Session | None:
        if fields is None or len(fields) != 3:
            return None
        user, sid, expires = fields
        if not expires.isdigit() or int(expires) < time.time() or sid in self._revoked:
            return None
        return Session(user, sid, int(expires))

    def session(self, headers: Mapping[bytes, bytes]) -> Session | None:
        cookie = headers.get(b"cookie")
        if cookie is None:
            return None
        for part in cookie.decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return self._session_of(self.signer.open("session", value))
        return None

    def token(self, session: Session) -> tuple[str, int]:
        expires_in = min(self.settings.auth_token_seconds, max(1, session.expires - int(time.time())))
        value = self.signer.sign(
            "token", session.user, session.sid, str(session.expires), str(int(time.time()) + expires_in)
        )
        return value, expires_in

    def token_session(self, headers: Mapping[bytes, bytes]) -> Session | None:
        """The session an ``Authorization: Bearer`` token was given for, while both are valid."""
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        fields = self.signer.open("token", token.strip())
        if fields is None or len(fields) != 4 or not fields[3].isdigit() or int(fields[3]) < time.time():
            return None
        return self._session_of(fields[:3])

    def proxy_user(self, scope: Mapping[str, Any], headers: Mapping[bytes, bytes]) -> str | None:
        """The user a trusted single sign-on proxy names (``auth_trusted_header``); None from anyone else."""
        if not self.header:
            return None
        client = scope.get("client")
        if client is None or client[0] not in self.trusted:
            return None  # a forged header from elsewhere counts for nothing (attack case F09)
        value = headers.get(self.header, b"").decode("latin-1").strip()
        return value if _USER.fullmatch(value) else None

    def authorized(self, scope: Mapping[str, Any], headers: Mapping[bytes, bytes]) -> bool:
        """Whether the request may see restricted images in full: a session cookie, a token, or the proxy's user."""
        return (
            self.session(headers) is not None
            or (b"authorization" in headers and self.token_session(headers) is not None)
            or self.proxy_user(scope, headers) is not None
        )

    def revoke(self, session: Session) -> None:
        now = time.time()
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.sid] = session.expires

    async def rule(self, path: Hashable) -> Rule | None:
        """``path``'s rule; the first request before the rules were read waits for them."""
        if not self.rules.loaded:
            if self.load is None:
                raise ServiceUnavailable("access rules not loaded yet", retry_after=1)
            await self.load()
        return self.rules.rules.get(path)

    # descriptions

    def services(self, root: str, identifier: str) -> list[dict[str, Any]]:
        """The services of a restricted image: 2.0's probe (access, token, logout nested) and 1.0's login."""
        return [
            {
                "id": f"{root}/auth/2/probe/{encode_identifier(identifier)}",
                "type": "AuthProbeService2",
                # Not in Authorization Flow 2.0: Mirador 4.0 reads every service's ``profile`` as
                # text (``getProfile().match(...)``) and stops on one without (docs/access.md).
                "profile": PROBE_PROFILE,
                "service": [
                    {
                        "id": f"{root}/auth/login",
                        "type": "AuthAccessService2",
                        "profile": "active",
                        "label": {"en": [TEXT["label"]]},
                        "heading": {"en": [TEXT["heading"]]},
                        "note": {"en": [TEXT["note"]]},
                        "confirmLabel": {"en": [TEXT["confirm"]]},
                        "service": [
                            {"id": f"{root}/auth/2/token", "type": "AuthAccessTokenService2"},
                            {
                                "id": f"{root}/auth/logout",
                                "type": "AuthLogoutService2",
                                "label": {"en": [TEXT["logout"]]},
                            },
                        ],
                    }
                ],
            },
            {
                "@context": AUTH_CONTEXT_1,
                "@id": f"{root}/auth/login",
                "@type": "AuthCookieService1",
                "profile": "http://iiif.io/api/auth/1/login",
                "label": TEXT["label"],
                "header": TEXT["heading"],
                "description": TEXT["note"],
                "confirmLabel": TEXT["confirm"],
                "failureHeader": "Login failed",
                "failureDescription": "The user name or password was not accepted.",
                "service": [
                    {
                        "@id": f"{root}/auth/1/token",
                        "@type": "AuthTokenService1",
                        "profile": "http://iiif.io/api/auth/1/token",
                    },
                    {
                        "@id": f"{root}/auth/logout",
                        "@type": "AuthLogoutService1",
                        "profile": "http://iiif.io/api/auth/1/logout",
                        "label": TEXT["logout"],
                    },
                ],
            },
        ]

    def valid_origin(self, origin: str) -> bool:
        return bool(_ORIGIN.fullmatch(origin)) and (not self.origins or origin in self.origins)

    # routes

    def routes(self, find: Callable[[str], Awaitable[Any]]) -> list[Route]:
        """``find``: identifier -> the image's ``KnownSource`` (raises ``IIIFError`` when there is none)."""

        async def login(request: Request) -> Response:
            origin = request.query_params.get("origin", "")
            headers = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()}
            user = self.proxy_user(request.scope, headers)
            error = ""
            if user is None and request.method == "POST":
                body = await request.body()
                if len(body) > MAX_FORM_BYTES:
                    return _page("Login", "<p>Form too large.</p>", status=413)
                form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                origin = form.get("origin", origin)
                if self.check is not None:
                    user = await _off_loop(self.check, form.get("user", ""), form.get("password", ""))
                error = "" if user is not None else "The user name or password was not accepted."
            if user is not None:
                _, cookie = self.new_session(user)
                response = _page(
                    "Logged in", f"<p>Logged in as {html.escape(user)}. This window can be closed.</p>", close=True
                )
                response.set_cookie(SESSION_COOKIE, cookie, **self._cookie_flags(request))
                return response
            if self.check is None:
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
            headers = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()}
            session = self.session(headers)
            if session is None:
                user = self.proxy_user(request.scope, headers)
                session = self.new_session(user)[0] if user is not None else None
            if version == "1" and not message_id:  # 1.0's JSON form (no window)
                if session is None:
                    return _json({"error": "missingCredentials", "description": "Not logged in."}, 401)
                value, expires_in = self.token(session)
                return _json({"accessToken": value, "expiresIn": expires_in})
            if not self.valid_origin(origin):
                # Never posted anywhere but the origin the viewer gave; a bad one gets no token.
                target = origin if _ORIGIN.fullmatch(origin) else ""
                return _message(_error(version, "invalidOrigin", message_id), target)
            if session is None:
                return _message(_error(version, "missingAspect", message_id), origin)
            value, expires_in = self.token(session)
            body: dict[str, Any] = {"accessToken": value, "expiresIn": expires_in, "messageId": message_id}
            if version == "2":
                body = {"@context": AUTH_CONTEXT_2, "type": "AuthAccessToken2", **body}
            return _message(body, origin)

        async def probe(request: Request) -> Response:
            raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
            segment = raw.rpartition(b"/")[2]
            headers = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()}
            result: dict[str, Any] = {"@context": AUTH_CONTEXT_2, "type": "AuthProbeResult2"}
            try:
                identifier = decode_identifier(segment)
                known = await find(identifier)
                rule = await self.rule(known.file.path)
            except IIIFError as exc:
                return _json({**result, "status": exc.status}, cors=True)
            session = self.token_session(headers)
            if rule is None or session is not None or self.proxy_user(request.scope, headers) is not None:
                return _json({**result, "status": 200}, cors=True)
            result.update(status=401, heading={"en": [TEXT["heading"]]}, note={"en": [TEXT["note"]]})
            if rule.degraded_max is not None:
                root = scope_base(request.scope, self.settings)
                degraded = encode_identifier(identifier + DEGRADED_SUFFIX)
                result["substitute"] = [{"id": f"{root}/iiif/3/{degraded}", "type": "ImageService3"}]
            return _json(result, cors=True)

        async def logout(request: Request) -> Response:
            headers = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()}
            session = self.session(headers)
            if session is not None:
                self.revoke(session)
            response = _page("Logged out", "<p>You are logged out. This window can be closed.</p>", close=True)
            response.delete_cookie(SESSION_COOKIE, path="/", **self._delete_flags(request))
            return response

        return [
            Route("/auth/login", login, methods=["GET", "POST"]),
            Route("/auth/{version:str}/token", token, methods=["GET"]),
            Route("/auth/2/probe/{identifier:path}", probe, methods=["GET"]),
            Route("/auth/logout", logout, methods=["GET"]),
        ]

    def _https(self, request: Request) -> bool:
        return scope_base(request.scope, self.settings).startswith("https://")

    def _cookie_flags(self, request: Request) -> dict[str, Any]:
        flags: dict[str, Any] = {"max_age": self.settings.auth_session_seconds, "path": "/", "httponly": True}
        return {**flags, **self._delete_flags(request)}

    def _delete_flags(self, request: Request) -> dict[str, Any]:
        # Viewers on other sites load our images: the cookie must be sent cross-site, which
        # browsers allow only for Secure cookies over https. Over plain http (a laptop), Lax.
        if self._https(request):
            return {"secure": True, "samesite": "none", "httponly": True}
        return {"samesite": "lax", "httponly": True}


class ManifestServices:
    """``presentation.access.ManifestAccess``: restricted pages in manifests. The image (the
    canvas's content resource) gets the 2.0 probe service beside its image services, and those
    get the 1.0 login service; a thumbnail of a restricted image shows its degraded tier, or is
    left out when it has none. The manifest's ``@context`` puts Authorization Flow 2.0's first."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def key(self, identifiers: Sequence[str]) -> str:
        rules = self.auth.rules.by_identifier
        return "|".join(f"{i}={rules[i].degraded_max}" for i in identifiers if i in rules)

    def apply(self, document: dict[str, Any], pages: Sequence[str], base: str) -> None:
        rules = self.auth.rules.by_identifier
        restricted = {i: rules[i] for i in pages if i in rules}
        if not restricted:
            return
        document["@context"] = [AUTH_CONTEXT_2, *_as_list(document.get("@context"))]
        thumbnails: dict[str, Rule] = {}
        for canvas, identifier in zip(document.get("items", []), pages, strict=False):
            rule = restricted.get(identifier)
            if rule is None:
                continue
            probe, login_1 = self.auth.services(base, identifier)
            for page in canvas.get("items", []):
                for annotation in page.get("items", []):
                    body = annotation.get("body", {})
                    services = body.get("service", [])
                    for service in services:
                        service["service"] = [*service.get("service", []), login_1]
                    body["service"] = [probe, *services]
            thumbnails[f"{base}/iiif/3/{encode_identifier(identifier)}"] = rule
        for holder in (document, *document.get("items", [])):
            kept = []
            for thumbnail in holder.get("thumbnail", []):
                service_id = next((s.get("id") for s in thumbnail.get("service", [])), None)
                rule = thumbnails.get(service_id or "")
                if rule is None:
                    kept.append(thumbnail)
                elif rule.degraded_max is not None:
                    kept.append(_degraded_thumbnail(thumbnail, service_id or "", rule.degraded_max))
            if "thumbnail" in holder:
                if kept:
                    holder["thumbnail"] = kept
                else:
                    del holder["thumbnail"]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _degraded_thumbnail(thumbnail: dict[str, Any], service_id: str, degraded_max: int) -> dict[str, Any]:
    """The thumbnail from the degraded tier: its whole image, at most ``degraded_max`` on its longer side."""
    w, h = int(thumbnail.get("width") or 1), int(thumbnail.get("height") or 1)
    scale = min(1.0, degraded_max / max(w, h))
    w, h = max(1, int(w * scale)), max(1, int(h * scale))
    degraded = service_id + DEGRADED_SUFFIX
    return {
        **thumbnail,
        "id": f"{degraded}/full/{w},{h}/0/default.jpg",
        "width": w,
        "height": h,
        "service": [{"id": degraded, "type": "ImageService3", "profile": "level2"}],
    }


async def _off_loop(check: LoginCheck, user: str, password: str) -> str | None:
    import asyncio

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


def _json(body: dict[str, Any], status: int = 200, *, cors: bool = False) -> Response:
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
