"""The pool of conversion worker processes.

Owns: starting them (``spawn``: libvips keeps threads, which ``fork`` would copy half-alive),
the libvips threads each gets (the cores shared out), the run's stop event, replacing a broken
pool, and shutting down. Lighter to import than ``batch.py`` (no rich), so the command can start the
workers before anything else. Must not know: what is converted, scheduling, progress.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from iiifserver.ingest import worker


class Pool:
    """The worker processes, their stop event, and a fresh pool if one breaks."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self.context = multiprocessing.get_context("spawn")
        self.stop = self.context.Event()
        # libvips threads per worker: the cores shared out, so parallel files do not oversubscribe.
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self._executor: ProcessPoolExecutor | None = None
        self._warm = False

    @property
    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=self.context,
                initializer=worker.init,
                initargs=(self.threads, self.stop, os.getpid()),
            )
        return self._executor

    def warm_up(self) -> None:
        """Start the worker processes now (a fraction of a second each), once."""
        if not self._warm:
            self._warm = True
            for _ in range(self.jobs):  # the pool starts a process per task while none is idle
                self.executor.submit(worker.ready)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def restart(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
