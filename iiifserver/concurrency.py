"""Bounded lanes for blocking work.

Owns: running blocking functions (libvips, file I/O) in worker threads with admission control:
each lane has a fixed number of threads, a bounded number of waiters and a queue timeout, and
sheds load with ``ServiceUnavailable`` (503 + Retry-After) instead of queueing without end.
Tiles and large renders have separate lanes so that a flood of big requests cannot starve the
deep-zoom viewers. A job whose caller leaves while it waits (the client went away, a deadline
passed) is dropped before it starts; one already running cannot be stopped and keeps its slot
until it ends.
Must not know: IIIF, HTTP.

A thread pool per lane and a count of free threads. A job is handed to a thread in the
caller's own step when one is free; otherwise it waits in a queue, in order, and the thread
that finishes hands its slot to the next waiter. The thread hands its result straight to a
future on the caller's loop: under load every loop iteration takes milliseconds, and asyncio's
own hand-off (``run_in_executor``, wrapped in ``shield`` to survive a cancelled caller) costs
three iterations on the way back where this costs two.

A lane may run its threads at a lower scheduling priority (``nice``): the event loop that answers
stored tiles then wins the CPU over pixel work at once instead of sharing it. libvips does a
pipeline's pixel work in its own worker threads, which inherit the nice value of the thread that
creates them and are reused by later pipelines of any lane, so render lanes should share one
value (the server gives the tile and heavy lanes the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from iiifserver.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")
Deliver = Callable[[T | None, BaseException | None], None]  # (result, error) of a job, on the loop


def _lower_priority(nice: int) -> None:
    """Add ``nice`` to the calling thread's nice value (Linux: per thread), once, as it starts.

    Raising it needs no privilege; where it fails (another OS) the thread runs at the usual
    priority, which is only slower under contention, never wrong.
    """
    if nice <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class Lane:
    def __init__(self, name: str, threads: int, max_waiting: int, queue_timeout: float, nice: int = 0) -> None:
        self.name = name
        self.threads = threads
        self.max_waiting = max_waiting
        self.queue_timeout = queue_timeout
        self.nice = nice
        self._executor = ThreadPoolExecutor(
            threads, thread_name_prefix=f"iiif-{name}", initializer=_lower_priority, initargs=(nice,)
        )
        self._free = threads
        self._queue: deque[asyncio.Future[None]] = deque()  # waiters for a slot, in order
        self._busy = 0
        self._waiting = 0
        self.dropped = 0  # jobs whose caller left while they waited: never started

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def has_free_thread(self) -> bool:
        """A job submitted now starts at once, waiting behind none."""
        return self._free > 0 and not self._queue

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Run ``fn`` in a thread of this lane; await the result. 503 when the lane is saturated.

        Call it from the event loop. With a thread free the job starts before this returns.
        A slot stays taken until the thread really ends, even if the caller is cancelled (the
        client went away): a Python timeout cannot stop a C call, so the count must reflect the
        work being done.
        """
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def deliver(result: T | None, error: BaseException | None) -> None:
            if done.cancelled():  # the caller left; the slot is back all the same
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        waiting = self.submit(lambda: fn(*args, **kwargs), deliver)
        # Cancelling the caller cancels ``done`` only; the thread goes on.
        return done if waiting is None else self._then(waiting, done)

    @staticmethod
    async def _then(waiting: Awaitable[None], done: asyncio.Future[T]) -> T:
        try:
            await waiting
        except BaseException:
            done.cancel()
            raise
        return await done

    def submit(self, fn: Callable[[], T], deliver: Deliver[T]) -> Awaitable[None] | None:
        """Run ``fn`` in a thread; ``deliver(result, error)`` is called on the loop in the
        iteration its outcome arrives, after the slot is given back.

        None: the job has started. Otherwise a thread must come free first: the returned
        awaitable waits for one and starts the job (503 when the queue is full or the wait too
        long; then ``deliver`` is never called). Call it from the event loop.
        """
        loop = asyncio.get_running_loop()
        if self.has_free_thread:
            self._free -= 1
            self._start(loop, fn, deliver)
            return None
        return self._queued(loop, fn, deliver)

    async def _queued(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], T], deliver: Deliver[T]) -> None:
        if self.has_free_thread:  # a thread came free since ``submit`` was called
            self._free -= 1
            self._start(loop, fn, deliver)
            return
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
            self.dropped += 1
            raise
        finally:
            self._waiting -= 1
        self._start(loop, fn, deliver)

    def _start(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], T], deliver: Deliver[T]) -> None:
        """Hand the job to a thread; the caller holds a slot."""
        self._busy += 1
        try:
            self._executor.submit(self._work, loop, fn, deliver)
        except BaseException:  # shut down
            self._busy -= 1
            self._release()
            raise

    def _work(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], T], deliver: Deliver[T]) -> None:
        error: BaseException | None = None
        result: T | None = None
        try:
            result = fn()
        except StopIteration as exc:  # a future cannot carry it (as in run_in_executor's futures)
            error = RuntimeError(f"StopIteration from {fn!r}")
            error.__cause__ = exc
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(self._deliver, deliver, result, error)

    def _deliver(self, deliver: Deliver[T], result: T | None, error: BaseException | None) -> None:
        self._busy -= 1
        self._release()
        deliver(result, error)

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
