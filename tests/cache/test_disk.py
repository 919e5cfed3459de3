"""Disk tier: atomic, validated, bounded, purgeable, and safe for several processes at once.

Scans and eviction are tested in ``test_disk_eviction.py``, the entry format in
``test_disk_format.py``, the file helpers in ``test_disk_files.py``.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from iiifserver.cache import disk as disk_module
from iiifserver.cache.disk import DiskCache
from iiifserver.cache.disk_eviction import charged
from iiifserver.cache.entry import Entry
from tests.cache import disk_worker
from tests.cache.disk_helpers import DAMAGES, HOUR, Damage, entry, entry_path, file_size, key, temp_files


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    return DiskCache(tmp_path, 1_000_000)


def test_round_trip(cache: DiskCache, tmp_path: Path) -> None:
    stored = Entry(bytes(range(256)) * 40, "image/webp", "book/page 1")
    assert cache.put("book/page 1", key(1), stored)
    assert cache.get("book/page 1", key(1)) == stored
    assert entry_path(tmp_path, "book/page 1", key(1)).stat().st_size == file_size(stored)
    assert temp_files(tmp_path) == []
    stats = cache.stats
    assert (stats.writes, stats.hits, stats.misses) == (1, 1, 0)
    assert stats.bytes == charged(file_size(stored))  # whole blocks


def test_temp_file_is_unique_and_beside_the_entry(
    cache: DiskCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: str, dst: str) -> None:
        renames.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    cache.put("img", key(1), entry())
    cache.put("img", key(1), entry())
    (first, final), (second, _) = renames
    assert final == str(entry_path(tmp_path, "img", key(1)))
    assert os.path.dirname(first) == os.path.dirname(final)  # same folder: never EXDEV
    assert first.endswith(".tmp")
    assert f".{os.getpid()}." in first
    assert first != second


def test_miss_never_raises(cache: DiskCache) -> None:
    assert cache.get("never-seen", key(1)) is None  # no folder at all
    cache.put("img", key(1), entry())
    assert cache.get("img", key(2)) is None  # folder, no file
    assert cache.stats.misses == 2


def test_entry_path_is_a_folder_is_a_miss(cache: DiskCache, tmp_path: Path) -> None:
    entry_path(tmp_path, "img", key(1)).mkdir(parents=True)
    assert cache.get("img", key(1)) is None


def test_keys_must_be_hex(cache: DiskCache) -> None:
    with pytest.raises(ValueError, match="hex"):
        cache.get("img", "../../etc/passwd")
    with pytest.raises(ValueError, match="hex"):
        cache.put("img", key(0xAB).upper(), entry())


def test_survives_a_restart(tmp_path: Path) -> None:
    DiskCache(tmp_path, 1_000_000).put("img", key(1), entry(500))
    restarted = DiskCache(tmp_path, 1_000_000)
    assert restarted.get("img", key(1)) == entry(500)
    result = restarted.scan()
    assert (result.entries, result.bytes, result.skipped) == (1, charged(file_size(entry(500))), False)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_entry_is_a_miss_and_removed(cache: DiskCache, tmp_path: Path, damage: Damage) -> None:
    cache.put("img", key(1), entry(2_000))
    path = entry_path(tmp_path, "img", key(1))
    path.write_bytes(damage(path.read_bytes()))
    assert cache.get("img", key(1)) is None
    assert not path.exists()
    assert cache.stats.corrupt == 1
    assert cache.put("img", key(1), entry(2_000))  # regenerated
    assert cache.get("img", key(1)) == entry(2_000)


def test_swapped_entries_are_misses_removed_and_logged(
    cache: DiskCache, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two intact entries swapped on disk: each is another key's answer, so neither is served."""
    first, second = entry(500, fill=b"a"), entry(500, fill=b"b")
    cache.put("img", key(1), first)
    cache.put("img", key(2), second)
    path_1, path_2 = entry_path(tmp_path, "img", key(1)), entry_path(tmp_path, "img", key(2))
    data_1, data_2 = path_1.read_bytes(), path_2.read_bytes()
    path_1.write_bytes(data_2)
    path_2.write_bytes(data_1)
    with caplog.at_level(logging.WARNING, logger="iiifserver.cache.disk_format"):
        assert cache.get("img", key(1)) is None
        assert cache.get("img", key(2)) is None
    assert not path_1.exists()
    assert not path_2.exists()
    assert cache.stats.corrupt == 2
    assert len(caplog.records) == 2
    assert key(2) in caplog.records[0].getMessage()
    assert cache.put("img", key(1), first)
    assert cache.get("img", key(1)) == first


