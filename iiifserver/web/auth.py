"""Who may see restricted images in full: login sessions, access tokens and the trusted header.

Owns: ``Auth``, the access check of one worker process: login sessions (signed, expiring values
for the session cookie) and their revocation on logout, access tokens (signed, expiring, bound to
the session), the trusted-header mode (a single sign-on proxy names the user; believed only from
``trusted_proxies``), the viewer-origin check of the token services, waiting for the first access
rules, and the service descriptions of a restricted image (IIIF Authorization Flow 2.0 and the
Authentication API 1.0 beside it) that its info.json and manifests carry.
Must not know: descriptions (the rules come from ``image.access``), image rendering, caches, the
routes under ``/auth/`` (``web.auth_routes``), how passwords are hashed and kept (``web.auth_users``).

Tokens and sessions are stateless (an HMAC over their content with ``auth_secret``,
``web.auth_signing``); logout adds the session to a per-process list of revoked sessions kept
until they would expire anyway.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iiifserver.config import Settings, TrustedProxies
from iiifserver.errors import ServiceUnavailable
from iiifserver.image.access import AccessRules, Rule
from iiifserver.image.request import encode_identifier
from iiifserver.web.auth_signing import Signer
from iiifserver.web.auth_users import USER_NAME, LoginCheck, UsersFile

log = logging.getLogger(__name__)
AUTH_CONTEXT_2 = "http://iiif.io/api/auth/2/context.json"
AUTH_CONTEXT_1 = "http://iiif.io/api/auth/1/context.json"
SESSION_COOKIE = "iiifserver_session"
PROBE_PROFILE = "http://iiif.io/api/auth/2/probe"  # a compatibility tag for Mirador 4.0, see ``services``
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?", re.ASCII)  # a viewer's origin, as a token page takes it
TEXT = {
    "label": "Log in to see this image in full",
    "heading": "This image is restricted",
    "note": "Log in with your account to see the full image; without it, a smaller version is shown if there is one.",
    "confirm": "Log in",
    "logout": "Log out",
}


@dataclass(frozen=True, slots=True)
class Session:
    """A login: who, the session's id (what logout revokes), and until when (Unix seconds)."""

    user: str
    sid: str
    expires: int


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
        """A new session of ``user`` and its cookie value."""
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
        """The session of the request's cookie, while it is valid."""
        cookie = headers.get(b"cookie")
        if cookie is None:
            return None
        for part in cookie.decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return self._session_of(self.signer.open("session", value))
        return None

    def token(self, session: Session) -> tuple[str, int]:
        """An access token of ``session`` and its lifetime in seconds (never past the session's end)."""
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
        return value if USER_NAME.fullmatch(value) else None

    def authorized(self, scope: Mapping[str, Any], headers: Mapping[bytes, bytes]) -> bool:
        """Whether the request may see restricted images in full: a session cookie, a token, or the proxy's user."""
        return (
            self.session(headers) is not None
            or (b"authorization" in headers and self.token_session(headers) is not None)
            or self.proxy_user(scope, headers) is not None
        )

    def revoke(self, session: Session) -> None:
        """Refuse ``session`` from now on (logout); the expired ones are forgotten meanwhile."""
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
        """Whether a token may be posted to ``origin``: well formed, and allowed (``auth_allowed_origins``)."""
        return bool(ORIGIN.fullmatch(origin)) and (not self.origins or origin in self.origins)
