"""Keep-alive connections evened out across the worker processes.

Owns: publishing this worker's count of open connections in the run folder (a file per worker
process, ``connections/<pid>``), reading the other workers' counts, and the budget of keep-alive
connections this worker closes after a response (``connection: close``) while it holds more
than its share; and removing a gone worker's file (``forget``, from the supervisor).
Also owns: finding the run folder (``serve`` names it in the environment) and keeping one
``Balance`` per worker process (``for_this_process``).
Must not know: IIIF, the app, HTTP beyond "close after this response" (``web.http_protocol``
asks ``take``), the sweep that drives it (``web.connection_guard``).

Why: each worker accepts on its own ``SO_REUSEPORT`` socket (``serving``) and the kernel places
a new connection by a hash of its addresses and ports, once. A client that opens many keep-alive
connections at once (a proxy's upstream pool, a load generator, a harvester) gets them spread
unevenly, and they stay so: 23 on one worker and 41 on the other for a whole 20-second run of the
mixed workload at 64 connections. The workers share the CPU evenly, so the fuller one's renders
wait nearly twice as long, and its requests make the tail of the latency. A worker over its share
answers a few requests with ``connection: close``; the client opens new connections (HTTP/1.1
clients and proxies do so by themselves) and the kernel places each one again, evenly on
average, until the counts differ by one or two (a few seconds: each second a worker closes
about what it should lose, times the workers over the workers less one, since that share of
the new connections comes back to it). Only connections with nothing else in flight
are closed this way, after a complete response: no request is lost.

How, cheaply: counts are exchanged through small files, written and read by the guard's sweep
(at most once a second, and when the last connection leaves); a request only reads an integer.
Counts older than ``STALE`` seconds (a worker stopped without its file being removed) or of a
process that is gone are ignored.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

from iiifserver.config import METRICS_DIR_ENV

log = logging.getLogger(__name__)

FOLDER = "connections"  # under the run folder
STALE = 10.0  # seconds: a count not written for this long is not believed
LOG_INTERVAL = 60.0  # seconds: at most one log line of closed connections in this time


class Balance:
    """One per worker process: its published count and its budget of connections to close."""

    def __init__(self, run_folder: Path, pid: int | None = None) -> None:
        self.folder = run_folder / FOLDER
        self.pid = pid if pid is not None else os.getpid()
        self.folder.mkdir(exist_ok=True)
        self._fd = os.open(self.folder / str(self.pid), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.budget = 0  # connections still to close after their response
        self.closed = 0  # closed since the last log line
        self._logged = -LOG_INTERVAL
        self._published = -1

    def publish(self, count: int) -> None:
        """Write this worker's count of open connections (only when it changed)."""
        if count != self._published:
            data = f"{count:<12d}".encode("ascii")  # fixed width: a reader never sees half of two numbers
            os.pwrite(self._fd, data, 0)
            self._published = count
        else:
            os.utime(self._fd)  # still believed: its age says this worker is alive

    def others(self, now: float | None = None) -> list[int]:
        """The other live workers' counts."""
        now = time.time() if now is None else now
        counts = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if not entry.name.isdigit() or int(entry.name) == self.pid:
                    continue
                count = _read_count(entry, now)
                if count is not None:
                    counts.append(count)
        return counts

    def refresh(self, count: int, now: float | None = None) -> None:
        """Publish ``count`` and set the budget: enough connections to close that, as the kernel
        places their successors at random, this worker is left with about its share (the total
        over the live workers, rounded up), when it holds at least two more than the emptiest
        worker (one more is what an odd total leaves)."""
        self.publish(count)
        others = self.others(now)
        if not others:
            self.budget = 0
            return
        workers = len(others) + 1
        share = math.ceil((count + sum(others)) / workers)
        excess = count - share if count - min(others) >= 2 else 0
        # A closed connection's successor lands back here one time in ``workers``: closing
        # excess * workers / (workers - 1) leaves about ``excess`` fewer (twice it for two workers).
        self.budget = math.ceil(excess * workers / (workers - 1)) if excess > 0 else 0
        if self.closed and time.monotonic() - self._logged >= LOG_INTERVAL:
            log.info("closed %d keep-alive connections after their response to even out the workers", self.closed)
            self.closed = 0
            self._logged = time.monotonic()

    def take(self) -> bool:
        """Whether to close the connection after the response being written (uses the budget)."""
        if self.budget <= 0:
            return False
        self.budget -= 1
        self.closed += 1
        return True

    def close(self) -> None:
        """Stop publishing and remove this worker's file."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        forget(self.folder.parent, self.pid)


def _read_count(entry: os.DirEntry[str], now: float) -> int | None:
    try:
        if now - entry.stat().st_mtime > STALE:
            return None
        os.kill(int(entry.name), 0)  # raises when the process is gone
        with open(entry.path, "rb") as fh:
            return int(fh.read(32).strip() or b"0")
    except (OSError, ValueError):  # gone, unreadable, or half-written by a dying worker
        return None


def forget(run_folder: Path, pid: int) -> None:
    """Remove a gone worker's count (the supervisor calls it for every worker that exits)."""
    with contextlib.suppress(OSError):
        (run_folder / FOLDER / str(pid)).unlink()


_balances: dict[tuple[int, str], Balance] = {}


def for_this_process() -> Balance | None:
    """This worker process's ``Balance`` in the run folder ``serve`` made (one per process and
    run: the start-up check's guard shares it), or None: no run folder (a test's app, a tool) or
    one that cannot be written (logged)."""
    folder = os.environ.get(METRICS_DIR_ENV)
    if not folder:
        return None
    key = (os.getpid(), folder)
    balance = _balances.get(key)
    if balance is None:
        try:
            balance = _balances[key] = Balance(Path(folder), key[0])
        except OSError as exc:
            log.warning("connections are not evened out across workers: %s", exc)
            return None
    return balance
