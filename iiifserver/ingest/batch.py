"""Many masters: plan, skip what is up to date, convert the rest in parallel, summarise.

Owns: the run as a whole. Masters are converted by worker processes (``pool.py``,
``worker.py``), one master per process at a time, started in natural order while the job count
and the memory budget allow (``plan.admit``). One master's failure is its own outcome, never
the run's end. SIGINT or SIGTERM stops the run: the pool's stop event tells the workers, each
stops its libvips pipeline and removes its temporary file, and the summary says the run was
interrupted (workers ignore signals themselves: Ctrl-C reaches the whole process group). Also
the progress bar (rich): files, megapixels, speed and ETA. ``run_planned`` is the run without its
executor, which ``cluster.py`` shares (plan, skips, headers, progress, summary), and it keeps a
``journal.py`` journal in step when given one.
Must not know: the pipeline's details, click, HTTP. Imports pyvips only through ``convert``.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from iiifserver.errors import ServiceUnavailable
from iiifserver.ingest import convert as converter
from iiifserver.ingest import publish, worker
from iiifserver.ingest.journal import Journal
from iiifserver.ingest.plan import (
    ConvertOptions,
    Header,
    Job,
    admit,
    discover,
    is_up_to_date,
    memory_estimate,
    natural_key,
    plan_outputs,
)
from iiifserver.ingest.pool import Pool
from iiifserver.ingest.report import Outcome, Status, Summary, failure_line
from iiifserver.ingest.stamp import file_state, read_stamp


@dataclass(frozen=True, slots=True)
class Pending:
    job: Job
    header: Header
    estimate: int


@dataclass(frozen=True, slots=True)
class BatchOptions:
    jobs: int = 1
    memory_budget_mb: int = 2048
    force: bool = False
    progress: bool = True


def run_batch(
    paths: Sequence[Path],
    out_dir: Path,
    options: ConvertOptions,
    batch: BatchOptions,
    console: Console | None = None,
    pool: Pool | None = None,
    journal: Journal | None = None,
    destination: str = "",
) -> Summary:
    """Convert what needs converting. ``pool``: workers already started (the command starts
    them first thing); else made here. Either way it is shut down at the end. ``journal``: each
    master's state is recorded there too. ``destination``: an ``s3://`` prefix the outputs are
    published under (``out_dir`` is then the staging folder, see ``publish.py``)."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    pool = pool or Pool(batch.jobs)
    try:
        return run_planned(
            paths,
            out_dir,
            options,
            batch,
            console,
            lambda pending, record: _run_pool(pending, options, batch, record, pool),
            warm_up=pool.warm_up,
            started=started,
            journal=journal,
            destination=destination,
        )
    finally:
        pool.shutdown()


Execute = Callable[[Sequence[Pending], "Recorder"], None]


def run_planned(
    paths: Sequence[Path],
    out_dir: Path,
    options: ConvertOptions,
    batch: BatchOptions,
    console: Console,
    execute: Execute,
    *,
    warm_up: Callable[[], None] = lambda: None,
    started: float | None = None,
    journal: Journal | None = None,
    destination: str = "",
) -> Summary:
    """Plan, skip what is up to date, read the headers, then ``execute`` the rest (the local pool,
    or a Dask cluster: ``cluster.py``) with the progress bar; SIGINT/SIGTERM interrupt it.
    ``journal``: each master's state is recorded there too."""
    started = time.perf_counter() if started is None else started
    planned, refused = plan_outputs(discover(paths, out_dir), out_dir, destination)
    outcomes = [Outcome(r.name, Status.FAILED, reason=r.reason) for r in refused]
    to_convert: list[Job] = []
    store_down = False  # after one unanswered HEAD the store is not asked again: a silent one costs a timeout each
    for job in planned:
        try:
            if store_down and job.destination:
                raise ServiceUnavailable("the object store did not answer")
            current = not batch.force and up_to_date(job, options)
        except ServiceUnavailable:  # the object store (HEAD) did not answer: this master fails, not the run
            store_down = True
            reason = f"object store unreachable or refusing (checking {job.destination})"
            outcomes.append(Outcome(job.name, Status.FAILED, reason=reason))
            if journal is not None:
                journal.failed(job, reason)
            continue
        if current:
            outcomes.append(Outcome(job.name, Status.SKIPPED, job.output))
            if journal is not None:
                journal.skipped(job)
        else:
            to_convert.append(job)
    if to_convert:
        warm_up()  # the workers start (a fraction of a second each) while the headers are read
    pending: list[Pending] = []
    for job in to_convert:
        try:
            header = converter.inspect(job.source)
        except converter.ConvertError as exc:
            outcomes.append(Outcome(job.name, Status.FAILED, reason=str(exc)))
            if journal is not None:
                journal.failed(job, str(exc))
            continue
        pending.append(Pending(job, header, memory_estimate(header, options.tile_size)))
    if journal is not None:
        journal.queued([item.job for item in pending])
    for outcome in outcomes:
        if outcome.status is Status.FAILED and batch.progress:
            console.print(failure_line(outcome), markup=False, highlight=False)
    interrupted = False
    with _progress_bar(console, pending, enabled=batch.progress, journal=journal) as record, _signals_interrupt():
        try:
            execute(pending, record)
        except KeyboardInterrupt:
            interrupted = True
        outcomes.extend(record.outcomes)
    if journal is not None:
        journal.commit()
    outcomes.sort(key=lambda o: natural_key(o.name))
    return Summary(tuple(outcomes), time.perf_counter() - started, interrupted)


