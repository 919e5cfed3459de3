"""Single flight: identical concurrent work runs once and every caller gets its outcome.

Owns: the map key -> running task for work in progress, and nothing after it ends.
Must not know: what the work is (a render, a probe), caching, HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Coalesce concurrent calls with the same key into one execution (E04).

    The work runs as its own task and every caller, the first included, awaits it through
    ``asyncio.shield``: a caller that is cancelled (its client went away) stops waiting, but the
    work goes on for the others and for the cache it fills (E05). An exception reaches every caller
    of that execution and is not remembered: the entry leaves the map when the work ends, so the
    next call runs the work again (E06). Event-loop only; no locks.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[T]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._execute(key, fn), name=f"singleflight:{key}")
            task.add_done_callback(_consume_exception)
            if not task.done():  # an eager task factory may already have finished it
                self._tasks[key] = task
        return await asyncio.shield(task)

    async def _execute(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        finally:
            # Before any waiter resumes: a caller arriving after the outcome starts afresh.
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]


def _consume_exception(task: asyncio.Task[T]) -> None:
    # When every waiter was cancelled nobody retrieves the exception; asyncio would log
    # "Task exception was never retrieved". The waiters that remain still receive it.
    if not task.cancelled():
        task.exception()
