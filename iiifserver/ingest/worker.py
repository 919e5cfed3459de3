"""A conversion worker process: what runs inside the pool ``batch.py`` starts.

Owns: the worker's set-up (libvips threads and cache, signals ignored: the parent decides),
converting one master when asked (and publishing it, for an object output: ``publish.py``),
and stopping: when the run's stop event is set, or when the
parent has died (SIGKILL gives it no chance to say so), the conversion in progress is stopped
and cleaned up, and an orphaned worker exits. Kept apart from ``batch.py`` so a worker imports
no more than it needs (no rich, no click).
Must not know: scheduling, progress, the summary.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from iiifserver.ingest import convert as converter
from iiifserver.ingest import publish
from iiifserver.ingest.plan import ConvertOptions, Job

# In a worker process: the run's stop event, the process that started this one, and whether a
# conversion is under way.
_stop: Any = None
_parent = 0
_busy = False


def init(threads: int, stop: Any, parent: int) -> None:
    import pyvips

    global _stop, _parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; see the module docstring
    _stop, _parent = stop, parent
    pyvips.cache_set_max(0)  # nothing is opened twice; cached operations would only hold memory
    pyvips.concurrency_set(threads)
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()


def ready() -> None:
    """Nothing: submitted once per worker so the pool starts its processes early."""


def _orphaned() -> bool:
    return os.getppid() != _parent


def _exit_when_orphaned() -> None:
    """A pool worker whose parent died (SIGKILL) would wait for work forever: an idle one exits
    here; a busy one is stopped by ``_should_stop`` and exits once it has cleaned up."""
    while not _orphaned() or _busy:
        time.sleep(0.2)
    os._exit(1)


def _should_stop() -> bool:
    return bool(_stop is not None and _stop.is_set()) or _orphaned()


def convert(job: Job, options: ConvertOptions) -> converter.Converted:
    global _busy
    _busy = True
    try:
        return publish.convert_and_publish(job, options, should_stop=_should_stop)
    finally:
        _busy = False
        if _orphaned():
            os._exit(1)
