"""Single flight: one execution per key at a time, shared outcome, nothing retained."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from iiifserver.cache.singleflight import SingleFlight
from iiifserver.concurrency import Lane
from iiifserver.errors import ServiceUnavailable


class Work:
    """A controllable piece of work that counts how often it ran."""

    def __init__(self, result: object = "done", error: Exception | None = None) -> None:
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.result = result
        self.error = error

    async def __call__(self) -> object:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.result


def test_concurrent_identical_calls_run_once() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        result = object()
        work = Work(result)
        callers = [asyncio.create_task(flight.run("k", work)) for _ in range(50)]
        await work.started.wait()
        assert flight.in_flight == 1
        work.release.set()
        results = await asyncio.gather(*callers)
        assert work.runs == 1
        assert all(r is result for r in results)
        assert flight.in_flight == 0

    asyncio.run(main())


def test_different_keys_run_separately() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        a, b = Work("a"), Work("b")
        a.release.set()
        b.release.set()
        assert list(await asyncio.gather(flight.run("a", a), flight.run("b", b))) == ["a", "b"]
        assert (a.runs, b.runs) == (1, 1)

    asyncio.run(main())


def test_nothing_is_retained_after_success() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work()
        work.release.set()
        await flight.run("k", work)
        await flight.run("k", work)
        assert work.runs == 2

    asyncio.run(main())


def test_leader_cancelled_the_others_still_get_the_result() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work("tile")
        leader = asyncio.create_task(flight.run("k", work))
        await work.started.wait()
        followers = [asyncio.create_task(flight.run("k", work)) for _ in range(3)]
        await asyncio.sleep(0)
        leader.cancel()  # the first client disconnects
        await asyncio.sleep(0)
        assert leader.cancelled()
        assert flight.in_flight == 1  # the work goes on
        work.release.set()
        assert await asyncio.gather(*followers) == ["tile"] * 3
        assert work.runs == 1
        with pytest.raises(asyncio.CancelledError):
            await leader

    asyncio.run(main())


def test_work_finishes_even_when_every_caller_left() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        finished = asyncio.Event()

        async def render() -> object:
            await asyncio.sleep(0.01)
            finished.set()  # e.g. the entry reaches the cache for the next request
            return "tile"

        caller = asyncio.create_task(flight.run("k", render))
        await asyncio.sleep(0)
        caller.cancel()
        await asyncio.wait_for(finished.wait(), 1)
        await asyncio.sleep(0)
        assert flight.in_flight == 0

    asyncio.run(main())


def test_error_reaches_every_waiter_and_is_not_retained() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        failing = Work(error=RuntimeError("render failed"))
        callers = [asyncio.create_task(flight.run("k", failing)) for _ in range(10)]
        await failing.started.wait()
        failing.release.set()
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and str(o) == "render failed" for o in outcomes)
        assert failing.runs == 1
        assert flight.in_flight == 0
        succeeding = Work("tile")
        succeeding.release.set()
        assert await flight.run("k", succeeding) == "tile"  # the next call runs again
        assert succeeding.runs == 1

    asyncio.run(main())


def test_unobserved_error_is_not_reported_as_never_retrieved() -> None:
    reported: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        flight: SingleFlight[object] = SingleFlight()

        async def fail() -> object:
            await asyncio.sleep(0.01)
            raise RuntimeError("nobody is listening")

        caller = asyncio.create_task(flight.run("k", fail))
        await asyncio.sleep(0)
        caller.cancel()
        async with asyncio.timeout(5):
            while flight.in_flight:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0)
        gc.collect()  # "never retrieved" is reported when the failed task is collected

    asyncio.run(main())
    assert reported == []


async def _ticker(ticks: list[int]) -> None:
    while True:
        ticks[0] += 1
        await asyncio.sleep(0)  # one step per loop iteration


def test_work_starts_in_the_first_callers_step() -> None:
    # A render handed to its thread one loop iteration later starts milliseconds later under load.
    async def main() -> None:
        ticks = [0]
        counting = asyncio.create_task(_ticker(ticks))
        flight: SingleFlight[object] = SingleFlight()
        called_at: list[int] = []
        result: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def start() -> asyncio.Future[object]:
            called_at.append(ticks[0])
            return result

        async def caller() -> int:
            started_at = ticks[0]
            await flight.run("k", start)
            return started_at

        calling = asyncio.create_task(caller())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        result.set_result("tile")
        started_at = await calling
        counting.cancel()
        assert called_at == [started_at]

    asyncio.run(main())


def test_callers_resume_one_loop_iteration_after_the_work_ends() -> None:
    async def main() -> None:
        ticks = [0]
        counting = asyncio.create_task(_ticker(ticks))
        flight: SingleFlight[object] = SingleFlight()
        ended_at: list[int] = []

        async def work() -> object:
            await asyncio.sleep(0.01)
            ended_at.append(ticks[0])
            return "tile"

        async def caller() -> int:
            await flight.run("k", work)
            return ticks[0]

        resumed = await asyncio.gather(*(caller() for _ in range(3)))
        counting.cancel()
        assert all(tick - ended_at[0] <= 1 for tick in resumed)

    asyncio.run(main())


def test_an_error_starting_the_work_reaches_the_first_caller_and_nothing_stays_in_flight() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()

        def refuse() -> asyncio.Future[object]:
            raise RuntimeError("lane closed")

        with pytest.raises(RuntimeError, match="lane closed"):
            await flight.run("k", refuse)
        assert flight.in_flight == 0
        work = Work("tile")
        work.release.set()
        assert await flight.run("k", work) == "tile"

    asyncio.run(main())


# -- run_in: work in a lane's thread, finished on the loop ------------------------------------


def test_run_in_runs_the_thread_work_and_its_continuation_once_for_all_callers() -> None:
    lane = Lane("tile", 2, 10, 5.0)
    release = threading.Event()
    calls: list[str] = []

    def render() -> str:
        calls.append("render")
        release.wait(5)
        return "pixels"

    def keep(result: str) -> str:
        calls.append("keep")
        return result.upper()

    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight()
        callers = [asyncio.create_task(flight.run_in("k", lane, render, keep)) for _ in range(20)]
        await asyncio.sleep(0.02)
        assert flight.in_flight == 1
        release.set()
        assert await asyncio.gather(*callers) == ["PIXELS"] * 20
        assert flight.in_flight == 0

    asyncio.run(main())
    assert calls == ["render", "keep"]


def test_run_in_callers_resume_one_loop_iteration_after_the_thread_hands_back() -> None:
    lane = Lane("tile", 1, 10, 5.0)
    ticks = [0]
    kept_at: list[int] = []

    def keep(result: str) -> str:
        kept_at.append(ticks[0])  # on the loop, in the iteration the thread's outcome arrived
        return result

    async def main() -> list[int]:
        counting = asyncio.create_task(_ticker(ticks))
        flight: SingleFlight[str] = SingleFlight()

        async def caller() -> int:
            await flight.run_in("k", lane, lambda: time.sleep(0.02) or "tile", keep)
            return ticks[0]

        resumed = await asyncio.gather(*(caller() for _ in range(3)))
        counting.cancel()
        return resumed

    resumed = asyncio.run(main())
    assert all(tick - kept_at[0] <= 1 for tick in resumed)


def test_run_in_errors_are_mapped_once_and_reach_every_caller() -> None:
    lane = Lane("tile", 1, 10, 5.0)
    mapped: list[BaseException] = []

    def fail() -> str:
        raise ValueError("source changed")

    def failed(error: BaseException) -> BaseException:
        mapped.append(error)
        return RuntimeError("retry")

    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight()
        outcomes = await asyncio.gather(
            *(flight.run_in("k", lane, fail, str, failed) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) and str(o) == "retry" for o in outcomes)
        assert flight.in_flight == 0
        assert await flight.run_in("k", lane, lambda: "again", str) == "again"

    asyncio.run(main())
    assert len(mapped) == 1


def test_run_in_waits_for_a_thread_and_a_full_lane_is_a_503_for_every_caller() -> None:
    lane = Lane("tile", 1, 1, 5.0)
    release = threading.Event()

    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        busy = asyncio.create_task(flight.run_in("a", lane, lambda: release.wait(5), bool))
        await asyncio.sleep(0.01)
        queued = [asyncio.create_task(flight.run_in("b", lane, lambda: "b", str)) for _ in range(3)]
        await asyncio.sleep(0.01)
        refused = [asyncio.create_task(flight.run_in("c", lane, lambda: "c", str)) for _ in range(2)]
        outcomes = await asyncio.gather(*refused, return_exceptions=True)
        assert all(isinstance(o, ServiceUnavailable) for o in outcomes)
        release.set()
        assert await busy is True
        assert await asyncio.gather(*queued) == ["b"] * 3
        assert flight.in_flight == 0
        assert (lane.busy, lane.waiting) == (0, 0)

    asyncio.run(main())


def test_run_in_work_is_kept_even_when_every_caller_left() -> None:
    lane = Lane("tile", 1, 10, 5.0)
    kept: list[str] = []

    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight()

        def keep(result: str) -> str:
            kept.append(result)  # e.g. the entry reaches the cache for the next request
            return result

        caller = asyncio.create_task(flight.run_in("k", lane, lambda: time.sleep(0.02) or "tile", keep))
        await asyncio.sleep(0)
        caller.cancel()
        async with asyncio.timeout(2):
            while flight.in_flight:
                await asyncio.sleep(0.005)

    asyncio.run(main())
    assert kept == ["tile"]


def test_run_in_job_still_queued_is_dropped_when_every_caller_left() -> None:
    lane = Lane("tile", 1, 10, 5.0)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight()
        busy = asyncio.create_task(flight.run_in("a", lane, lambda: release.wait(5) and "a", str))
        await asyncio.sleep(0.01)
        queued = [asyncio.create_task(flight.run_in("b", lane, lambda: ran.append("b") or "b", str)) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert lane.waiting == 1  # one job for both callers
        queued[0].cancel()
        await asyncio.sleep(0.01)
        assert (lane.waiting, flight.in_flight) == (1, 2)  # the other caller still waits
        queued[1].cancel()
        async with asyncio.timeout(2):
            while lane.waiting:
                await asyncio.sleep(0.005)
        assert (lane.dropped, flight.in_flight) == (1, 1)
        release.set()
        assert await busy == "a"
        assert await flight.run_in("b", lane, lambda: "again", str) == "again"  # a fresh flight

    asyncio.run(main())
    assert ran == []
