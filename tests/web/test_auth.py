"""The access check (``web.auth.Auth``) without HTTP: sessions, tokens, revocation, the trusted header
and the viewer-origin check. The flows through the routes are in ``test_access.py``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from iiifserver.config import Settings
from iiifserver.image.access import AccessRules
from iiifserver.web.auth import SESSION_COOKIE, Auth
from iiifserver.web.auth_signing import Signer

SECRET = "s" * 40
TRUSTED = "10.9.8.7"


def _auth(**settings: Any) -> Auth:
    values: dict[str, Any] = {"auth_secret": SECRET, "trusted_proxies": TRUSTED, **settings}
    return Auth(Settings(**values), AccessRules())


def _cookie(value: str) -> dict[bytes, bytes]:
    return {b"cookie": f"other=1; {SESSION_COOKIE}={value}".encode()}


def _bearer(value: str) -> dict[bytes, bytes]:
    return {b"authorization": f"Bearer {value}".encode()}


def test_session_cookie_opens_while_valid() -> None:
    auth = _auth()
    session, cookie = auth.new_session("ann")
    assert auth.session(_cookie(cookie)) == session
    assert _auth().session(_cookie(cookie)) == session  # another worker with the same secret
    assert _auth(auth_secret="t" * 40).session(_cookie(cookie)) is None
    assert auth.session({}) is None
    assert auth.session({b"cookie": f"other={cookie}".encode()}) is None  # another cookie's name


def test_expired_and_revoked_sessions() -> None:
    auth = _auth()
    past = str(int(time.time()) - 5)
    assert auth.session(_cookie(auth.signer.sign("session", "ann", "sid", past))) is None
    assert auth.session(_cookie(auth.signer.sign("session", "ann", "sid", "soon"))) is None
    assert auth.session(_cookie(auth.signer.sign("session", "ann", "sid"))) is None  # a field short
    session, cookie = auth.new_session("ann")
    auth.revoke(session)
    assert auth.session(_cookie(cookie)) is None
    _, other = auth.new_session("ann")
    assert auth.session(_cookie(other)) is not None  # only that session


def test_token_is_bound_to_its_session() -> None:
    auth = _auth(auth_token_seconds=60)
    session, cookie = auth.new_session("ann")
    value, expires_in = auth.token(session)
    assert expires_in == 60
    assert auth.token_session(_bearer(value)) == session
    assert auth.token_session({b"authorization": f"Basic {value}".encode()}) is None
    assert auth.token_session(_cookie(value)) is None
    assert auth.session(_cookie(value)) is None  # a token is no session cookie
    assert auth.token_session(_bearer(cookie)) is None  # nor a session cookie a token
    auth.revoke(session)
    assert auth.token_session(_bearer(value)) is None  # logout ends its tokens too


def test_expired_token() -> None:
    auth = _auth()
    session, _ = auth.new_session("ann")
    past = str(int(time.time()) - 5)
    expired = auth.signer.sign("token", session.user, session.sid, str(session.expires), past)
    assert auth.token_session(_bearer(expired)) is None
    # A token still valid for a session that has ended: refused as well.
    later = str(int(time.time()) + 60)
    ended = auth.signer.sign("token", session.user, session.sid, str(int(time.time()) - 5), later)
    assert auth.token_session(_bearer(ended)) is None


def test_token_never_outlives_its_session() -> None:
    auth = _auth(auth_token_seconds=600, auth_session_seconds=30)
    session, _ = auth.new_session("ann")
    _, expires_in = auth.token(session)
    assert 1 <= expires_in <= 30


def test_proxy_user_only_from_trusted_proxies() -> None:
    auth = _auth(auth_trusted_header="X-Remote-User")
    named = {b"x-remote-user": b"ann"}
    assert auth.proxy_user({"client": (TRUSTED, 1234)}, named) == "ann"
    assert auth.proxy_user({"client": ("203.0.113.9", 1234)}, named) is None
    assert auth.proxy_user({}, named) is None
    assert auth.proxy_user({"client": (TRUSTED, 1234)}, {b"x-remote-user": b"not a name"}) is None
    assert _auth().proxy_user({"client": (TRUSTED, 1234)}, named) is None  # the mode is off
    assert auth.authorized({"client": (TRUSTED, 1234)}, named)
    assert not auth.authorized({"client": ("203.0.113.9", 1234)}, named)


@pytest.mark.parametrize(
    ("allowed", "origin", "valid"),
    [
        ("", "https://viewer.example", True),
        ("", "http://localhost:8080", True),
        ("", "javascript:alert(1)", False),
        ("", "https://viewer.example/path", False),
        ("", "*", False),
        ("https://a.example, https://b.example/", "https://b.example", True),
        ("https://a.example", "https://c.example", False),
    ],
)
def test_valid_origin(allowed: str, origin: str, valid: bool) -> None:
    assert _auth(auth_allowed_origins=allowed).valid_origin(origin) is valid


def test_signer_is_the_configured_secret() -> None:
    auth = _auth()
    value = Signer(SECRET).sign("session", "ann", "sid", str(int(time.time()) + 60))
    assert auth.session(_cookie(value)) is not None
