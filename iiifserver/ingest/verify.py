"""Checking converted images against the checksums their stamps recorded (``iiifserver verify``).

Owns: which files a check covers (every image under the image root, or the files some identifiers
name), the verdict on one file (intact, changed, unreadable, or no checksum to check against),
and running the checks in a bounded pool of threads with progress reports.
Must not know: pyvips, HTTP, how outputs are made, how the verdicts are printed. It never writes
to the image root: files are only opened for reading.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from iiifserver.errors import NotFound
from iiifserver.image.sources import EXTENSIONS, FilesystemSource
from iiifserver.ingest.stamp import file_sha256, read_checksum


class Verdict(Enum):
    OK = "ok"  # the bytes hash to the recorded checksum
    CHANGED = "changed"  # they do not: damaged, or replaced by something other than `convert`
    UNREADABLE = "unreadable"  # the file could not be read (vanished, permissions, I/O error)
    NO_CHECKSUM = "no checksum"  # no stamp, or a stamp written before checksums were kept

    @property
    def is_problem(self) -> bool:
        return self in (Verdict.CHANGED, Verdict.UNREADABLE)


@dataclass(frozen=True, slots=True)
class Finding:
    path: Path
    name: str  # relative to the image root, `/`-separated: what the report shows
    verdict: Verdict
    size: int  # bytes hashed (0 when not read)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


def image_files(root: Path) -> list[Path]:
    """Every image under ``root`` that the server could serve, hidden files and folders skipped,
    in sorted order. Symlinks are not followed (a link's target is checked where it lives)."""
    found: list[Path] = []
    for directory, folders, files in os.walk(os.path.realpath(root)):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found.extend(
            Path(directory, name)
            for name in sorted(files)
            if not name.startswith(".")
            and name.lower().endswith(EXTENSIONS)
            and not os.path.islink(os.path.join(directory, name))
        )
    return found


def named_files(root: Path, identifiers: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The files ``identifiers`` address (as the server resolves them), and the identifiers that
    name no image."""
    source = FilesystemSource(root)
    files: list[Path] = []
    missing: list[str] = []
    for identifier in identifiers:
        try:
            path = source.resolve(identifier).path
        except NotFound:
            missing.append(identifier)
            continue
        assert isinstance(path, Path)  # a FilesystemSource names files
        if path not in files:
            files.append(path)
    return files, missing


def check_file(path: Path, root: Path) -> Finding:
    """Hash ``path`` and compare it with its stamp's checksum. Blocking; never raises an OSError."""
    root = Path(os.path.realpath(root))
    name = _relative(path, root)
    recorded = read_checksum(path)
    if recorded is None:
        return Finding(path, name, Verdict.NO_CHECKSUM, 0, "no stamp with a checksum")
    try:
        size = path.stat().st_size
        actual = file_sha256(path)
    except OSError as exc:
        return Finding(path, name, Verdict.UNREADABLE, 0, exc.strerror or type(exc).__name__)
    if actual != recorded:
        return Finding(path, name, Verdict.CHANGED, size, f"sha256 {actual[:16]}…, stamp says {recorded[:16]}…")
    return Finding(path, name, Verdict.OK, size)


def verify(
    files: list[Path],
    root: Path,
    *,
    threads: int = 4,
    progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 2.0,
) -> Iterator[Finding]:
    """Check ``files`` in ``threads`` threads, yielding findings in the order of ``files``.

    At most ``2 * threads`` checks are in flight, so memory stays flat for any tree. ``progress``
    is called at most every ``progress_interval`` seconds, and once at the end.
    """
    sizes = [_size(path) for path in files]
    bytes_total = sum(sizes)
    done = done_bytes = 0
    last = time.monotonic()

    def report(force: bool) -> None:
        nonlocal last
        if progress is not None and (force or time.monotonic() - last >= progress_interval):
            last = time.monotonic()
            progress(Progress(done, len(files), done_bytes, bytes_total))

    window = max(1, 2 * threads)
    pending: deque[Future[Finding]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="verify") as pool:
        for index in range(len(files) + window):
            if index < len(files):
                pending.append(pool.submit(check_file, files[index], root))
            if (index >= window or index >= len(files)) and pending:
                finding = pending.popleft().result()
                done_bytes += sizes[done]
                done += 1
                yield finding
                report(force=False)
    report(force=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
