"""Helpers of the disk tier's tests: keys, entries, where their files are, and ways to damage one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from iiifserver.cache.disk_format import HEADER
from iiifserver.cache.entry import Entry
from iiifserver.cache.keys import identifier_digest

HOUR = 3600


def key(n: int) -> str:
    return f"{n:040x}"


def entry(size: int = 1_000, identifier: str = "img", fill: bytes = b"x") -> Entry:
    return Entry((fill * size)[:size], "image/jpeg", identifier)


def file_size(e: Entry) -> int:
    return HEADER.size + len(e.media_type) + len(e.body)


def entry_path(root: Path, identifier: str, k: str) -> Path:
    digest = identifier_digest(identifier)
    return root / "v2" / digest[:2] / digest / k


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob("*.tmp"))


# What can become of an entry file of at least 2,000 bytes: each must read as no entry at all.
DAMAGES: list[object] = [
    pytest.param(lambda data: data[:-1], id="truncated-body"),
    pytest.param(lambda data: data[:10], id="truncated-header"),
    pytest.param(lambda data: b"", id="empty"),
    pytest.param(lambda data: data + b"\0", id="trailing-bytes"),
    pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="flipped-bit"),
    pytest.param(lambda data: b"JUNKJUNK" + data[8:], id="bad-magic"),
    # What a crash can leave of a write renamed before its data reached the disk (writes are
    # not fsynced): the file's full length, its blocks zeros.
    pytest.param(lambda data: bytes(len(data)), id="all-zeros"),
    pytest.param(lambda data: data[:100] + bytes(len(data) - 100), id="zeroed-body"),
]

Damage = Callable[[bytes], bytes]
