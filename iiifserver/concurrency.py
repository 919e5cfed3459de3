"""Bounded lanes for blocking work.

Owns: running blocking functions (libvips, file I/O) in worker threads with admission control:
each lane has a fixed number of threads, a bounded number of waiters and a queue timeout, and
sheds load with ``ServiceUnavailable`` (503 + Retry-After) instead of queueing without end.
Tiles and large renders have separate lanes so that a flood of big requests cannot starve the
deep-zoom viewers.
Must not know: IIIF, HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

from iiifserver.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")


class Lane:
    def __init__(self, name: str, threads: int, max_waiting: int, queue_timeout: float) -> None:
        self.name = name
        self.threads = threads
        self.max_waiting = max_waiting
        self.queue_timeout = queue_timeout
        self._slots = anyio.CapacityLimiter(threads)
        # Threads of anyio's own pool are capped by our slots; give the pool room for all of them.
        self._pool = anyio.CapacityLimiter(threads)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> int:
        return int(self._slots.borrowed_tokens)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in a thread of this lane; 503 when the lane is saturated.

        A slot stays taken until the thread really ends, even if the client went away: a
        Python timeout cannot stop a C call, so the count must reflect the work being done.
        """
        if self._slots.available_tokens == 0:
            if self._waiting >= self.max_waiting:
                raise ServiceUnavailable(f"server busy ({self.name} queue full)", retry_after=2)
            self._waiting += 1
            try:
                with anyio.fail_after(self.queue_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise ServiceUnavailable(f"server busy ({self.name} queue timeout)", retry_after=5) from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            return await anyio.to_thread.run_sync(
                lambda: fn(*args, **kwargs), limiter=self._pool, abandon_on_cancel=False
            )
        finally:
            self._slots.release()
