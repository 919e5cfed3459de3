"""Single flight: one execution per key at a time, shared outcome, nothing retained."""

from __future__ import annotations

import asyncio
import gc

import pytest

from iiifserver.cache.singleflight import SingleFlight


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
