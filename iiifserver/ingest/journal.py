"""The campaign journal: one SQLite row per master, next to the outputs.

Owns: the journal's file (``OUT/.iiifserver-convert.sqlite``, hidden, so neither ``discover`` nor
the server takes it for an image), its one table and the states a master goes through
(queued -> running -> done | failed), with the source's size and modification time, the output,
its SHA-256 (read from the stamp ``convert`` wrote), the attempts, the reason of a failure and
the times; what a run killed outright left behind (rows still queued or running: ``unfinished``);
and batching commits (a commit per master would cost a disk sync each on a million-file campaign).

Why the stamps stay the truth: a row lost in the last second before a crash only means that
master is checked again (its stamp says whether it is up to date). The journal is the
campaign's record, and what a resumed run cleans up after. Only the client writes it (one
process, one thread); workers never touch it, so it may live on a shared folder.
Must not know: pyvips, Dask, scheduling, progress.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from iiifserver.ingest.plan import Job
from iiifserver.ingest.stamp import file_state, read_checksum

JOURNAL_NAME = ".iiifserver-convert.sqlite"
_COMMIT_EVERY_S = 1.0  # at most this much of the record is lost by a crash (see the docstring)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS masters (
    name TEXT PRIMARY KEY,      -- the master as the user knows it (its path relative to the folder given)
    source TEXT NOT NULL,
    source_size INTEGER,
    source_mtime_ns INTEGER,
    state TEXT NOT NULL,        -- queued | running | done | failed
    output TEXT NOT NULL,
    output_sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    queued_at REAL,
    started_at REAL,
    finished_at REAL
)
"""


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    source: str
    source_size: int | None
    source_mtime_ns: int | None
    state: State
    output: str
    output_sha256: str | None
    attempts: int
    reason: str
    queued_at: float | None
    started_at: float | None
    finished_at: float | None


_COLUMNS = ", ".join(f.name for f in fields(Row))


def _row(values: tuple[Any, ...]) -> Row:
    name, source, size, mtime_ns, state, output, sha256, attempts, reason, queued, started, finished = values
    return Row(name, source, size, mtime_ns, State(state), output, sha256, attempts, reason, queued, started, finished)


def journal_path(out_dir: Path) -> Path:
    return out_dir / JOURNAL_NAME


class Journal:
    """The journal of the campaign writing into one output folder."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: transactions are begun and committed here, in batches.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._in_transaction = False
        self._last_commit = time.monotonic()

    @classmethod
    def for_output(cls, out_dir: Path) -> Journal:
        return cls(journal_path(out_dir))

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.commit()
        self._db.close()

    def unfinished(self) -> list[Row]:
        """Masters a run left queued or running: it was killed (or its scheduler was lost)."""
        query = f"SELECT {_COLUMNS} FROM masters WHERE state IN (?, ?) ORDER BY name"
        return [_row(values) for values in self._db.execute(query, (State.QUEUED.value, State.RUNNING.value))]

    def rows(self) -> list[Row]:
        return [_row(values) for values in self._db.execute(f"SELECT {_COLUMNS} FROM masters ORDER BY name")]

    def row(self, name: str) -> Row | None:
        values = self._db.execute(f"SELECT {_COLUMNS} FROM masters WHERE name=?", (name,)).fetchone()
        return None if values is None else _row(values)

    def queued(self, jobs: Iterable[Job]) -> None:
        """These masters are to be converted in this run (attempts start again at 0); committed
        at once, so the plan is on disk before any work starts."""
        self._upsert(jobs)
        self.commit()

    def _upsert(self, jobs: Iterable[Job]) -> None:
        now = time.time()
        self._begin()
        for job in jobs:
            state = file_state(job.source)
            self._db.execute(
                "INSERT INTO masters (name, source, source_size, source_mtime_ns, state, output, output_sha256,"
                " attempts, reason, queued_at, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, NULL, 0, '', ?,"
                " NULL, NULL) ON CONFLICT(name) DO UPDATE SET source=excluded.source,"
                " source_size=excluded.source_size, source_mtime_ns=excluded.source_mtime_ns, state=excluded.state,"
                " output=excluded.output, output_sha256=NULL, attempts=0, reason='', queued_at=excluded.queued_at,"
                " started_at=NULL, finished_at=NULL",
                (
                    job.name,
                    str(job.source),
                    state.size if state else None,
                    state.mtime_ns if state else None,
                    State.QUEUED.value,
                    str(job.output),
                    now,
                ),
            )

    def running(self, job: Job) -> None:
        """Sent to a worker (once more): one more attempt."""
        self._update(
            job,
            "state=?, attempts=attempts+1, started_at=?, reason=''",
            (State.RUNNING.value, time.time()),
        )

    def requeued(self, job: Job, reason: str) -> None:
        """The attempt ended without an outcome (its worker died); it will be sent again."""
        self._update(job, "state=?, reason=?", (State.QUEUED.value, reason))

    def done(self, job: Job) -> None:
        self._update(
            job,
            "state=?, output_sha256=?, reason='', finished_at=?",
            (State.DONE.value, read_checksum(job.output), time.time()),
        )

    def skipped(self, job: Job) -> None:
        """Up to date: done, by this run or an earlier one (a done row keeps its times)."""
        row = self.row(job.name)
        if row is not None and row.state is State.DONE and row.output == str(job.output):
            return
        self._upsert([job])
        self.done(job)

    def failed(self, job: Job, reason: str) -> None:
        if self.row(job.name) is None:
            self._upsert([job])
        self._update(job, "state=?, reason=?, finished_at=?", (State.FAILED.value, reason, time.time()))

    def commit(self) -> None:
        if self._in_transaction:
            self._db.execute("COMMIT")
            self._in_transaction = False
        self._last_commit = time.monotonic()

    def _begin(self) -> None:
        if not self._in_transaction:
            self._db.execute("BEGIN")
            self._in_transaction = True

    def _update(self, job: Job, assignments: str, values: tuple[object, ...]) -> None:
        self._begin()
        self._db.execute(f"UPDATE masters SET {assignments} WHERE name=?", (*values, job.name))
        if time.monotonic() - self._last_commit >= _COMMIT_EVERY_S:
            self.commit()
