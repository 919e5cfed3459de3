"""identifier -> file resolution (containment is covered end to end in tests/web/test_attack_cases.py)
and the version cache that lets hot requests skip the stat."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from iiifserver.errors import NotFound, ServiceUnavailable, SourceChanged
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.sources import FilesystemSource, SourceFile, VersionCache, raise_if_changed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def file(identifier: str, inode: int = 1) -> SourceFile:
    return SourceFile(identifier, Path(f"/images/{identifier}.tif"), SourceVersion(inode, 10, 20, 30))


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


def test_version_cache_in_use_names_what_a_keeper_rechecks() -> None:
    """Identifiers looked up within the window whose check is half an interval old (expired ones
    too); uses older than the window are forgotten, and so are identifiers never found."""
    clock = Clock()
    cache = VersionCache(1.0, clock=clock)
    for name in ("a", "b", "c"):
        cache.put(file(name))
    cache.lookup("a")
    cache.lookup("b")
    cache.lookup("nowhere")  # not cached: not a use
    assert cache.in_use(10.0) == []  # checked just now
    assert cache.in_use_count() == 2
    clock.now += 0.5
    assert sorted(cache.in_use(10.0)) == ["a", "b"]  # "c" was never asked for
    cache.put(file("a"))  # re-checked
    assert cache.in_use(10.0) == ["b"]
    clock.now += 5.0
    cache.lookup("a")  # expired, but asked for: still in use
    assert sorted(cache.in_use(3.0)) == ["a"]  # "b" idle for 5.5 s: forgotten
    assert cache.in_use_count() == 1
    cache.forget("a")
    assert cache.in_use_count() == 0


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
    assert a.version == SourceVersion.of(st)
    with pytest.raises(NotFound):
        source.resolve("pic.png")


def rewrite_in_place_keeping_mtime(path: Path, data: bytes) -> None:
    """Same inode, same size, mtime set back: what ``cp -p``/``rsync -t`` onto a file can leave."""
    before = path.stat()
    time.sleep(0.05)  # past the kernel's coarse timestamp granularity
    with open(path, "r+b") as file:
        file.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_in_place_rewrite_with_mtime_restored_is_a_new_version(tmp_path: Path) -> None:
    (tmp_path / "pic.tif").write_bytes(b"II*\x00AAAA")
    source = FilesystemSource(tmp_path)
    first = source.resolve("pic")
    rewrite_in_place_keeping_mtime(tmp_path / "pic.tif", b"II*\x00BBBB")
    second = source.recheck(first)
    assert second.version != first.version
    assert second.version.token != first.version.token
    assert source.resolve("pic").version == second.version


def test_recheck_of_an_unchanged_file_is_one_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pic.tif").write_bytes(b"II*\x00")
    source = FilesystemSource(tmp_path)
    first = source.resolve("pic")
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    monkeypatch.setattr(os.path, "realpath", lambda *a, **k: pytest.fail("realpath on an unchanged file"))
    assert source.recheck(first) is first
    assert calls == [str(tmp_path / "pic.tif")]


def test_recheck_notices_replacement_deletion_and_precedence(tmp_path: Path) -> None:
    (tmp_path / "pic.tif").write_bytes(b"II*\x00")
    source = FilesystemSource(tmp_path)
    first = source.resolve("pic")
    (tmp_path / "new.tif").write_bytes(b"II*\x00more")
    os.replace(tmp_path / "new.tif", tmp_path / "pic.tif")
    replaced = source.recheck(first)
    assert replaced.version != first.version
    assert replaced.version.size == 8
    (tmp_path / "pic.tif").unlink()
    with pytest.raises(NotFound):
        source.recheck(replaced)
    # Found as pic.jpg; a pic.tif added since takes precedence, as resolve would decide.
    (tmp_path / "pic.jpg").write_bytes(b"\xff\xd8\xff")
    as_jpeg = source.resolve("pic")
    assert as_jpeg.name == "pic.jpg"
    (tmp_path / "pic.tif").write_bytes(b"II*\x00")
    assert source.recheck(as_jpeg).name == "pic.tif"


def test_recheck_refuses_a_symlink_swapped_to_leave_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.tif").write_bytes(b"II*\x00a")
    (outside / "b.tif").write_bytes(b"II*\x00b")
    (root / "pic.tif").symlink_to(root / "a.tif")
    source = FilesystemSource(root)
    first = source.resolve("pic.tif")
    (root / "pic.tif").unlink()
    (root / "pic.tif").symlink_to(outside / "b.tif")
    with pytest.raises(NotFound):
        source.recheck(first)


def test_raise_if_changed_is_a_retryable_503_that_names_no_path(tmp_path: Path) -> None:
    path = tmp_path / "pic.tif"
    path.write_bytes(b"II*\x00old")
    version = SourceVersion.of(path.stat())
    raise_if_changed(path, version)  # unchanged: nothing
    (tmp_path / "next.tif").write_bytes(b"II*\x00new")
    os.replace(tmp_path / "next.tif", path)
    with pytest.raises(SourceChanged) as caught:
        raise_if_changed(path, version)
    assert isinstance(caught.value, ServiceUnavailable)
    assert (caught.value.status, caught.value.retry_after) == (503, 1)
    assert str(tmp_path) not in str(caught.value)
    path.unlink()
    with pytest.raises(SourceChanged):
        raise_if_changed(path, version)


def test_a_plain_file_under_the_root_resolves_with_one_lstat_and_links_still_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "pic.tif").write_bytes(b"II*\x00")
    (root / "sub" / "deep.tif").write_bytes(b"II*\x00deep")
    (outside / "secret.tif").write_bytes(b"II*\x00secret")
    (root / "inside-link.tif").symlink_to(root / "pic.tif")
    (root / "escape.tif").symlink_to(outside / "secret.tif")
    (root / "folder.tif").mkdir()
    os.mkfifo(root / "fifo.tif")
    source = FilesystemSource(root)
    walks: list[str] = []
    real_realpath = os.path.realpath

    def counting_realpath(path: str, *args: object, **kwargs: object) -> str:
        walks.append(os.path.basename(path))
        return real_realpath(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os.path, "realpath", counting_realpath)
    plain = source.resolve("pic.tif")
    assert plain.path == root / "pic.tif"
    assert plain.version.size == 4
    assert walks == []  # one lstat, no walk over the root's components
    assert source.resolve("pic").path == root / "pic.tif"  # the extension added: also a plain name
    assert walks == []
    # a symlink is followed (and kept inside the root), a nested name walks as before
    assert source.resolve("inside-link.tif").path == root / "pic.tif"
    assert source.resolve("sub/deep.tif").path == root / "sub" / "deep.tif"
    assert walks == ["inside-link.tif", "deep.tif"]
    for refused in ("escape.tif", "folder.tif", "fifo.tif", "missing.tif"):
        with pytest.raises(NotFound):
            source.resolve(refused)
