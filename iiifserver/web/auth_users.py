"""Login users of restricted images: password hashes, the users file and the pluggable login check.

Owns: password hashes (``hashlib.scrypt``, ``scrypt$n$r$p$salt$hash``), the users file (TOML:
``[users] NAME = "scrypt$..."``, written with mode 0600, re-read when it changes), the rule for
user names, and ``LoginCheck``, the check a login form's user name and password go through.
Must not know: HTTP, sessions, tokens, access rules.

Why here: ``iiifserver users add`` writes the file and the login route reads it; both take it
from this module, so the CLI needs nothing of the web side's sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

USER_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,128}", re.ASCII)  # also the names a trusted proxy may give
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 16 MiB and 50 ms per check: slow enough, and stdlib


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), for the users file."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT, maxmem=64 * 1024 * 1024, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed hash or one too costly to check."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        # Bounds on the cost: a users file must not make one login take gigabytes or minutes.
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
        """The users by name; none while the file is missing."""
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
    """The ``[users]`` table of the file at ``path``: name -> stored hash, for names within
    ``USER_NAME``. Another name (a hand-edited file) is left out, with a warning: it cannot log
    in, as a session signed for it would not read back (a ``|`` splits a signed value's fields)."""
    users = {}
    for name, value in _users_table(path).items():
        if USER_NAME.fullmatch(name):
            users[name] = value
        else:
            log.warning("users file %s: user %r left out (names are 1 to 128 of A-Z a-z 0-9 . _ @ + -)", path, name)
    return users


def _users_table(path: Path) -> dict[str, str]:
    """The ``[users]`` table as the file has it, every name."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    users = data.get("users", {})
    return {str(name): str(value) for name, value in users.items()} if isinstance(users, dict) else {}


def add_user(path: Path, user: str, password: str) -> None:
    """Add or replace ``user`` in the users file (created with mode 0600)."""
    if not USER_NAME.fullmatch(user):
        raise ValueError("user names are 1 to 128 of A-Z a-z 0-9 . _ @ + -")
    users = _users_table(path) if path.exists() else {}  # a name left out at login stays in the file
    users[user] = hash_password(password)
    lines = ["# iiifserver login users (iiifserver users add NAME); scrypt password hashes", "[users]"]
    # JSON's string escapes are TOML's basic-string ones: a hand-written name with a quote or a
    # backslash is written back as it was read.
    lines += [f"{json.dumps(name)} = {json.dumps(value)}" for name, value in sorted(users.items())]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)  # readers see the old file or the new one, never half of it
