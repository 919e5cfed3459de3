"""Small filesystem steps of the disk tier, each tolerant of the races of a tree shared by processes.

Owns: reading and writing a whole file through an fd, refreshing an mtime, opening-or-creating a
file, removing files, folders and trees quietly, and listing or stat-ing folder items without
following links.
Must not know: the tree's layout, the entry format, sizes and eviction.

Why quiet: several processes write, evict and purge the same tree, so a file or folder may vanish
(``ENOENT``) or gain a file (``ENOTEMPTY``) between any two calls. Each helper treats that as the
normal outcome it is, so callers need no ``try`` around every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd``; fewer if the file is shorter, one more if it grew."""
    data = os.read(fd, size + 1)  # one byte more: a file that grew is as invalid as a short one
    if len(data) <= size:
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                break
            data += chunk
    return data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def touch(fd: int) -> None:
    with suppress(OSError):  # read-only cache or another owner: the entry just ages as if never hit
        os.utime(fd)


def open_creating(path: str, base: str, flags: int) -> int:
    """Open ``path`` (created if missing), creating its folder ``base`` too if it was deleted."""
    try:
        return os.open(path, flags | os.O_CREAT | O_CLOEXEC, 0o644)
    except FileNotFoundError:
        os.makedirs(base, exist_ok=True)
        return os.open(path, flags | os.O_CREAT | O_CLOEXEC, 0o644)


def unlink_quietly(path: str) -> bool:
    """Whether this call removed ``path``; False when it was gone already or could not be removed."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def rmdir_quietly(path: str) -> None:
    with suppress(OSError):  # not empty (a writer got in first) or already gone
        os.rmdir(path)


def unlink_if_same(path: str, st: os.stat_result) -> None:
    """Remove a damaged entry unless a writer has meanwhile replaced it with a good one."""
    try:
        now = os.lstat(path)
    except OSError:
        return
    if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
        unlink_quietly(path)


def scandir(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as items:
            return list(items)
    except OSError:
        return []  # missing (deleted, purged, not created yet) or unreadable: nothing there


def lstat(item: os.DirEntry[str]) -> os.stat_result | None:
    """The stat of a regular file (links not followed); None for anything else or a vanished item."""
    try:
        st = item.stat(follow_symlinks=False)
    except OSError:
        return None
    return st if item.is_file(follow_symlinks=False) else None


def is_dir(item: os.DirEntry[str]) -> bool:
    try:
        return item.is_dir(follow_symlinks=False)
    except OSError:
        return False


def remove_tree(path: str, counts: Callable[[str], bool], measure: Callable[[int], int]) -> tuple[int, int]:
    """Delete a folder and everything below it; returns the number of the files removed whose names
    ``counts`` accepts (the entries, as opposed to temp files) and the sum of ``measure`` of their
    lengths."""
    entries = size = 0
    for item in scandir(path):
        if is_dir(item):
            sub_entries, sub_size = remove_tree(item.path, counts, measure)
            entries += sub_entries
            size += sub_size
            continue
        st = lstat(item)
        if unlink_quietly(item.path) and st is not None and counts(item.name):
            entries += 1
            size += measure(st.st_size)
    rmdir_quietly(path)
    return entries, size
