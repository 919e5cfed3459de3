"""Lanes: work runs in the lane's threads, saturation is a 503, slots outlive cancelled callers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from iiifserver.concurrency import Lane
from iiifserver.errors import ServiceUnavailable


def test_runs_in_a_lane_thread_and_returns() -> None:
    lane = Lane("tile", 2, 10, 1.0)

    async def go() -> str:
        return await lane.run(lambda x: f"{x}-{threading.current_thread().name}", "ok")

    result = asyncio.run(go())
    assert result.startswith("ok-iiif-tile")


def test_exceptions_propagate_and_free_the_slot() -> None:
    lane = Lane("tile", 1, 10, 1.0)

    def boom() -> None:
        raise ValueError("bad tile")

    async def go() -> int:
        with pytest.raises(ValueError, match="bad tile"):
            await lane.run(boom)
        return await lane.run(lambda: 7)

    assert asyncio.run(go()) == 7
    assert lane.busy == 0


def test_full_queue_is_a_503_with_retry_after() -> None:
    lane = Lane("heavy", 1, 2, 5.0)
    release = threading.Event()

    async def go() -> list[object]:
        running = asyncio.create_task(lane.run(release.wait, 5))
        await asyncio.sleep(0.05)
        waiters = [asyncio.create_task(lane.run(lambda: "done")) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert lane.waiting == 2
        with pytest.raises(ServiceUnavailable) as caught:
            await lane.run(lambda: "refused")
        assert caught.value.status == 503
        assert caught.value.retry_after >= 1
        release.set()
        return list(await asyncio.gather(running, *waiters))

    assert asyncio.run(go()) == [True, "done", "done"]


def test_queue_timeout_is_a_503() -> None:
    lane = Lane("heavy", 1, 10, 0.1)
    release = threading.Event()

    async def go() -> None:
        running = asyncio.create_task(lane.run(release.wait, 5))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="queue timeout"):
            await lane.run(lambda: None)
        assert time.monotonic() - started < 1.0
        release.set()
        await running

    asyncio.run(go())


def test_cancelled_caller_keeps_the_slot_until_the_thread_ends() -> None:
    lane = Lane("tile", 1, 10, 5.0)
    release = threading.Event()
    finished = threading.Event()

    def work() -> None:
        release.wait(5)
        finished.set()

    async def go() -> None:
        caller = asyncio.create_task(lane.run(work))
        await asyncio.sleep(0.05)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert lane.busy == 1  # the thread still runs: its slot is still taken
        blocked = asyncio.create_task(lane.run(lambda: "next"))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        release.set()
        assert await blocked == "next"
        assert finished.is_set()
        assert lane.busy == 0

    asyncio.run(go())
