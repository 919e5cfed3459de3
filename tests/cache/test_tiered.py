"""Tiered facade: memory without a thread hop, disk behind run_blocking, purges seen across processes."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iiifserver.cache import disk as disk_module
from iiifserver.cache.disk import DiskCache
from iiifserver.cache.entry import Entry
from iiifserver.cache.memory import MemoryCache
from iiifserver.cache.tiered import TileCache
from iiifserver.concurrency import Lane
from iiifserver.errors import ServiceUnavailable


def key(n: int) -> str:
    return f"{n:040x}"


def entry(identifier: str = "img", size: int = 1_000) -> Entry:
    return Entry(b"t" * size, "image/jpeg", identifier)


class Blocking:
    """A run_blocking that records what it was asked to run (and runs it in a thread)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_with: Exception | None = None

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn.__name__)
        if self.fail_with is not None:
            raise self.fail_with
        return await asyncio.to_thread(fn, *args)


def make(tmp_path: Path, *, disk: bool = True) -> tuple[TileCache, Blocking]:
    blocking = Blocking()
    tiered = TileCache(
        MemoryCache(1_000_000),
        DiskCache(tmp_path, 10_000_000) if disk else None,
        blocking,
        generation_interval=0,
    )
    return tiered, blocking


def test_memory_hit_needs_no_thread_hop(tmp_path: Path) -> None:
    async def main() -> None:
        tiered, blocking = make(tmp_path)
        await tiered.put("img", key(1), entry())
        blocking.calls.clear()
        assert tiered.get_memory(key(1)) == entry()
        assert await tiered.get("img", key(1)) == entry()
        assert blocking.calls == []

    asyncio.run(main())


def test_put_reaches_both_tiers(tmp_path: Path) -> None:
    async def main() -> None:
        tiered, blocking = make(tmp_path)
        await tiered.put("img", key(1), entry())
        await tiered.put("img", key(2), entry(), to_disk=False)
        assert blocking.calls == ["put"]
        assert tiered.disk is not None
        assert tiered.disk.get("img", key(1)) == entry()
        assert tiered.disk.get("img", key(2)) is None
        assert tiered.get_memory(key(2)) == entry()

    asyncio.run(main())


def test_memory_tier_calls_go_through_the_facade_without_a_thread_hop(tmp_path: Path) -> None:
    tiered, blocking = make(tmp_path)
    assert tiered.put_memory(key(1), entry())
    assert tiered.get_memory(key(1)) == entry()
    assert not tiered.put_memory(key(2), entry(size=2_000_000))  # larger than the memory tier
    assert tiered.get_memory(key(2)) is None
    assert tiered.disk is not None
    assert tiered.disk.get("img", key(1)) is None  # memory only
    assert blocking.calls == []


def test_blocking_disk_lookup_reads_the_disk_tier_only(tmp_path: Path) -> None:
    """For a caller already in a worker thread: no run_blocking, no promotion into memory."""
    DiskCache(tmp_path, 10_000_000).put("img", key(1), entry())
    tiered, blocking = make(tmp_path)
    assert tiered.has_disk
    assert tiered.has_lower
    assert tiered.get_disk_blocking("img", key(1)) == entry()
    assert tiered.get_disk_blocking("img", key(2)) is None
    assert tiered.get_memory(key(1)) is None
    assert blocking.calls == []
    memory_only, _ = make(tmp_path, disk=False)
    assert not memory_only.has_disk
    assert not memory_only.has_lower
    assert memory_only.get_disk_blocking("img", key(1)) is None


def test_disk_hit_is_promoted_to_memory(tmp_path: Path) -> None:
    async def main() -> None:
        DiskCache(tmp_path, 10_000_000).put("img", key(1), entry())  # written by another process
        tiered, blocking = make(tmp_path)
        assert tiered.get_memory(key(1)) is None
        assert await tiered.get("img", key(1)) == entry()
        assert blocking.calls == ["get"]
        assert tiered.get_memory(key(1)) == entry()
        assert await tiered.get("img", key(1)) == entry()
        assert blocking.calls == ["get"]
        assert await tiered.get("img", key(2)) is None

    asyncio.run(main())


def test_without_disk_tier(tmp_path: Path) -> None:
    async def main() -> None:
        tiered, blocking = make(tmp_path, disk=False)
        await tiered.put("img", key(1), entry())
        assert await tiered.get("img", key(2)) is None
        assert await tiered.check_generation() is False
        assert await tiered.purge("img") == 1
        assert blocking.calls == []
        assert set(tiered.stats()) == {"memory"}

    asyncio.run(main())


def test_disk_write_failures_never_propagate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def main() -> None:
        tiered, blocking = make(tmp_path)
        monkeypatch.setattr(disk_module, "write_all", no_space)
        await tiered.put("img", key(1), entry())  # the disk is full
        blocking.fail_with = ServiceUnavailable("io lane full", retry_after=1)
        await tiered.put("img", key(2), entry())  # the lane refuses
        assert tiered.get_memory(key(1)) == entry()
        assert tiered.get_memory(key(2)) == entry()
        assert tiered.stats()["disk"]["write_errors"] == 1

    asyncio.run(main())


def test_purge_removes_from_both_tiers(tmp_path: Path) -> None:
    async def main() -> None:
        tiered, _ = make(tmp_path)
        for n in range(3):
            await tiered.put("drop", key(n), entry("drop"))
        await tiered.put("keep", key(9), entry("keep"))
        assert await tiered.purge("drop") == 3
        assert [await tiered.get("drop", key(n)) for n in range(3)] == [None] * 3
        assert await tiered.get("keep", key(9)) == entry("keep")

    asyncio.run(main())


def test_another_process_purge_drops_the_memory_tier(tmp_path: Path) -> None:
    async def main() -> None:
        first, _ = make(tmp_path)  # two worker processes sharing one cache folder
        second, _ = make(tmp_path)
        await first.put("a", key(1), entry("a"))
        await second.put("b", key(2), entry("b"))
        assert await first.check_generation() is False  # learns the current generation
        assert await second.check_generation() is False
        await second.purge("a")
        # The purging process keeps its memory tier (it purged it precisely)...
        assert await second.check_generation() is False
        assert second.get_memory(key(2)) == entry("b")
        # ...the other one cannot know which entries went, so it drops them all, once.
        assert first.get_memory(key(1)) == entry("a")
        assert await first.check_generation() is True
        assert first.get_memory(key(1)) is None
        assert await first.check_generation() is False

    asyncio.run(main())


def test_generation_check_is_throttled(tmp_path: Path) -> None:
    async def main() -> None:
        tiered = TileCache(MemoryCache(1_000_000), DiskCache(tmp_path, 1_000_000), Blocking(), generation_interval=60)
        blocking = tiered._run_blocking
        assert isinstance(blocking, Blocking)
        await tiered.check_generation()
        await tiered.check_generation()
        await tiered.check_generation()
        assert blocking.calls == ["generation"]

    asyncio.run(main())


def test_works_with_the_servers_io_lane(tmp_path: Path) -> None:
    async def main() -> None:
        lane = Lane("io", threads=2, max_waiting=16, queue_timeout=5)
        tiered = TileCache(MemoryCache(1_000_000), DiskCache(tmp_path, 1_000_000), lane.run)
        await tiered.put("img", key(1), entry())
        fresh = TileCache(MemoryCache(1_000_000), DiskCache(tmp_path, 1_000_000), lane.run)
        assert await fresh.get("img", key(1)) == entry()
        stats = fresh.stats()
        assert stats["memory"]["entries"] == 1
        assert stats["disk"]["hits"] == 1

    asyncio.run(main())
