"""identifier -> file resolution (containment is covered end to end in tests/web/test_attack_cases.py)
and the version cache that lets hot requests skip the stat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iiifserver.errors import NotFound
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.sources import FilesystemSource, SourceFile, VersionCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def file(identifier: str, inode: int = 1) -> SourceFile:
    return SourceFile(identifier, Path(f"/images/{identifier}.tif"), SourceVersion(inode, 10, 20))


def test_version_cache_trusts_a_file_for_the_interval() -> None:
    clock = Clock()
    cache = VersionCache(1.0, clock=clock)
    assert cache.get("a") is None
    cache.put(file("a"))
    clock.now += 0.99
    assert cache.get("a") == file("a")
    clock.now += 0.02
    assert cache.get("a") is None  # expired: the caller stats again
    cache.put(file("a", inode=2))
    assert cache.get("a") == file("a", inode=2)


def test_version_cache_lookup_says_when_to_recheck_in_the_background() -> None:
    clock = Clock()
    cache = VersionCache(1.0, clock=clock, random=lambda: 0.0)  # due after half the interval
    assert cache.lookup("a") == (None, False)
    cache.put(file("a"))
    assert cache.lookup("a") == (file("a"), False)
    clock.now += 0.49
    assert cache.lookup("a") == (file("a"), False)
    clock.now += 0.02
    assert cache.lookup("a") == (file("a"), True)  # still trusted, but due for a re-check
    clock.now += 0.5
    assert cache.lookup("a") == (None, False)  # expired: the caller must check before serving
    cache.put(file("a", inode=2))
    assert cache.lookup("a") == (file("a", inode=2), False)
    assert VersionCache(0.0).lookup("a") == (None, False)


@pytest.mark.parametrize(("draw", "due_after"), [(0.0, 0.5), (0.5, 0.7), (0.999, 0.8996)])
def test_version_cache_spreads_due_times_over_half_to_nine_tenths(draw: float, due_after: float) -> None:
    clock = Clock()
    cache = VersionCache(1.0, clock=clock, random=lambda: draw)
    cache.put(file("a"))
    clock.now += due_after - 0.001
    assert cache.lookup("a") == (file("a"), False)
    clock.now += 0.002
    assert cache.lookup("a") == (file("a"), True)


def test_version_cache_zero_interval_never_trusts() -> None:
    cache = VersionCache(0.0)
    cache.put(file("a"))
    assert cache.get("a") is None


def test_version_cache_forget_and_bound() -> None:
    cache = VersionCache(10.0, maxsize=2)
    for name in ("a", "b", "c"):
        cache.put(file(name))
    assert cache.get("a") is None  # evicted, least recently used
    cache.forget("b")
    assert cache.get("b") is None
    assert cache.get("c") is not None
    cache.forget()
    assert cache.get("c") is None


def test_resolve_with_and_without_extension(tmp_path: Path) -> None:
    (tmp_path / "pic.tif").write_bytes(b"II*\x00")
    source = FilesystemSource(tmp_path)
    a, b = source.resolve("pic"), source.resolve("pic.tif")
    assert a.path == b.path == (tmp_path / "pic.tif").resolve()
    st = os.stat(tmp_path / "pic.tif")
    assert a.version == SourceVersion(st.st_ino, st.st_size, st.st_mtime_ns)
    with pytest.raises(NotFound):
        source.resolve("pic.png")
