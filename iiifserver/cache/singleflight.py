"""Single flight: identical concurrent work runs once and every caller gets its outcome.

Owns: the map key -> work in progress and its waiters, and nothing after it ends.
Must not know: what the work is (a render, a probe), caching, HTTP; which threads run it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Submitter(Protocol):
    """A lane of worker threads (``concurrency.Lane``)."""

    def submit(
        self, fn: Callable[[], R], deliver: Callable[[R | None, BaseException | None], None]
    ) -> Awaitable[None] | None: ...


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[T]] = []
        self.task: asyncio.Task[None] | None = None  # referenced until done (else collectable)


class SingleFlight(Generic[T]):
    """Coalesce concurrent calls with the same key into one execution (E04).

    ``fn`` is called at once, in the first caller's step, so work it starts synchronously (a
    lane handing a job to its thread) starts now rather than in a new task one loop iteration
    later. What it returns is awaited by a task of its own, and each caller, the first included,
    waits on a future of its own that the task completes: a caller that is cancelled (its client
    went away) stops waiting, but the work goes on for the others and for the cache it fills
    (E05), and the outcome reaches the callers in the next loop iteration (under load each one
    costs milliseconds; ``asyncio.shield`` over the task took two). An exception reaches every
    caller of that execution and is not remembered: the entry leaves the map when the work ends,
    so the next call runs the work again (E06). Event-loop only; no locks.
    """

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is None:
            work = fn()  # may raise: then nothing is in flight and this caller gets the error
            flight = self._flights[key] = _Flight()
            flight.task = loop.create_task(self._execute(key, flight, work), name=f"singleflight:{key}")
        waiter: asyncio.Future[T] = loop.create_future()
        flight.waiters.append(waiter)
        return await waiter

    async def run_in(
        self,
        key: str,
        lane: Submitter,
        fn: Callable[[], R],
        then: Callable[[R], T],
        failed: Callable[[BaseException], BaseException] | None = None,
    ) -> T:
        """``run`` for work done in a worker thread: ``fn`` runs in ``lane``; ``then`` turns its
        result into the outcome (``failed`` its exception into the one the callers get) on the
        loop, in the iteration the thread hands it back, and every caller is woken right there:
        one loop iteration sooner than a task awaiting the thread could (then the callers).

        A job still waiting for a thread when its last caller leaves (client gone, deadline
        passed) is dropped before it starts, giving its queue place back. Once started it runs
        to its end (a thread cannot be stopped) and ``then`` still keeps its outcome.
        """
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight()

            def deliver(result: R | None, error: BaseException | None) -> None:
                self._end(key, flight)
                if error is None:
                    try:
                        outcome = then(result)  # type: ignore[arg-type]
                    except BaseException as exc:
                        error = exc
                if error is not None:
                    _fail(flight, failed(error) if failed is not None else error)
                else:
                    for waiter in flight.waiters:
                        if not waiter.done():
                            waiter.set_result(outcome)

            waiting = lane.submit(fn, deliver)  # may raise: then nothing is in flight
            self._flights[key] = flight
            if waiting is not None:  # no thread free: wait for one in a task (callers may leave)
                flight.task = loop.create_task(self._wait_for_thread(key, flight, waiting))
        waiter: asyncio.Future[T] = loop.create_future()
        flight.waiters.append(waiter)
        if flight.task is not None and not flight.task.done():  # queued: this caller may be the last to leave
            waiter.add_done_callback(functools.partial(self._left, key, flight))
        return await waiter

    def _left(self, key: str, flight: _Flight[T], waiter: asyncio.Future[T]) -> None:
        """A caller of a ``run_in`` flight stopped waiting: drop the job if it has not started and
        nobody waits for it any more."""
        task = flight.task
        if not waiter.cancelled() or task is None or task.done():
            return  # an outcome, or a job already handed to a thread
        if all(other.done() for other in flight.waiters):
            self._end(key, flight)
            task.cancel()  # the lane gives the queue place back (``concurrency.Lane``)

    async def _wait_for_thread(self, key: str, flight: _Flight[T], waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except BaseException as exc:  # 503 (queue full or too long), or shutting down
            self._end(key, flight)
            _fail(flight, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _execute(self, key: str, flight: _Flight[T], work: Awaitable[T]) -> None:
        try:
            result = await work
        except asyncio.CancelledError:  # the loop shuts down
            self._end(key, flight)
            for waiter in flight.waiters:
                waiter.cancel()
            raise
        except BaseException as exc:
            self._end(key, flight)
            _fail(flight, exc)
        else:
            self._end(key, flight)
            for waiter in flight.waiters:
                if not waiter.done():
                    waiter.set_result(result)

    def _end(self, key: str, flight: _Flight[T]) -> None:
        # Before any waiter resumes: a caller arriving after the outcome starts afresh.
        if self._flights.get(key) is flight:
            del self._flights[key]


def _fail(flight: _Flight[T], error: BaseException) -> None:
    for waiter in flight.waiters:
        if waiter.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            waiter.cancel()
        else:
            waiter.set_exception(error)
            # Marks it retrieved: a waiter cancelled in this very iteration would otherwise
            # have asyncio log "exception was never retrieved"; the others still raise it.
            waiter.exception()
