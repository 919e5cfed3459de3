"""The disk tier's small filesystem steps: each tolerates a tree that other processes change."""

from __future__ import annotations

import os
from pathlib import Path

from iiifserver.cache.disk_files import (
    O_CLOEXEC,
    lstat,
    open_creating,
    read_exactly,
    remove_tree,
    rmdir_quietly,
    scandir,
    unlink_if_same,
    unlink_quietly,
    write_all,
)
from tests.cache.disk_helpers import key


def read_with(path: Path, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
    try:
        return read_exactly(fd, size)
    finally:
        os.close(fd)


def test_read_exactly_tells_a_short_or_grown_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"0123456789")
    assert read_with(path, 10) == b"0123456789"
    assert read_with(path, 12) == b"0123456789"  # shorter than said: fewer bytes
    assert read_with(path, 8) == b"012345678"  # longer than said: one byte more, never all of it


def test_write_all_writes_everything(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT | O_CLOEXEC, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    assert (tmp_path / "file").read_bytes() == data


def test_open_creating_recreates_a_deleted_folder(tmp_path: Path) -> None:
    base = tmp_path / "gone" / "v2"
    fd = open_creating(os.fspath(base / ".usage"), os.fspath(base), os.O_RDWR)
    os.close(fd)
    assert (base / ".usage").is_file()


def test_removals_are_quiet(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    assert unlink_quietly(os.fspath(tmp_path / "file"))
    assert not unlink_quietly(os.fspath(tmp_path / "file"))  # gone already: no error, not counted
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "late").write_bytes(b"a writer got in first")
    rmdir_quietly(os.fspath(tmp_path / "folder"))
    assert (tmp_path / "folder" / "late").exists()
    rmdir_quietly(os.fspath(tmp_path / "missing"))


def test_unlink_if_same_spares_a_file_replaced_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "entry"
    path.write_bytes(b"damaged")
    damaged = os.stat(path)
    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"good")
    os.replace(replacement, path)  # a writer's good entry, under the same name
    unlink_if_same(os.fspath(path), damaged)
    assert path.read_bytes() == b"good"
    unlink_if_same(os.fspath(path), os.stat(path))
    assert not path.exists()


def test_lstat_sees_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    stats = {item.name: lstat(item) for item in scandir(os.fspath(tmp_path))}
    assert stats["file"] is not None
    assert stats["file"].st_size == 5
    assert (stats["folder"], stats["link"]) == (None, None)
    assert scandir(os.fspath(tmp_path / "missing")) == []


def test_remove_tree_counts_what_the_predicate_accepts(tmp_path: Path) -> None:
    tree = tmp_path / "trash" / "ab"
    (tree / "abcd").mkdir(parents=True)
    (tree / "abcd" / key(1)).write_bytes(b"x" * 100)
    (tree / "abcd" / key(2)).write_bytes(b"x" * 50)
    (tree / "abcd" / f"{key(3)}.1.abcdef.tmp").write_bytes(b"x" * 1_000)  # removed, not counted
    (tree / key(4)).write_bytes(b"x" * 7)
    removed = remove_tree(os.fspath(tree), lambda name: len(name) == 40, lambda size: size + 1)
    assert removed == (3, 160)  # each counted entry measured: 101 + 51 + 8
    assert not tree.exists()
    assert (tmp_path / "trash").is_dir()  # only the folder named
    assert remove_tree(os.fspath(tree), lambda name: True, lambda size: size) == (0, 0)  # gone already
