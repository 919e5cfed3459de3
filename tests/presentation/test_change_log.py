"""Tests for iiifserver.presentation.change_log: what a snapshot records against the last known state,
endTime, persistence across reopening, and several processes sharing one store."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iiifserver.presentation.change_log import ChangeLog, ResourceKey, Seen, Snapshot, default_path, remove
from iiifserver.presentation.discovery import Activity, ActivityType, Kind

T0 = 1_700_000_000_000_000_000
M = Kind.MANIFEST
C = Kind.COLLECTION


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[ChangeLog]:
    log = ChangeLog(default_path(tmp_path / "cache"), clock)
    yield log
    log.close()


def snap(clock: Clock, resources: dict[ResourceKey, Seen], unknown: set[ResourceKey] | None = None) -> Snapshot:
    clock.now += 1_000_000_000
    return Snapshot(clock.now, resources, frozenset(unknown or ()))


def summary(activities: list[Activity]) -> list[tuple[str, str, str, str | None]]:
    return [(str(a.type), str(a.kind), a.object_id, a.target_id) for a in activities]


def test_create_update_delete(store: ChangeLog, clock: Clock) -> None:
    first = store.record(snap(clock, {(M, "a"): Seen("1", "s1"), (M, "b"): Seen("2", "s2"), (C, ""): Seen("c")}))
    assert summary(first) == [
        ("Create", "Collection", "", None),
        ("Create", "Manifest", "a", None),
        ("Create", "Manifest", "b", None),
    ]
    assert [a.position for a in first] == [0, 1, 2]
    assert {a.end_time_ns for a in first} == {clock.now}
    # Unchanged: nothing. Then "a" changes and "b" goes.
    assert store.record(snap(clock, {(M, "a"): Seen("1", "s1"), (M, "b"): Seen("2", "s2"), (C, ""): Seen("c")})) == []
    second = store.record(snap(clock, {(M, "a"): Seen("1b", "s1b"), (C, ""): Seen("c")}))
    assert summary(second) == [("Update", "Manifest", "a", None), ("Delete", "Manifest", "b", None)]
    # "b" comes back: a second Create (the specification allows one after a Delete).
    third = store.record(snap(clock, {(M, "a"): Seen("1b", "s1b"), (M, "b"): Seen("2", "s2"), (C, ""): Seen("c")}))
    assert summary(third) == [("Create", "Manifest", "b", None)]
    assert store.state().total == 6
    assert [a.position for a in store.read(0, 100)] == list(range(6))
    assert summary(store.read(3, 5)) == summary(second)


def test_move_when_the_same_content_appears_under_a_new_id(store: ChangeLog, clock: Clock) -> None:
    store.record(snap(clock, {(M, "old"): Seen("1", "same"), (M, "other"): Seen("2", "s2")}))
    moved = store.record(snap(clock, {(M, "new"): Seen("1x", "same"), (M, "other"): Seen("2", "s2")}))
    assert summary(moved) == [("Move", "Manifest", "old", "new")]
    # The new id is now known: a later change to it is an Update, its removal a Delete.
    assert summary(store.record(snap(clock, {(M, "new"): Seen("1y", "s3"), (M, "other"): Seen("2", "s2")}))) == [
        ("Update", "Manifest", "new", None)
    ]
    assert summary(store.record(snap(clock, {(M, "other"): Seen("2", "s2")}))) == [("Delete", "Manifest", "new", None)]


def test_no_move_when_ambiguous_or_without_shape(store: ChangeLog, clock: Clock) -> None:
    store.record(snap(clock, {(M, "old"): Seen("1", "same"), (C, "x"): Seen("c")}))
    # Two copies of the gone one's content: which is the moved one? Neither: Delete + two Creates.
    copies = store.record(
        snap(clock, {(M, "n1"): Seen("a", "same"), (M, "n2"): Seen("b", "same"), (C, "y"): Seen("c")})
    )
    assert sorted(summary(copies)) == sorted(
        [
            ("Create", "Manifest", "n1", None),
            ("Create", "Manifest", "n2", None),
            ("Delete", "Manifest", "old", None),
            ("Create", "Collection", "y", None),
            ("Delete", "Collection", "x", None),  # collections have no shape: never a Move
        ]
    )


def test_unknown_resources_are_neither_changed_nor_deleted(store: ChangeLog, clock: Clock) -> None:
    store.record(snap(clock, {(M, "a"): Seen("1"), (M, "b"): Seen("2")}))
    # "a" has a description error now: it is not deleted, and nothing is recorded.
    assert store.record(snap(clock, {(M, "b"): Seen("2")}, unknown={(M, "a")})) == []
    # Fixed, unchanged: still nothing. Fixed with another content: an Update.
    assert store.record(snap(clock, {(M, "a"): Seen("1"), (M, "b"): Seen("2")})) == []
    assert summary(store.record(snap(clock, {(M, "a"): Seen("9"), (M, "b"): Seen("2")}))) == [
        ("Update", "Manifest", "a", None)
    ]
    # A new object that cannot be built yet is not created until it can.
    assert store.record(snap(clock, {(M, "a"): Seen("9"), (M, "b"): Seen("2")}, unknown={(M, "c")})) == []


def test_end_time_is_the_recording_time_and_never_goes_back(store: ChangeLog, clock: Clock) -> None:
    [first] = store.record(snap(clock, {(M, "a"): Seen("1")}))
    assert first.end_time_ns == clock.now
    later = snap(clock, {(M, "a"): Seen("2")})
    clock.now = T0 - 10**12  # the system clock was set back
    [second] = store.record(later)
    assert second.end_time_ns == first.end_time_ns + 1_000_000  # a millisecond after, never before


def test_a_stale_snapshot_is_dropped(store: ChangeLog, clock: Clock) -> None:
    store.record(snap(clock, {(M, "a"): Seen("1")}))
    stale = snap(clock, {(M, "a"): Seen("1")})  # a slow process began its scan here ...
    assert store.record(snap(clock, {(M, "a"): Seen("2")}))  # ... a faster one recorded a newer scan
    assert store.record(stale) == []  # recording the stale one would undo the Update
    assert store.state().total == 2


def test_state_and_log_id_survive_reopening_and_change_on_reset(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "changes.sqlite3"
    log = ChangeLog(path, clock)
    assert log.state().total == 0
    log.record(snap(clock, {(M, "a"): Seen("1"), (M, "b"): Seen("2")}))
    log_id = log.state().log_id
    log.close()
    again = ChangeLog(path, clock)  # a restart: deletes are remembered
    assert again.state().log_id == log_id
    assert summary(again.record(snap(clock, {(M, "a"): Seen("1")}))) == [("Delete", "Manifest", "b", None)]
    assert again.state().total == 3
    again.close()
    remove(path)
    assert not path.exists()
    fresh = ChangeLog(path, clock)
    assert fresh.state().total == 0
    assert fresh.state().log_id != log_id
    fresh.close()


def test_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "changes.sqlite3"
    made = ChangeLog(path)
    made.state()
    made.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="schema 99"):
        ChangeLog(path).state()


def test_version_guard_refuses_a_second_activity_for_one_change(store: ChangeLog, clock: Clock) -> None:
    store.record(snap(clock, {(M, "a"): Seen("1")}))
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO activity (position, type, kind, object_id, end_time_ns, version)"
            " VALUES (7, 'Create', 'Manifest', 'a', 1, 1)"
        )
    db.close()


def _resources(version: str) -> dict[ResourceKey, Seen]:
    return {(M, f"obj-{i}"): Seen(f"{version}-{i}" if i % 3 == 0 else "same") for i in range(60)}


def _record_in_process(path: str, scanned_ns: int, version: str, start: threading.Barrier | Any) -> int:
    log = ChangeLog(Path(path))
    start.wait()
    recorded = len(log.record(Snapshot(scanned_ns, _resources(version))))
    log.close()
    return recorded


def _process_main(path: str, scanned_ns: int, version: str, start: Any, results: Any) -> None:
    results.put(_record_in_process(path, scanned_ns, version, start))


def _run(path: Path, scanned_ns: int, version: str, start: threading.Barrier, out: list[int]) -> None:
    out.append(_record_in_process(str(path), scanned_ns, version, start))


def test_threads_sharing_one_file_record_each_change_once(tmp_path: Path) -> None:
    path = tmp_path / "changes.sqlite3"
    start = threading.Barrier(4)
    out: list[int] = []
    threads = [threading.Thread(target=_run, args=(path, T0 + i, "v1", start, out)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = ChangeLog(path)
    assert log.state().total == 60  # every Create once, whichever connection recorded it
    assert sum(out) == 60
    log.close()


@pytest.mark.slow  # spawning the processes (each imports the package) takes seconds
def test_processes_sharing_one_file_record_each_change_once(tmp_path: Path) -> None:
    """Worker processes see the same files: each records what it saw; the log holds each change once."""
    path = tmp_path / "changes.sqlite3"
    context = multiprocessing.get_context("spawn")
    for round_number, version in enumerate(("v1", "v2")):
        start, results = context.Barrier(3), context.Queue()
        processes = [
            context.Process(
                target=_process_main, args=(str(path), T0 + round_number * 10**9 + i, version, start, results)
            )
            for i in range(3)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        counts = [results.get(timeout=5) for _ in processes]
        assert sum(counts) == (60 if version == "v1" else 20), counts
    log = ChangeLog(path)
    activities = log.read(0, 1000)
    assert len(activities) == 80
    assert [a.position for a in activities] == list(range(80))
    updates = [a.object_id for a in activities if a.type is ActivityType.UPDATE]
    assert sorted(updates) == sorted(f"obj-{i}" for i in range(0, 60, 3))
    log.close()


def test_one_process_compares_at_a_time(store: ChangeLog, tmp_path: Path) -> None:
    other = ChangeLog(store.path)  # another worker process's handle (flock: per open file)
    claim = store.claim_comparison()
    assert claim is not None
    assert other.claim_comparison() is None
    store.release_comparison(claim)
    again = other.claim_comparison()
    assert again is not None
    other.release_comparison(again)
    other.close()