def test_an_entry_copied_from_another_identifier_is_a_miss(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("other", key(1), entry(500, identifier="other", fill=b"o"))
    target = entry_path(tmp_path, "img", key(2))
    target.parent.mkdir(parents=True)
    shutil.copyfile(entry_path(tmp_path, "other", key(1)), target)
    assert cache.get("img", key(2)) is None


def test_entries_of_the_previous_layout_are_ignored(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry(500))
    old = tmp_path / "v1" / entry_path(tmp_path, "img", key(1)).relative_to(tmp_path / "v2")
    old.parent.mkdir(parents=True)
    shutil.copyfile(entry_path(tmp_path, "img", key(1)), old)
    cache.purge(None)
    assert cache.get("img", key(1)) is None
    assert old.exists()  # another layout's folder is never touched


def test_hit_refreshes_mtime_at_most_once_per_interval(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry())
    path = entry_path(tmp_path, "img", key(1))
    two_hours_ago = time.time() - 2 * HOUR
    os.utime(path, (two_hours_ago, two_hours_ago))
    cache.get("img", key(1))
    assert path.stat().st_mtime > time.time() - 60
    ten_minutes_ago = time.time() - 600
    os.utime(path, (ten_minutes_ago, ten_minutes_ago))
    cache.get("img", key(1))
    assert path.stat().st_mtime == pytest.approx(ten_minutes_ago)


def test_oversized_entry_is_not_written(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 80_000)
    assert not cache.put("img", key(1), entry(10_000))
    assert cache.get("img", key(1)) is None


def test_cache_folder_deleted_while_running(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry())
    shutil.rmtree(tmp_path)
    assert cache.get("img", key(1)) is None
    assert cache.put("img", key(2), entry())
    assert cache.get("img", key(2)) == entry()
    assert cache.scan().entries == 1
    assert cache.stats.write_errors == 0


def failing(code: int) -> object:
    calls: list[object] = []

    def fail(*args: object) -> None:
        calls.append(args)
        raise OSError(code, os.strerror(code))

    fail.calls = calls  # type: ignore[attr-defined]
    return fail


@pytest.mark.parametrize(
    ("target", "code"),
    [("write", errno.ENOSPC), ("fsync", errno.EIO), ("replace", errno.EROFS), ("open", errno.EACCES)],
)
def test_write_errors_never_raise_leave_no_temp_and_pause_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, target: str, code: int
) -> None:
    cache = DiskCache(tmp_path, 1_000_000, backoff_seconds=60, fsync=True)
    cache.put("img", key(1), entry())  # the folder exists: the failure is the write itself
    fail = failing(code)
    if target == "write":
        monkeypatch.setattr(disk_module, "write_all", fail)
    else:
        real = getattr(os, target)

        def only_temp(path: object, *args: object, **kwargs: object) -> object:
            if target == "fsync" or str(path).endswith(".tmp"):
                return fail(path)  # type: ignore[operator]
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, target, only_temp)
    with caplog.at_level(logging.WARNING, logger="iiifserver.cache.disk"):
        assert not cache.put("img", key(2), entry())
        assert not cache.put("img", key(3), entry())  # paused: not even attempted
        assert not cache.put("img", key(4), entry())
    assert len(fail.calls) == 1  # type: ignore[attr-defined]
    assert temp_files(tmp_path) == []
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert errno.errorcode[code] in caplog.records[0].getMessage()
    stats = cache.stats
    assert (stats.write_errors, stats.skipped, stats.paused) == (1, 2, True)
    assert cache.get("img", key(1)) == entry()  # reads carry on


def test_writes_resume_after_the_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = DiskCache(tmp_path, 1_000_000, backoff_seconds=0.05)
    with monkeypatch.context() as patch:
        patch.setattr(disk_module, "write_all", failing(errno.ENOSPC))
        assert not cache.put("img", key(1), entry())
    time.sleep(0.06)
    with caplog.at_level(logging.WARNING, logger="iiifserver.cache.disk"):
        assert cache.put("img", key(1), entry())
    assert "resumed" in caplog.text
    assert not cache.stats.paused


def test_purge_one_identifier(cache: DiskCache, tmp_path: Path) -> None:
    for n in range(3):
        cache.put("drop", key(n), entry(identifier="drop"))
    cache.put("keep", key(9), entry(identifier="keep"))
    assert cache.generation() == 0
    assert cache.purge("drop") == 3
    assert all(cache.get("drop", key(n)) is None for n in range(3))
    assert cache.get("keep", key(9)) == entry(identifier="keep")
    assert cache.generation() == 1
    assert cache.stats.bytes == charged(file_size(entry(identifier="keep")))
    assert list((tmp_path / "v2" / ".trash").iterdir()) == []
    assert cache.purge("drop") == 0
    assert cache.generation() == 2


def test_purge_everything(cache: DiskCache, tmp_path: Path) -> None:
    for n in range(20):
        cache.put(f"id{n}", key(n), entry(identifier=f"id{n}"))
    other_process = DiskCache(tmp_path, 1_000_000)
    result = cache.purge_result(None)
    assert (result.removed, result.generation) == (20, 1)
    assert other_process.generation() == 1
    assert cache.scan().entries == 0
    assert cache.stats.bytes == 0
    assert cache.put("id0", key(0), entry(identifier="id0"))


def test_two_processes_share_one_tree(tmp_path: Path) -> None:
    # spawn: a fresh interpreter per worker, as uvicorn's workers are; fork would share state.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=disk_worker.main, args=(str(tmp_path), seed, 400, barrier, results)) for seed in (1, 2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    hits = sum(o[0] for o in outcomes)
    bad = sum(o[2] for o in outcomes)
    assert bad == 0
    assert hits > 50  # the test did exercise reads of the other process's writes
    assert temp_files(tmp_path) == []
    # Evictions ran concurrently in both processes, and the tree ended within its bound.
    cache = DiskCache(tmp_path, disk_worker.MAX_BYTES)
    assert cache.scan().bytes <= disk_worker.MAX_BYTES
    assert sum(o[3] for o in outcomes) > 0
