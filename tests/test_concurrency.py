"""Lanes: work runs in the lane's threads, saturation is a 503, slots outlive cancelled callers."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from iiifserver.concurrency import Lane
from iiifserver.errors import ServiceUnavailable

T = TypeVar("T")


async def _awaited(work: Awaitable[T]) -> T:
    """As a request's task awaits a lane (``run`` starts the job before it returns)."""
    return await work


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
        running = asyncio.create_task(_awaited(lane.run(release.wait, 5)))
        await asyncio.sleep(0.05)
        waiters = [asyncio.create_task(_awaited(lane.run(lambda: "done"))) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert lane.waiting == 2
        assert not lane.has_free_thread
        with pytest.raises(ServiceUnavailable) as caught:
            await lane.run(lambda: "refused")
        assert caught.value.status == 503
        assert caught.value.retry_after >= 1
        release.set()
        return list(await asyncio.gather(running, *waiters))

    assert asyncio.run(go()) == [True, "done", "done"]
    assert lane.has_free_thread


def test_a_free_thread_with_nobody_queued_is_a_free_thread() -> None:
    """``has_free_thread``: a job submitted now would start at once."""
    lane = Lane("tile", 1, 5, 5.0)
    release = threading.Event()
    assert lane.has_free_thread

    async def go() -> None:
        running = asyncio.create_task(_awaited(lane.run(release.wait, 5)))
        await asyncio.sleep(0.05)
        assert not lane.has_free_thread
        release.set()
        await running
        assert lane.has_free_thread

    asyncio.run(go())


def test_queue_timeout_is_a_503() -> None:
    lane = Lane("heavy", 1, 10, 0.1)
    release = threading.Event()

    async def go() -> None:
        running = asyncio.create_task(_awaited(lane.run(release.wait, 5)))
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
        caller = asyncio.create_task(_awaited(lane.run(work)))
        await asyncio.sleep(0.05)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert lane.busy == 1  # the thread still runs: its slot is still taken
        blocked = asyncio.create_task(_awaited(lane.run(lambda: "next")))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        release.set()
        assert await blocked == "next"
        assert finished.is_set()
        assert lane.busy == 0

    asyncio.run(go())


class _MarkingLoop(asyncio.SelectorEventLoop):
    """Notes the loop iteration in which a worker thread's hand-back callback runs."""

    def __init__(self, ticks: list[int]) -> None:
        super().__init__()
        self.ticks = ticks
        self.delivered_at: int | None = None

    def call_soon_threadsafe(self, callback, *args, context=None):  # type: ignore[no-untyped-def]
        def marked(*inner: object) -> None:
            self.delivered_at = self.ticks[0]
            callback(*inner)

        return super().call_soon_threadsafe(marked, *args, context=context)


def test_the_caller_resumes_one_loop_iteration_after_the_thread_hands_back() -> None:
    # Under load each loop iteration takes milliseconds: every extra one on the way back from a
    # thread adds that much to a render's latency.
    ticks = [0]
    loop = _MarkingLoop(ticks)
    lane = Lane("tile", 1, 10, 5.0)

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)  # one step per loop iteration

    async def go() -> tuple[int, int]:
        counting = asyncio.create_task(ticker())
        await lane.run(time.sleep, 0.02)
        resumed = ticks[0]
        counting.cancel()
        assert loop.delivered_at is not None
        return loop.delivered_at, resumed

    try:
        delivered, resumed = loop.run_until_complete(go())
    finally:
        loop.close()
    assert resumed - delivered <= 1


def test_stop_iteration_in_the_thread_is_an_error_not_a_hang() -> None:
    lane = Lane("tile", 1, 10, 1.0)

    async def go() -> None:
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(lane.run(next, iter(())), 2)
        assert lane.busy == 0

    asyncio.run(go())


def test_a_job_starts_before_run_returns_when_a_thread_is_free() -> None:
    lane = Lane("io", 1, 10, 1.0)
    started = threading.Event()

    async def go() -> str:
        pending = lane.run(lambda: started.set() or "read")
        assert started.wait(2)  # before this coroutine awaited anything
        return await pending

    assert asyncio.run(go()) == "read"


def test_waiters_get_freed_threads_in_order_and_cancelled_ones_are_skipped() -> None:
    lane = Lane("tile", 1, 10, 5.0)
    release = threading.Event()
    order: list[str] = []

    async def go() -> None:
        running = asyncio.create_task(_awaited(lane.run(release.wait, 5)))
        await asyncio.sleep(0.02)
        queued = {name: asyncio.create_task(_awaited(lane.run(order.append, name))) for name in ("a", "b", "c", "d")}
        await asyncio.sleep(0.02)
        assert lane.waiting == 4
        queued["b"].cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(running, queued["a"], queued["c"], queued["d"])
        assert queued["b"].cancelled()
        assert order == ["a", "c", "d"]
        assert (lane.busy, lane.waiting) == (0, 0)
        # every slot came back: as many jobs as threads start at once again
        started = threading.Event()
        pending = lane.run(started.set)
        assert started.wait(2)
        await pending

    asyncio.run(go())


def test_a_timed_out_waiter_leaves_no_slot_behind() -> None:
    lane = Lane("heavy", 1, 10, 0.05)
    release = threading.Event()

    async def go() -> None:
        running = asyncio.create_task(_awaited(lane.run(release.wait, 5)))
        await asyncio.sleep(0.01)
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                await lane.run(lambda: None)
        release.set()
        await running
        assert await asyncio.gather(*(_awaited(lane.run(lambda: 1)) for _ in range(5))) == [1] * 5
        assert (lane.busy, lane.waiting) == (0, 0)

    asyncio.run(go())


def test_a_job_queued_at_call_gets_a_thread_freed_before_it_was_awaited() -> None:
    lane = Lane("tile", 1, 10, 2.0)
    release = threading.Event()

    async def go() -> str:
        running = lane.run(release.wait, 5)
        queued = lane.run(lambda: "next")  # no thread free now: it will have to wait...
        release.set()
        await running  # ...but the thread is free again before it is first awaited
        assert lane.busy == 0
        return await asyncio.wait_for(_awaited(queued), 1)

    assert asyncio.run(go()) == "next"


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_niced_lane_runs_its_threads_below_the_loop_and_leaves_the_loop_alone() -> None:
    base = _own_nice()
    lane = Lane("heavy", 1, 10, 1.0, nice=5)
    plain = Lane("io", 1, 10, 1.0)

    async def go() -> tuple[int, int, int]:
        return await lane.run(_own_nice), await plain.run(_own_nice), _own_nice()

    try:
        niced, unniced, loop = asyncio.run(go())
    finally:
        lane.shutdown()
        plain.shutdown()
    assert niced == min(19, base + 5)
    assert unniced == base
    assert loop == base


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_threads_a_niced_lane_thread_starts_inherit_its_priority() -> None:
    # libvips' worker threads are started by the render thread that first needs them: they
    # inherit its nice value, which is what keeps pixel work below the event loop.
    base = _own_nice()
    lane = Lane("tile", 1, 10, 1.0, nice=3)

    def child_nice() -> int:
        box: list[int] = []
        child = threading.Thread(target=lambda: box.append(_own_nice()))
        child.start()
        child.join()
        return box[0]

    async def go() -> int:
        return await lane.run(child_nice)

    try:
        assert asyncio.run(go()) == min(19, base + 3)
    finally:
        lane.shutdown()
