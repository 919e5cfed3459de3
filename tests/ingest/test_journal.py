"""The campaign journal: states, attempts, checksums from the stamps, what a killed run left, and
the journal kept by a real run of the local pool (the cluster's runs: test_cluster.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from iiifserver.ingest.batch import BatchOptions, run_batch
from iiifserver.ingest.journal import JOURNAL_NAME, Journal, State, journal_path
from iiifserver.ingest.plan import ConvertOptions, Job, discover
from iiifserver.ingest.report import Status
from iiifserver.ingest.stamp import file_sha256, read_checksum
from tests.ingest.conftest import Master, truncate


def job(tmp_path: Path, name: str) -> Job:
    source = tmp_path / "masters" / f"{name}.jpg"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"\xff\xd8\xff" + name.encode())
    return Job(source, tmp_path / "out" / f"{name}.tif", f"{name}.jpg")


def test_states_attempts_and_what_a_killed_run_left(tmp_path: Path) -> None:
    a, b, c = (job(tmp_path, n) for n in ("a", "b", "c"))
    with Journal.for_output(tmp_path / "out") as journal:
        journal.queued([a, b, c])
        first = journal.row("a.jpg")
        assert first is not None
        assert first.state is State.QUEUED
        assert (first.source, first.output) == (str(a.source), str(a.output))
        assert first.source_size == a.source.stat().st_size
        assert first.source_mtime_ns == a.source.stat().st_mtime_ns
        journal.running(a)
        journal.requeued(a, "its worker died 1 time(s)")
        journal.running(a)
        journal.running(b)
        journal.failed(c, "cannot read the master: not a JPEG")
    # Closed without a word about a and b, as a client killed outright would leave it.
    with Journal(journal_path(tmp_path / "out")) as journal:
        rows = {r.name: r for r in journal.rows()}
        assert (rows["a.jpg"].state, rows["a.jpg"].attempts) == (State.RUNNING, 2)
        assert rows["b.jpg"].attempts == 1
        assert rows["c.jpg"].state is State.FAILED
        assert rows["c.jpg"].reason == "cannot read the master: not a JPEG"
        assert rows["c.jpg"].finished_at is not None
        assert [r.name for r in journal.unfinished()] == ["a.jpg", "b.jpg"]
        journal.queued([a])  # the next run plans a again: attempts start over
        again = journal.row("a.jpg")
        assert again is not None
        assert (again.state, again.attempts, again.reason) == (State.QUEUED, 0, "")


def test_done_takes_the_checksum_from_the_stamp_and_skipped_keeps_the_times(tmp_path: Path) -> None:
    a = job(tmp_path, "a")
    a.output.parent.mkdir(parents=True)
    a.output.write_bytes(b"II*\x00 pyramid")
    stamp = a.output.with_name(f".{a.output.name}.convert.json")
    stamp.write_text('{"output_sha256": "' + "ab" * 32 + '"}')
    with Journal.for_output(tmp_path / "out") as journal:
        journal.queued([a])
        journal.running(a)
        journal.done(a)
        done = journal.row("a.jpg")
        assert done is not None
        assert (done.state, done.output_sha256) == (State.DONE, "ab" * 32)
        journal.skipped(a)  # the next run finds it up to date
        assert journal.row("a.jpg") == done
        b = job(tmp_path, "b")
        journal.skipped(b)  # up to date from before the journal: recorded as done
        row_b = journal.row("b.jpg")
        assert row_b is not None
        assert row_b.state is State.DONE


def test_the_plan_is_committed_before_work_starts(tmp_path: Path) -> None:
    journal = Journal.for_output(tmp_path / "out")
    try:
        journal.queued([job(tmp_path, "a")])
        other = sqlite3.connect(journal_path(tmp_path / "out"))
        assert other.execute("SELECT name, state FROM masters").fetchall() == [("a.jpg", "queued")]
        other.close()
    finally:
        journal.close()


def test_a_local_run_keeps_the_journal(masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path) -> None:
    folder, known = masters_dir
    masters = tmp_path / "masters"
    masters.mkdir()
    shutil.copy(folder / known["rotated"].name, masters / "page-1.jpg")
    shutil.copy(folder / known["alpha"].name, masters / "page-2.png")
    truncate(folder / known["rotated"].name, masters / "page-3.jpg", 0.5)
    out = tmp_path / "out"
    with Journal.for_output(out) as journal:
        summary = run_batch([masters], out, ConvertOptions(), BatchOptions(jobs=2, progress=False), journal=journal)
        assert (summary.count(Status.CONVERTED), summary.count(Status.FAILED)) == (2, 1)
        rows = {r.name: r for r in journal.rows()}
    assert rows["page-3.jpg"].state is State.FAILED
    assert "premature end" in rows["page-3.jpg"].reason.lower()
    for name in ("page-1.jpg", "page-2.png"):
        row = rows[name]
        assert row.state is State.DONE
        output = Path(row.output)
        assert row.output_sha256 == read_checksum(output) == file_sha256(output)
    # The journal is hidden: not a master of the next run, not an image.
    assert (out / JOURNAL_NAME).exists()
    assert all(f.source.name != JOURNAL_NAME for f in discover([out], tmp_path / "elsewhere"))
