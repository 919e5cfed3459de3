"""Bounded lanes for blocking work.

Owns: running blocking functions (libvips, file I/O) in worker threads with admission control:
each lane has a fixed number of threads, a bounded number of waiters and a queue timeout, and
sheds load with ``ServiceUnavailable`` (503 + Retry-After) instead of queueing without end.
Tiles and large renders have separate lanes so that a flood of big requests cannot starve the
deep-zoom viewers.
Must not know: IIIF, HTTP.

Built on asyncio's own executor hand-off (a thread pool per lane and a semaphore): on the
cold-tile path the hop into a thread and back is a large share of a request's cost.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

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
        self._slots: asyncio.Semaphore | None = None  # made in the running loop, on first use
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = 0
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in a thread of this lane; 503 when the lane is saturated.

        A slot stays taken until the thread really ends, even if the caller is cancelled (the
        client went away): a Python timeout cannot stop a C call, so the count must reflect the
        work being done.
        """
        loop = asyncio.get_running_loop()
        slots = self._slots
        if slots is None or self._loop is not loop:
            # One semaphore per event loop (a semaphore is bound to the loop it first waits in).
            slots = self._slots = asyncio.Semaphore(self.threads)
            self._loop = loop
        if slots.locked():
            if self._waiting >= self.max_waiting:
                raise ServiceUnavailable(f"server busy ({self.name} queue full)", retry_after=2)
            self._waiting += 1
            try:
                async with asyncio.timeout(self.queue_timeout):
                    await slots.acquire()
            except TimeoutError:
                raise ServiceUnavailable(f"server busy ({self.name} queue timeout)", retry_after=5) from None
            finally:
                self._waiting -= 1
        else:
            await slots.acquire()
        self._busy += 1
        future = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread goes on: give the slot back only when it has finished.
            future.add_done_callback(lambda _: self._release(slots))
            raise
        except BaseException:
            self._release(slots)
            raise
        self._release(slots)
        return result

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._busy -= 1
        slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