def up_to_date(job: Job, options: ConvertOptions) -> bool:
    """The output exists and its stamp vouches for it (``plan.is_up_to_date``); for an object,
    its metadata does (``publish.is_published``: raises ``ServiceUnavailable`` when the store
    does not answer)."""
    if job.destination:
        return publish.is_published(job, options)
    source_state = file_state(job.source)
    if source_state is None:
        return False
    return is_up_to_date(
        os.path.realpath(job.source),
        source_state,
        file_state(job.output),
        read_stamp(job.output),
        options.fingerprint(),
    )


class Recorder:
    """Collects outcomes, moves the progress bar, and keeps the journal (if any) in step."""

    def __init__(
        self, advance: Callable[[float], None], say: Callable[[str], None], journal: Journal | None = None
    ) -> None:
        self.outcomes: list[Outcome] = []
        self._advance = advance
        self._say = say
        self._journal = journal

    def converted(self, item: Pending, result: converter.Converted) -> None:
        self.outcomes.append(Outcome(item.job.name, Status.CONVERTED, item.job.output, result.megapixels))
        if self._journal is not None:
            self._journal.done(item.job)
        self._advance(item.header.megapixels)

    def failed(self, item: Pending, reason: str) -> None:
        outcome = Outcome(item.job.name, Status.FAILED, reason=reason)
        self.outcomes.append(outcome)
        if self._journal is not None:
            self._journal.failed(item.job, reason)
        self._say(failure_line(outcome))
        self._advance(item.header.megapixels)


def _run_pool(
    pending: Sequence[Pending], options: ConvertOptions, batch: BatchOptions, record: Recorder, pool: Pool
) -> None:
    budget = batch.memory_budget_mb * 2**20
    queue = deque(pending)
    running: dict[Future[converter.Converted], Pending] = {}
    try:
        while queue or running:
            in_flight = sum(item.estimate for item in running.values())
            while queue and admit(queue[0].estimate, in_flight, len(running), budget, pool.jobs):
                item = queue.popleft()
                running[pool.executor.submit(worker.convert, item.job, options)] = item
                in_flight += item.estimate
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                item = running.pop(future)
                try:
                    record.converted(item, future.result())
                except converter.ConvertError as exc:
                    record.failed(item, str(exc))
                except BrokenProcessPool:
                    broken = True
                    record.failed(item, "the converter process died (killed, or out of memory?)")
                except Exception as exc:  # one master's unexpected error must not end the batch
                    record.failed(item, one_line(exc))
            if broken:  # the pool is unusable; the rest go to a new one
                pool.restart()
    except KeyboardInterrupt:
        pool.stop.set()  # running conversions stop and clean up; queued ones refuse to start
        wait(running)
        raise


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    for again in (signal.SIGINT, signal.SIGTERM):
        signal.signal(again, signal.SIG_IGN)  # once is enough; stopping must not be cut short
    raise KeyboardInterrupt


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the run (only the main thread may set handlers)."""
    try:
        previous = {signum: signal.signal(signum, _raise_interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _MegapixelsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.speed
        rate = f" {speed:.1f} MP/s" if speed else ""
        return Text(f"{task.completed:,.0f}/{task.total or 0:,.0f} MP{rate}")


@contextmanager
def _progress_bar(
    console: Console, pending: Sequence[Pending], *, enabled: bool, journal: Journal | None = None
) -> Iterator[Recorder]:
    if not enabled:
        yield Recorder(lambda _mp: None, lambda _line: None, journal)
        return
    total = sum(item.header.megapixels for item in pending)
    progress = Progress(
        TextColumn("converting"),
        BarColumn(),
        TextColumn("{task.fields[done]}/{task.fields[files]} files"),
        _MegapixelsColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("convert", total=max(total, 1e-9), done=0, files=len(pending))
    done = 0

    def advance(megapixels: float) -> None:
        nonlocal done
        done += 1
        progress.update(task, advance=megapixels, done=done)

    with progress:
        yield Recorder(advance, lambda line: progress.console.print(line, markup=False, highlight=False), journal)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
