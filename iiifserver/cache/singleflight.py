"""Single flight: identical concurrent work runs once and every caller gets its outcome.

Owns: the map key -> work in progress and its waiters, and nothing after it ends.
Must not know: what the work is (a render, a probe), caching, HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


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
            for waiter in flight.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
                    # Marks it retrieved: a waiter cancelled in this very iteration would
                    # otherwise have asyncio log "exception was never retrieved"; the others
                    # still raise it.
                    waiter.exception()
        else:
            self._end(key, flight)
            for waiter in flight.waiters:
                if not waiter.done():
                    waiter.set_result(result)

    def _end(self, key: str, flight: _Flight[T]) -> None:
        # Before any waiter resumes: a caller arriving after the outcome starts afresh.
        if self._flights.get(key) is flight:
            del self._flights[key]
