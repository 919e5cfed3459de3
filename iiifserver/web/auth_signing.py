"""Signed values: a few text fields and an HMAC over them, for the session cookie and access tokens.

Owns: ``Signer`` (HMAC-SHA256 with a key derived from ``auth_secret``, over the value's kind and
its fields) and the value's form, ``fields.mac`` in unpadded URL-safe base64.
Must not know: HTTP, what the fields mean, expiry (a field like any other to this module).

Why the kind is signed: a value signed as one kind (a session) never opens as another (a token),
though both carry the same fields first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_MAX_PART = 4096  # characters of one base64 part: longer is no value of ours, and not worth decoding


class Signer:
    """HMAC-SHA256 over ``kind|fields``; values are ``fields.mac`` in URL-safe base64."""

    def __init__(self, secret: str) -> None:
        # Derived, so that the same secret used elsewhere gives another key here.
        self._key = hashlib.sha256(b"iiifserver-auth\0" + secret.encode()).digest()

    def sign(self, kind: str, *fields: str) -> str:
        """The signed value of ``fields`` as a ``kind`` (a field holding ``|`` would open as two)."""
        payload = "|".join(fields)
        mac = hmac.new(self._key, f"{kind}|{payload}".encode(), hashlib.sha256).digest()
        return _b64(payload.encode()) + "." + _b64(mac)

    def open(self, kind: str, value: str) -> list[str] | None:
        """The fields of ``value`` if this signer signed it as a ``kind``; else None."""
        body, _, mac = value.partition(".")
        try:
            payload = _unb64(body).decode()
            got = _unb64(mac)
        except ValueError:  # UnicodeDecodeError included
            return None
        expected = hmac.new(self._key, f"{kind}|{payload}".encode(), hashlib.sha256).digest()
        return payload.split("|") if hmac.compare_digest(got, expected) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if len(text) > _MAX_PART:
        raise ValueError("too long")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
