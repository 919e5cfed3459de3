"""Login users (``web.auth_users``): scrypt password hashes, the users file, ``iiifserver users add``."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from iiifserver.web.auth_users import USER_NAME, UsersFile, add_user, hash_password, read_users, verify_password


def test_users_file_hashes_with_scrypt(tmp_path: Path) -> None:
    # A password no base64 text can contain (the space), so its absence from the hash is no luck.
    stored = hash_password("pw pw")
    assert stored.startswith("scrypt$")
    assert "pw pw" not in stored
    assert verify_password(stored, "pw pw")
    assert not verify_password(stored, "pW pw")
    assert not verify_password("garbage", "pw pw")
    path = tmp_path / "u.toml"
    add_user(path, "bob", "pw")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="user names"):
        add_user(path, "bad name", "pw")


def test_hashes_are_salted() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second
    assert verify_password(first, "same")
    assert verify_password(second, "same")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s.replace("scrypt$", "bcrypt$", 1),  # another kind
        lambda s: s + "$extra",  # a field too many
        lambda s: s.rpartition("$")[0],  # a field too few
        lambda s: s.replace("$16384$", "$many$", 1),  # n not a number
        lambda s: s.replace("$16384$", "$1000$", 1),  # n not a power of two: scrypt refuses it
        lambda s: s.rpartition("$")[0] + "$abcde",  # a digest that is no base64
        lambda s: "$".join([*s.split("$")[:4], "abcde", s.split("$")[5]]),  # a salt that is no base64
    ],
)
def test_verify_password_refuses_malformed_hashes(mangle: Callable[[str], str]) -> None:
    stored = hash_password("pw")
    malformed = mangle(stored)
    assert malformed != stored
    assert verify_password(malformed, "pw") is False


def _stored(password: str, n: int, r: int, p: int) -> str:
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=16)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_verify_password_uses_the_stored_parameters() -> None:
    # A hash made with other (cheaper) parameters and length still checks: the stored ones are used.
    stored = _stored("pw", n=2**10, r=4, p=2)
    assert verify_password(stored, "pw")
    assert not verify_password(stored, "pw2")


@pytest.mark.parametrize(("r", "p"), [(33, 1), (1, 17)])
def test_verify_password_refuses_costly_parameters(r: int, p: int) -> None:
    # The right password in a valid hash, but at a cost over the bounds: a users file must not
    # make one login take gigabytes or minutes.
    assert verify_password(_stored("pw", n=16, r=r, p=p), "pw") is False
    assert verify_password(_stored("pw", n=16, r=min(r, 32), p=min(p, 16)), "pw") is True


def test_users_file_with_a_bad_hash_line(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "ann", "pw")
    with path.open("a") as f:
        f.write('"eve" = "not-a-hash"\n"mallory" = ""\n')
    check = UsersFile(path)
    assert set(check.users()) == {"ann", "eve", "mallory"}
    assert check("eve", "not-a-hash") is None  # the stored text is no password
    assert check("mallory", "") is None
    assert check("ann", "pw") == "ann"  # the others still log in


def test_users_file_missing_and_changed(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    check = UsersFile(path)
    assert check.users() == {}
    assert check("ann", "pw") is None
    add_user(path, "ann", "pw")
    assert check("ann", "pw") == "ann"  # the new file is read
    add_user(path, "ann", "new")
    assert check("ann", "pw") is None  # and re-read when it changes
    assert check("ann", "new") == "ann"
    path.unlink()
    assert check("ann", "new") is None


def test_read_users_without_a_users_table(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text('users = "ann"\n')
    assert read_users(path) == {}
    path.write_text("[other]\nann = 1\n")
    assert read_users(path) == {}


def test_a_name_outside_the_rule_cannot_log_in_and_stays_in_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand-edited users file may hold a name ``users add`` refuses: a ``|`` in it would split the
    signed session value made at login into other fields, so the session would never open. Such a
    user cannot log in (warned, by name); the entry stays in the file when another user is added."""
    path = tmp_path / "users.toml"
    add_user(path, "ann", "a")
    stored = hash_password("pw")
    with path.open("a") as f:
        f.write(f'"a|b" = "{stored}"\n"{"x" * 129}" = "{stored}"\n"q\\"uote\\\\d" = "{stored}"\n')
    check = UsersFile(path)
    with caplog.at_level(logging.WARNING, logger="iiifserver.web.auth_users"):
        assert check("a|b", "pw") is None
    assert set(check.users()) == {"ann"}
    assert check("ann", "a") == "ann"
    warned = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(warned) == 3
    assert "'a|b'" in warned[0]
    add_user(path, "bob", "b")
    text = path.read_text()
    assert f'"a|b" = "{stored}"' in text  # nothing the operator wrote is lost
    assert set(read_users(path)) == {"ann", "bob"}
    with path.open("rb") as f:  # and the file is still TOML, the odd names as they were
        assert set(tomllib.load(f)["users"]) == {"ann", "bob", "a|b", "x" * 129, 'q"uote\\d'}


def test_add_user_keeps_the_others_and_replaces_in_place(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "ann", "a")
    add_user(path, "bob", "b")
    ann_before = read_users(path)["ann"]
    add_user(path, "bob", "b2")
    users = read_users(path)
    assert set(users) == {"ann", "bob"}
    assert users["ann"] == ann_before
    assert verify_password(users["bob"], "b2")
    assert not verify_password(users["bob"], "b")
    assert os.listdir(tmp_path) == ["users.toml"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("name", "valid"),
    [("ann", True), ("a.b_c@d+e-f", True), ("x" * 128, True), ("x" * 129, False), ("", False), ("a|b", False)],
)
def test_user_names(name: str, valid: bool) -> None:
    assert bool(USER_NAME.fullmatch(name)) is valid


def test_cli_users_add(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from iiifserver.cli import main

    path = tmp_path / "users.toml"
    result = CliRunner().invoke(main, ["users", "add", "ann", "--file", str(path)], input="pw one\npw one\n")
    assert result.exit_code == 0, result.output
    assert "pw one" not in path.read_text()  # the space: no base64 hash can contain it by chance
    check = UsersFile(path)
    assert check("ann", "pw one") == "ann"
    assert check("ann", "pw two") is None
    assert check("bob", "pw one") is None
    mismatch = CliRunner().invoke(main, ["users", "add", "bob", "--file", str(path)], input="a\nb\na\na\n")
    assert mismatch.exit_code == 0  # asked again until both match
    assert UsersFile(path)("bob", "a") == "bob"
    refused = CliRunner().invoke(main, ["users", "add", "bad name", "--file", str(path)], input="a\na\n")
    assert refused.exit_code == 2
