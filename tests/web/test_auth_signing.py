"""Signed values (``web.auth_signing``): what opens, and every way a value is refused."""

from __future__ import annotations

import base64

import pytest

from iiifserver.web.auth_signing import Signer

SECRET = "s" * 40


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip() -> None:
    signer = Signer(SECRET)
    value = signer.sign("session", "ann", "sid-1", "1700000000")
    assert signer.open("session", value) == ["ann", "sid-1", "1700000000"]
    assert Signer(SECRET).open("session", value) == ["ann", "sid-1", "1700000000"]  # same secret, other worker
    body, _, mac = value.partition(".")
    assert "=" not in value
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == b"ann|sid-1|1700000000"
    assert len(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))) == 32  # SHA-256


def test_another_kind_does_not_open() -> None:
    # A session cookie is no token, though it carries the same first fields.
    signer = Signer(SECRET)
    value = signer.sign("session", "ann", "sid", "1700000000")
    assert signer.open("token", value) is None


def test_another_secret_does_not_open() -> None:
    value = Signer("t" * 40).sign("session", "ann", "sid", "1700000000")
    assert Signer(SECRET).open("session", value) is None


def test_tampered_fields_do_not_open() -> None:
    signer = Signer(SECRET)
    value = signer.sign("session", "ann", "sid", "1700000000")
    _, _, mac = value.partition(".")
    longer = _b64(b"ann|sid|9999999999") + "." + mac  # a later expiry, the old signature
    other_user = _b64(b"bob|sid|1700000000") + "." + mac
    assert signer.open("session", longer) is None
    assert signer.open("session", other_user) is None


def test_tampered_signature_does_not_open() -> None:
    signer = Signer(SECRET)
    value = signer.sign("session", "ann", "sid", "1700000000")
    body, _, mac = value.partition(".")
    flipped = bytearray(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)))
    flipped[0] ^= 1
    assert signer.open("session", body + "." + _b64(bytes(flipped))) is None
    assert signer.open("session", body + "." + mac[:-2]) is None  # truncated
    assert signer.open("session", body) is None  # no signature at all
    assert signer.open("session", body + ".") is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "not base64!.AAAA",
        "A.B",  # a single base64 character is no byte
        _b64(b"\xff\xfe|sid") + "." + _b64(b"x" * 32),  # not UTF-8
    ],
)
def test_malformed_values_do_not_open(value: str) -> None:
    assert Signer(SECRET).open("session", value) is None


def test_too_long_values_do_not_open() -> None:
    # Longer than any value of ours: refused before decoding, even with a good signature.
    signer = Signer(SECRET)
    at_bound = signer.sign("k", "x" * 3072)  # 4096 base64 characters
    over = signer.sign("k", "x" * 3073)
    assert len(at_bound.partition(".")[0]) == 4096
    assert signer.open("k", at_bound) == ["x" * 3072]
    assert signer.open("k", over) is None


def test_no_field_and_one_field() -> None:
    signer = Signer(SECRET)
    assert signer.open("k", signer.sign("k")) == [""]
    assert signer.open("k", signer.sign("k", "only")) == ["only"]
    assert signer.open("k", signer.sign("k", "a|b")) == ["a", "b"]  # the separator is not escaped
