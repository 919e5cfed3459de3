"""Bounded lanes for blocking work.

Owns: running blocking functions (libvips, file I/O) in worker threads with admission control:
each lane has a fixed number of threads, a bounded number of waiters and a queue timeout, and
sheds load with ``ServiceUnavailable`` (503 + Retry-After) instead of queueing without end.
Tiles and large renders have separate lanes so that a flood of big requests cannot starve the
deep-zoom viewers.
Must not know: IIIF, HTTP.

A thread pool per lane and a count of free threads. A job is handed to a thread in the
caller's own step when one is free; otherwise it waits in a queue, in order, and the thread
that finishes hands its slot to the next waiter. The thread hands its result straight to a
future on the caller's loop: under load every loop iteration takes milliseconds, and asyncio's
own hand-off (``run_in_executor``, wrapped in ``shield`` to survive a cancelled caller) costs
three iterations on the way back where this costs two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from iiifserver.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")


class Lane:
    def __init__(self, name: str, threads: int, max_waiting: int, queue_timeout: float) -> None:
        self.name = name
        self.threads = threads
        self.max_waiting = max_waiting
        self.queue_timeout = queue_timeout
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"iiif-{name}")
        self._free = threads
        self._queue: deque[asyncio.Future[None]] = deque()  # waiters for a slot, in order
        self._busy = 0
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> int:
        return self._busy

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Run ``fn`` in a thread of this lane; await the result. 503 when the lane is saturated.

        Call it from the event loop. With a thread free the job starts before this returns.
        A slot stays taken until the thread really ends, even if the caller is cancelled (the
        client went away): a Python timeout cannot stop a C call, so the count must reflect the
        work being done.
        """
        loop = asyncio.get_running_loop()
        if self._free > 0 and not self._queue:
            self._free -= 1
            return self._start(loop, fn, args, kwargs)
        return self._queued(loop, fn, args, kwargs)

    async def _queued(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        if self._free > 0 and not self._queue:  # a thread came free since ``run`` was called
            self._free -= 1
            return await self._start(loop, fn, args, kwargs)
        if self._waiting >= self.max_waiting:
            raise ServiceUnavailable(f"server busy ({self.name} queue full)", retry_after=2)
        turn: asyncio.Future[None] = loop.create_future()
        self._queue.append(turn)
        self._waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a slot in the same iteration: pass it on
            else:
                turn.cancel()  # _release skips it
            if isinstance(exc, TimeoutError):
                raise ServiceUnavailable(f"server busy ({self.name} queue timeout)", retry_after=5) from None
            raise
        finally:
            self._waiting -= 1
        return await self._start(loop, fn, args, kwargs)

    def _start(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[T]:
        """Hand the job to a thread; the caller holds a slot."""
        self._busy += 1
        done: asyncio.Future[T] = loop.create_future()
        try:
            self._executor.submit(self._work, loop, done, fn, args, kwargs)
        except BaseException:  # shut down
            self._busy -= 1
            self._release()
            raise
        # Cancelling the caller cancels ``done`` only; the thread goes on and ``_deliver`` gives
        # the slot back when it has really finished.
        return done

    def _work(
        self,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        error: BaseException | None = None
        result: Any = None
        try:
            result = fn(*args, **kwargs)
        except StopIteration as exc:  # a future cannot carry it (as in run_in_executor's futures)
            error = RuntimeError(f"StopIteration from {fn!r}")
            error.__cause__ = exc
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(self._deliver, done, result, error)

    def _deliver(self, done: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
        self._busy -= 1
        self._release()
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def _release(self) -> None:
        """A slot is free: the first waiter still waiting gets it, else it counts as free."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
