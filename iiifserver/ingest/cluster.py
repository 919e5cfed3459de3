"""Converting a batch on a Dask cluster: ``iiifserver convert --cluster ADDRESS | local:N``.

Owns: reaching the cluster (a running scheduler at ADDRESS, or a ``LocalCluster`` of N worker
processes of one thread each that the command starts and closes), submitting the planned
masters in bounded waves (as many in flight as the cluster has worker threads, topped up as tasks
finish, so a million-file batch never floods the scheduler), each task declaring its memory
estimate as the Dask resource ``MEMORY`` (capped at the largest worker's, so a big master still
runs, alone on its worker, as the local pool would), the task run on a worker (the shared
``publish.convert_and_publish``: convert, and publish to object storage when asked; a retry
of a task whose result was lost finds the output up to date and reuses it, so no master is
converted twice), retries of a master whose worker died (own counting, ``--retries``; a
master that crashes libvips kills its worker, not the batch), the journal's running/requeued
states, and cleaning up what a killed run left.
The plan, the up-to-date rule, the progress bar, the summary and the journal's other states are
``batch.run_planned``'s, shared with the local pool.

The only module that imports dask or distributed (an import-linter contract says so): the
``cluster`` extra installs them. Must not know: click, the pipeline's details, HTTP.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import distributed
import pyvips
from rich.console import Console

from iiifserver.ingest import convert as converter
from iiifserver.ingest import publish
from iiifserver.ingest.batch import BatchOptions, Pending, Recorder, one_line, run_planned, up_to_date
from iiifserver.ingest.journal import Journal
from iiifserver.ingest.plan import ConvertOptions, Job
from iiifserver.ingest.report import Summary

LOCAL_PREFIX = "local:"
RESOURCE = "MEMORY"  # the Dask resource: bytes a worker lets its conversions take together
DEFAULT_RETRIES = 2
# Tasks in flight per worker thread. One: Dask sends a task with resource restrictions to a
# worker at once, and every task waiting on a worker that dies is counted as killed by it, so a
# second one per thread would make a dead worker fail (or use up a retry of) a master it never
# started. The gap between one task and the next is a round trip, milliseconds against seconds.
TASKS_PER_THREAD = 1
_REFRESH_S = 5.0  # how often the cluster's size is asked again (workers come and go)
_CONNECT_TIMEOUT_S = 30.0
_WORKERS_TIMEOUT_S = 120.0


class ClusterError(Exception):
    """The cluster cannot be used (bad address, no scheduler, no workers); one line."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the batch runs: a scheduler's address, or a local cluster of ``workers`` processes."""

    address: str | None
    workers: int = 0

    @classmethod
    def parse(cls, text: str) -> Target:
        """``local:N`` or a scheduler address (``tcp://host:8786``). Raises ``ClusterError``."""
        text = text.strip()
        if text.startswith(LOCAL_PREFIX):
            count = text[len(LOCAL_PREFIX) :]
            if not count.isdigit() or int(count) < 1:
                raise ClusterError(f"{text!r}: expected local:N with N workers, N >= 1")
            return cls(None, int(count))
        if "://" not in text or not text.split("://", 1)[1]:
            raise ClusterError(f"{text!r}: expected a scheduler address such as tcp://host:8786, or local:N")
        return cls(text)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a task sends back: small, so the scheduler holds no pixels."""

    converted: converter.Converted | None  # None: the master failed, see ``reason``
    reason: str = ""
    reused: bool = False  # the output was already made (by an attempt whose result was lost)
    pid: int = 0  # the worker process that did it


def run_cluster(
    target: Target,
    paths: Sequence[Path],
    out_dir: Path,
    options: ConvertOptions,
    batch: BatchOptions,
    *,
    retries: int = DEFAULT_RETRIES,
    console: Console | None = None,
    destination: str = "",
) -> Summary:
    """Convert what needs converting on the cluster; the journal in ``out_dir`` records it all."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    local = target.address is None
    with Journal.for_output(out_dir) as journal, ExitStack() as stack:
        # A local run killed outright: its workers' temporary files (their processes are gone).
        # Not for a remote cluster, whose workers' process ids mean nothing here: there a worker
        # removes a dead worker's temporary file when it converts that master again.
        for row in journal.unfinished() if local else []:
            converter.remove_stale_temporaries(Path(row.output))
        client = stack.enter_context(_connect(target, batch))
        made_after_ns = time.time_ns() if batch.force else None
        # Local workers share this machine's cores as the local pool's processes do.
        threads = max(1, (os.cpu_count() or 1) // target.workers) if local else None
        runner = _Runner(client, options, retries, console, journal, _TaskSettings(made_after_ns, threads))
        try:
            return run_planned(
                paths,
                out_dir,
                options,
                batch,
                console,
                runner.run,
                started=started,
                journal=journal,
                destination=destination,
            )
        finally:
            journal.commit()
            stack.close()  # a local cluster's workers are gone now: what they were writing can go
            for job in runner.in_flight_jobs() if local else []:
                converter.remove_stale_temporaries(job.output)


def local_resources(memory_budget_mb: int, workers: int) -> dict[str, float]:
    """A local worker's share of the memory budget, as its ``MEMORY`` resource."""
    return {RESOURCE: float(memory_budget_mb * 2**20 // workers)}


@contextmanager
def _connect(target: Target, batch: BatchOptions) -> Iterator[distributed.Client]:
    with ExitStack() as stack:
        if target.address is None:
            # A worker that dies fails its task at once (KilledWorker): --retries decides what then.
            stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": 0}))
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=target.workers,
                    threads_per_worker=1,
                    processes=True,
                    resources=local_resources(batch.memory_budget_mb, target.workers),
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(target.address, timeout=_CONNECT_TIMEOUT_S))
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the scheduler at {target.address}: {one_line(exc)}") from None
            try:
                client.wait_for_workers(1, timeout=_WORKERS_TIMEOUT_S)
            except TimeoutError:
                raise ClusterError(
                    f"no worker joined the scheduler at {target.address} within {_WORKERS_TIMEOUT_S:.0f} s"
                ) from None
        yield client


class _Lost(KeyboardInterrupt):
    """The scheduler is gone: the run ends as interrupted; the same command resumes it."""


class _Runner:
    """Submits the pending masters in waves and turns the tasks' ends into outcomes."""

    def __init__(
        self,
        client: distributed.Client,
        options: ConvertOptions,
        retries: int,
        console: Console,
        journal: Journal,
        settings: _TaskSettings,
    ) -> None:
        self._client = client
        self._journal = journal
        self._options = options
        self._retries = retries
        self._console = console
        self._settings = settings
        self._run_id = uuid.uuid4().hex[:12]  # keys unique across runs on a long-lived scheduler
        self._in_flight: dict[distributed.Future[TaskResult], tuple[int, Pending, int]] = {}
        self._capacity: float | None = None
        self._limit = TASKS_PER_THREAD
        self._refreshed = -_REFRESH_S
        self._warned = False

    def in_flight_jobs(self) -> list[Job]:
        return [item.job for _, item, _ in self._in_flight.values()]

    def run(self, pending: Sequence[Pending], record: Recorder) -> None:
        queue: deque[tuple[int, Pending, int]] = deque((i, item, 1) for i, item in enumerate(pending))
        completed = distributed.as_completed()
        try:
            while queue or self._in_flight:
                self._refresh()
                while queue and len(self._in_flight) < self._limit:
                    index, item, attempt = queue.popleft()
                    future = self._submit(index, item, attempt)
                    self._in_flight[future] = (index, item, attempt)
                    completed.add(future)
                    self._journal.running(item.job)
                future = next(completed)
                index, item, attempt = self._in_flight.pop(future)
                retry = self._finish(future, item, attempt, record)
                if retry is not None:
                    self._journal.requeued(item.job, retry)
                    queue.appendleft((index, item, attempt + 1))  # first in line: masters finish in order
                future.release()
        except KeyboardInterrupt:
            # Queued tasks are dropped; one already running on a remote worker ends by itself,
            # publishing a whole file or none (a local cluster's workers are closed right after).
            self._client.cancel(list(self._in_flight))
            raise

    def _submit(self, index: int, item: Pending, attempt: int) -> distributed.Future[TaskResult]:
        resources = None if self._capacity is None else {RESOURCE: min(float(item.estimate), self._capacity)}
        return self._client.submit(
            convert_task,
            item.job,
            self._options,
            self._settings,
            key=f"iiifserver-convert-{self._run_id}-{index}-{attempt}",
            resources=resources,
            pure=False,
        )

    def _finish(
        self, future: distributed.Future[TaskResult], item: Pending, attempt: int, record: Recorder
    ) -> str | None:
        """Record the task's outcome; a reason to try it again, or None."""
        try:
            result: TaskResult = future.result()
        except distributed.CancelledError as exc:  # a BaseException: not caught below
            if getattr(exc, "reason", "") == "scheduler-connection-lost" or self._client.status != "running":
                self._console.print("the connection to the scheduler was lost: run the same command again to resume")
                raise _Lost from None
            record.failed(item, f"cancelled on the cluster ({getattr(exc, 'reason', 'no reason given')})")
            return None
        except distributed.KilledWorker as exc:
            # That worker is gone (the scheduler says so): its temporary file is garbage, on any host.
            _remove_temporary(item.job, exc.last_worker.pid)
            reason = f"its worker died {attempt} time(s) converting it (killed, out of memory, or libvips crashed)"
            if attempt <= self._retries:
                return reason
            record.failed(item, reason)
            return None
        except Exception as exc:  # e.g. the workers run another iiifserver: this master's error only
            record.failed(item, one_line(exc))
            return None
        if result.converted is None:
            record.failed(item, result.reason)
        else:
            record.converted(item, result.converted)
        return None

    def _refresh(self) -> None:
        """The wave's size and the largest MEMORY resource, from the workers there are now."""
        now = time.monotonic()
        if now - self._refreshed < _REFRESH_S:
            return
        self._refreshed = now
        try:
            workers: dict[str, Any] = dict(self._client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception:  # the scheduler is unreachable: its cancelled futures will say so
            return
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
        self._limit = max(1, TASKS_PER_THREAD * threads)
        capacities = [float(w.get("resources", {}).get(RESOURCE, 0)) for w in workers.values()]
        self._capacity = max(capacities) if capacities and max(capacities) > 0 else None
        if self._capacity is None and workers and not self._warned:
            self._warned = True
            self._console.print(
                f"note: no worker declares the {RESOURCE} resource (dask worker --resources {RESOURCE}=BYTES): "
                "conversions are limited by the workers' threads only"
            )


def _remove_temporary(job: Job, pid: int | None) -> None:
    """The temporary file a dead worker process left for this output (named as ``convert.convert``
    names it: ``.NAME.PID.convert-part``)."""
    if pid:
        job.output.with_name(f".{job.output.name}.{pid}{converter.TEMP_SUFFIX}").unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _TaskSettings:
    """What every task is told besides its master and the options."""

    made_after_ns: int | None  # --force: only an output made since then counts as made by this run
    vips_threads: int | None  # libvips threads per conversion; None: the worker decides


# In a worker process: whether libvips was set up for conversions.
_libvips_ready = False


def _set_up_libvips(threads: int | None) -> None:
    """Once per worker process: no operation cache, and libvips' threads: as told (a local
    cluster shares the cores as the local pool does), else VIPS_CONCURRENCY when the worker's
    environment sets it (several worker processes on one machine, a container's CPU share), else
    the cores shared among the worker's threads."""
    global _libvips_ready
    if _libvips_ready:
        return
    _libvips_ready = True
    pyvips.cache_set_max(0)
    if threads is None:
        if os.environ.get("VIPS_CONCURRENCY", "").isdigit():
            return  # libvips read it when it started
        threads = max(1, (os.cpu_count() or 1) // max(1, distributed.get_worker().state.nthreads))
    pyvips.concurrency_set(threads)


def convert_task(job: Job, options: ConvertOptions, settings: _TaskSettings) -> TaskResult:
    """One master, on a worker: the task every submission runs. Errors are results, so the
    only exceptions the client sees are the cluster's (a worker that died: ``KilledWorker``)."""
    _set_up_libvips(settings.vips_threads)
    try:
        if up_to_date(job, options):
            # Made since the run planned it: an earlier attempt whose result was lost (its worker
            # died after finishing). With --force, only an output made during this run counts.
            state = publish.output_state(job)
            made_after_ns = settings.made_after_ns
            if made_after_ns is not None and job.destination:  # the store's times have whole seconds
                made_after_ns = made_after_ns // 1_000_000_000 * 1_000_000_000
            if state is not None and (made_after_ns is None or state.mtime_ns >= made_after_ns):
                header = converter.inspect(job.source)
                made = converter.Converted(header.width, header.height, 0.0, state.size)
                return TaskResult(made, reused=True, pid=os.getpid())
        return TaskResult(publish.convert_and_publish(job, options), pid=os.getpid())
    except converter.ConvertError as exc:
        return TaskResult(None, reason=str(exc), pid=os.getpid())
    except Exception as exc:  # one master's unexpected error must not look like a dead worker
        return TaskResult(None, reason=one_line(exc), pid=os.getpid())
