"""Disk tier: size accounting, scans and LRU eviction (``iiifserver.cache.disk_eviction``)."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from iiifserver.cache import disk_eviction
from iiifserver.cache.disk import DiskCache
from iiifserver.cache.disk_eviction import BLOCK, Eviction, charged, cutoff
from tests.cache.disk_helpers import HOUR, entry, entry_path, file_size, key


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    return DiskCache(tmp_path, 1_000_000)


def test_scan_removes_stale_temp_files_but_keeps_live_ones(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry(700))
    folder = entry_path(tmp_path, "img", key(1)).parent
    stale = folder / f"{key(2)}.123.abcdef.tmp"
    live = folder / f"{key(3)}.456.abcdef.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"being written")
    old = time.time() - 120
    os.utime(stale, (old, old))
    result = cache.scan()
    assert not stale.exists()
    assert live.exists()
    assert (result.entries, result.bytes, result.removed_temp) == (1, charged(file_size(entry(700))), 1)


def test_scan_resets_a_drifted_estimate(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry(700))
    cache.put("img", key(2), entry(700))
    entry_path(tmp_path, "img", key(2)).unlink()  # removed behind the cache's back
    assert cache.stats.bytes == 2 * charged(file_size(entry(700)))
    cache.scan()
    assert cache.stats.bytes == charged(file_size(entry(700)))
    assert DiskCache(tmp_path, 1_000_000).scan().bytes == charged(file_size(entry(700)))


def test_scan_yields_to_another_process_holding_the_lock(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry())
    with open(tmp_path / "v2" / ".evict.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        assert cache.scan().skipped
        assert cache.evict() == 0
    assert not cache.scan().skipped


def test_eviction_removes_the_oldest_down_to_the_low_water_mark(tmp_path: Path) -> None:
    size = charged(file_size(entry()))
    cache = DiskCache(tmp_path, 10 * size, low_water=0.7, background_eviction=False)
    now = time.time()
    for n in range(10):
        assert cache.put("img", key(n), entry())
        # Entry n was last used (10 - n) * 2 hours ago: 0 is the oldest.
        then = now - (10 - n) * 2 * HOUR
        os.utime(entry_path(tmp_path, "img", key(n)), (then, then))
    assert cache.stats.evicted == 0
    assert cache.get("img", key(1)) is not None  # a hit makes 1 the most recently used
    assert cache.put("img", key(10), entry())  # 11 entries > 10: evict down to 7
    remaining = {n for n in range(11) if entry_path(tmp_path, "img", key(n)).exists()}
    assert remaining == {1, 5, 6, 7, 8, 9, 10}
    assert cache.stats.evicted == 4
    assert cache.stats.bytes == 7 * size
    assert cache.scan().bytes == 7 * size


def test_eviction_within_one_bucket_frees_just_enough(tmp_path: Path) -> None:
    size = charged(file_size(entry()))
    cache = DiskCache(tmp_path, 10 * size, low_water=0.5, background_eviction=False)
    for n in range(11):
        cache.put(f"id{n}", key(n), entry(identifier=f"id{n}"))
    assert cache.stats.evicted == 6
    assert cache.scan().entries == 5
    # Emptied identifier folders are removed, and a later put recreates its folder.
    assert sum(1 for _ in (tmp_path / "v2").glob("??/*")) == 5
    assert cache.put("id0", key(0), entry(identifier="id0"))


def test_eviction_runs_in_a_background_thread_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = charged(file_size(entry()))
    cache = DiskCache(tmp_path, 10 * size, low_water=0.5)
    callers: set[str] = set()
    evict = Eviction.evict

    def recording_evict(self: Eviction) -> int:
        callers.add(threading.current_thread().name)
        return evict(self)

    # The background thread runs the size keeper's evict, not DiskCache.evict (which delegates to it).
    monkeypatch.setattr(Eviction, "evict", recording_evict)
    for n in range(30):
        cache.put("img", key(n), entry())
    cache.wait_for_eviction(10)
    assert callers == {"disk-cache-eviction"}
    assert cache.stats.evicted >= 20
    assert cache.scan().bytes <= 10 * size


def test_evicting_twice_at_once_is_harmless(tmp_path: Path) -> None:
    size = charged(file_size(entry()))
    for n in range(20):
        DiskCache(tmp_path, 1_000_000).put("img", key(n), entry())
    caches = [DiskCache(tmp_path, 10 * size, low_water=0.5) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        evicted = sum(pool.map(lambda c: c.evict(), caches))
    assert evicted == 15
    assert caches[0].scan().entries == 5


def test_interrupted_purge_is_finished_by_scan(cache: DiskCache, tmp_path: Path) -> None:
    cache.put("img", key(1), entry())
    trash = tmp_path / "v2" / ".trash"
    trash.mkdir()
    entry_path(tmp_path, "img", key(1)).parent.rename(trash / "leftover")
    assert cache.scan().entries == 0
    assert list(trash.iterdir()) == []


# --- the size keeper on its own ------------------------------------------------------------------


def keeper(base: Path, max_bytes: int = 1_000, *, background: bool = False) -> Eviction:
    return Eviction(
        os.fspath(base),
        max_bytes,
        0.5,
        touch_interval=HOUR,
        temp_max_age=60,
        background=background,
        counters=threading.Lock(),
    )


def test_the_estimate_is_shared_through_the_usage_file(tmp_path: Path) -> None:
    base = tmp_path / "v2"
    one, other = keeper(base, 1_000_000), keeper(base, 1_000_000)  # as two worker processes would hold them
    one.added(300)  # an entry counts whole blocks: one
    other.added(BLOCK + 1)  # two
    assert int.from_bytes((base / ".usage").read_bytes(), "little") == 3 * BLOCK
    assert other.estimate == 3 * BLOCK
    one.removed(BLOCK)  # a purge gives the sum it counted
    assert one.estimate == 2 * BLOCK
    other.removed(100 * BLOCK)  # more than counted (files removed by hand): never below zero
    assert other.estimate == 0


def test_an_unusable_tree_falls_back_to_this_process_estimate(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a folder")
    size_keeper = keeper(tmp_path / "file" / "v2")  # the usage file can never be created
    size_keeper.added(300)
    size_keeper.added(200)
    assert size_keeper.estimate == 2 * BLOCK
    size_keeper.removed(3 * BLOCK)
    assert size_keeper.estimate == 0
    assert size_keeper.scan().skipped  # nothing to lock, so nothing to scan


def test_adding_past_the_bound_evicts_in_the_calling_thread(tmp_path: Path) -> None:
    size = charged(file_size(entry()))
    other_process = DiskCache(tmp_path, 1_000_000)  # writes real entries, adds to the shared estimate
    size_keeper = keeper(tmp_path / "v2", max_bytes=4 * size)
    for n in range(4):
        other_process.put("img", key(n), entry())
    size_keeper.added(0)
    assert size_keeper.evicted == 0  # at the bound, not past it
    other_process.put("img", key(4), entry())
    size_keeper.added(0)
    assert size_keeper.evicted == 3  # done on return: down to half the bound
    assert other_process.scan().entries == 2


def test_eviction_keeps_a_folder_holding_a_write_in_progress(tmp_path: Path) -> None:
    size = charged(file_size(entry()))
    cache = DiskCache(tmp_path, 10 * size, low_water=0.5, background_eviction=False)
    two_hours_ago = time.time() - 2 * HOUR
    for identifier, k in (("busy", key(1)), ("idle", key(2))):
        cache.put(identifier, k, entry(identifier=identifier))
        os.utime(entry_path(tmp_path, identifier, k), (two_hours_ago, two_hours_ago))
    busy = entry_path(tmp_path, "busy", key(1)).parent
    live_temp = busy / f"{key(3)}.1.abcdef.tmp"  # another writer's file, moments old
    live_temp.write_bytes(b"partial")
    for n in range(10, 19):
        cache.put("new", key(n), entry(identifier="new"))  # the 11th entry: evict down to 5
    assert cache.stats.evicted == 6
    assert not entry_path(tmp_path, "busy", key(1)).exists()  # the oldest go first
    assert live_temp.exists()
    assert busy.is_dir()  # its temp file keeps it
    assert not entry_path(tmp_path, "idle", key(2)).parent.exists()  # emptied: removed


@pytest.mark.parametrize(
    ("histogram", "excess", "expected"),
    [
        pytest.param({}, 100, (0, 0), id="empty"),
        pytest.param({7: 100}, 40, (7, 40), id="within-the-only-bucket"),
        pytest.param({3: 10, 1: 10, 2: 10}, 15, (2, 5), id="into-the-second-oldest"),
        pytest.param({1: 10, 2: 10, 3: 10}, 10, (1, 10), id="exactly-the-oldest"),
        pytest.param({1: 10, 2: 10, 3: 10}, 0, (1, 0), id="nothing-to-free"),
        pytest.param({1: 10, 2: 10, 3: 10}, 100, (3, 0), id="more-than-everything"),
    ],
)
def test_cutoff(histogram: dict[int, int], excess: int, expected: tuple[int, int]) -> None:
    assert cutoff(histogram, excess) == expected


def test_cutoff_frees_at_least_the_excess_from_the_oldest_buckets() -> None:
    histogram = {bucket: 1 + (bucket * 37) % 11 for bucket in range(50)}
    for excess in range(sum(histogram.values()) + 1):
        bucket, partial = cutoff(histogram, excess)
        older = sum(size for b, size in histogram.items() if b < bucket)
        assert older + partial == excess
        assert 0 <= partial <= histogram[bucket]


def test_eviction_logs_what_it_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    size = charged(file_size(entry()))
    cache = DiskCache(tmp_path, 10 * size, low_water=0.5, background_eviction=False)
    with caplog.at_level(logging.INFO, logger=disk_eviction.__name__):
        for n in range(11):
            cache.put("img", key(n), entry())
    assert [r.getMessage() for r in caplog.records] == [f"disk cache evicted 6 entries ({6 * size} bytes)"]


@pytest.mark.parametrize(("size", "blocks"), [(0, 1), (1, 1), (BLOCK, 1), (BLOCK + 1, 2), (10 * BLOCK - 1, 10)])
def test_an_entry_counts_whole_blocks_at_least_one(size: int, blocks: int) -> None:
    assert charged(size) == blocks * BLOCK


def test_a_flood_of_tiny_entries_is_bounded_in_files_too(tmp_path: Path) -> None:
    """E11: entries of a few dozen bytes each take a block and an inode; a limit in bytes that
    counted their lengths alone would let 1,000 of them into 16 blocks' room."""
    cache = DiskCache(tmp_path, 16 * BLOCK, low_water=0.5, background_eviction=False)
    tiny = entry(10)
    assert file_size(tiny) < 100
    for n in range(1_000):
        assert cache.put("img", key(n), tiny)
        assert cache.stats.bytes <= 16 * BLOCK
    files = cache.scan()
    assert 8 <= files.entries <= 16
    assert files.bytes == files.entries * BLOCK
    assert len(list((tmp_path / "v2").glob("??/*/*"))) == files.entries
