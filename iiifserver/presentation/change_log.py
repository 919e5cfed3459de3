"""The change log: every recorded activity and the last known state of every resource, in SQLite.

Owns: the store's file format (tables ``activity``, ``resource`` and ``meta``), comparing a
snapshot of what exists with the last known state and recording the difference as activities
(``Create``, ``Update`` when a document's digest changed, ``Delete``, and ``Move`` when one resource
vanished and another appeared with the same content under a new id), their ``endTime``, reading
the log back by position, and the lock file that lets one process compare at a time.
Blocking (file I/O): callers run it in a worker thread.
Must not know: the catalogue, how digests are made (``changes``), URLs and documents (``discovery``).

Several worker processes share one file. Each compares and records inside one write transaction
(``BEGIN IMMEDIATE``: one writer at a time, readers never blocked in WAL mode), so the second of two
processes that saw the same change finds it already recorded and adds nothing. A snapshot older
than the last one recorded (a slow process finishing after a faster one) is dropped rather than
undoing newer changes. As a second guard, each activity carries its resource's version number and
``(kind, object_id, version)`` is unique.

``endTime`` is the time a change was recorded (the clock at the write, never earlier than the last
activity's plus a millisecond), not a file's modification time: harvesters stop reading at the
first activity older than their previous visit (section 3.5.2 of the specification), so an
activity must never be older than the moment it became visible. A file copied in with an old
mtime, or changed while the server was down, would otherwise be missed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from iiifserver.presentation.discovery import Activity, ActivityType, Kind

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another process's transaction
MIN_STEP_NS = 1_000_000  # consecutive recordings are at least a millisecond apart (endTime shows ms)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resource (
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    shape TEXT,
    version INTEGER NOT NULL,
    present INTEGER NOT NULL,
    PRIMARY KEY (kind, object_id)
);
CREATE TABLE IF NOT EXISTS activity (
    position INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    target_id TEXT,
    end_time_ns INTEGER NOT NULL,
    version INTEGER NOT NULL,
    UNIQUE (kind, object_id, version)
);
"""

ResourceKey = tuple[Kind, str]


@dataclass(frozen=True, slots=True)
class Seen:
    """What a snapshot knows of one resource."""

    digest: str  # of its document: another digest is an Update
    shape: str | None = None  # of its document without its own id: the same under a new id is a Move


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every resource that exists, as one scan saw it."""

    scanned_ns: int  # wall-clock time the scan began
    resources: Mapping[ResourceKey, Seen]
    # Resources that exist but could not be described now (a description error, a damaged image):
    # neither changed nor deleted; whatever was known of them stands.
    unknown: frozenset[ResourceKey] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class LogState:
    total: int  # activities recorded
    newest_ns: int  # endTime of the newest (0 for an empty log)
    log_id: str  # changes when the store is made anew (a reset): part of every document's ETag


@dataclass(slots=True)
class _Known:
    digest: str
    shape: str | None
    version: int
    present: bool


class ChangeLog:
    """The store in one SQLite file; one connection per process, used by one thread at a time."""

    def __init__(self, path: Path, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while True:
                try:
                    self._db = self._open()
                    break
                except sqlite3.OperationalError as exc:
                    # Switching a new file to WAL does not wait for the busy timeout when another
                    # process is making the file at the same moment: wait here instead.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        return self._db

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) where they matter.
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")  # two processes making the tables at once: one does
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            found = dict(db.execute("SELECT name, value FROM meta").fetchall())
            if "schema" not in found:
                db.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("schema", SCHEMA_VERSION), ("log_id", secrets.token_hex(8)), ("scanned_ns", "0")],
                )
            elif found["schema"] != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"change log schema {found['schema']}, expected {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def claim_comparison(self) -> int | None:
        """A lock (a file descriptor to pass to ``release_comparison``) that only one process holds
        at a time, or None while another holds it: the worker processes must not all rebuild every
        manifest for the same comparison; whoever compares records for all of them."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def release_comparison(fd: int) -> None:
        os.close(fd)  # releases the lock

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- recording --------------------------------------------------------------------------

    def record(self, snapshot: Snapshot) -> list[Activity]:
        """Record how ``snapshot`` differs from the last known state; returns the new activities."""
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                activities = self._record(db, snapshot)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return activities

    def _record(self, db: sqlite3.Connection, snapshot: Snapshot) -> list[Activity]:
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        if snapshot.scanned_ns < int(meta["scanned_ns"]):
            return []  # another process recorded a newer scan: this one would undo its changes
        db.execute("UPDATE meta SET value = ? WHERE name = 'scanned_ns'", (str(snapshot.scanned_ns),))
        known = {
            (Kind(kind), object_id): _Known(digest, shape, version, bool(present))
            for kind, object_id, digest, shape, version, present in db.execute(
                "SELECT kind, object_id, digest, shape, version, present FROM resource"
            )
        }
        changes = _compare(known, snapshot)
        if not changes:
            return []
        newest = db.execute("SELECT MAX(position), MAX(end_time_ns) FROM activity").fetchone()
        position = -1 if newest[0] is None else int(newest[0])
        end_ns = max(self._clock(), (newest[1] or 0) + MIN_STEP_NS)
        recorded: list[Activity] = []
        for kind_type, key, target, seen in changes:
            kind, object_id = key
            before = known.get(key)
            version = (before.version if before is not None else 0) + 1
            inserted = db.execute(
                "INSERT INTO activity (position, type, kind, object_id, target_id, end_time_ns, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, object_id, version) DO NOTHING",
                (position + 1, str(kind_type), str(kind), object_id, target, end_ns, version),
            ).rowcount
            if inserted:
                position += 1
                recorded.append(Activity(position, kind_type, kind, object_id, end_ns, target))
            if kind_type in (ActivityType.DELETE, ActivityType.MOVE):
                # A gone resource keeps its last digest and shape (a Move is recognised by them) and
                # its version goes on counting should its id come back.
                assert before is not None
                _put(db, key, Seen(before.digest, before.shape), version, present=False)
            else:
                assert seen is not None
                _put(db, key, seen, version, present=True)
            if kind_type is ActivityType.MOVE:
                assert target is not None
                assert seen is not None
                moved_to = known.get((kind, target))
                _put(db, (kind, target), seen, (moved_to.version if moved_to else 0) + 1, present=True)
        return recorded

    # -- reading ----------------------------------------------------------------------------

    def state(self) -> LogState:
        with self._lock:
            db = self._connect()
            row = db.execute("SELECT MAX(position), MAX(end_time_ns) FROM activity").fetchone()
            log_id = db.execute("SELECT value FROM meta WHERE name = 'log_id'").fetchone()[0]
        total = 0 if row[0] is None else int(row[0]) + 1
        return LogState(total, int(row[1] or 0), str(log_id))

    def read(self, start: int, stop: int) -> list[Activity]:
        """The activities at positions ``start`` to ``stop - 1``, oldest first."""
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT position, type, kind, object_id, end_time_ns, target_id FROM activity"
                    " WHERE position >= ? AND position < ? ORDER BY position",
                    (start, stop),
                )
                .fetchall()
            )
        return [Activity(p, ActivityType(t), Kind(k), o, e, target) for p, t, k, o, e, target in rows]


def _compare(
    known: Mapping[ResourceKey, _Known], snapshot: Snapshot
) -> list[tuple[ActivityType, ResourceKey, str | None, Seen | None]]:
    """The changes from ``known`` to ``snapshot``: (type, resource, Move target, what is seen now)."""
    created = [key for key in snapshot.resources if key not in known or not known[key].present]
    deleted = [
        key
        for key, was in known.items()
        if was.present and key not in snapshot.resources and key not in snapshot.unknown
    ]
    changes: list[tuple[ActivityType, ResourceKey, str | None, Seen | None]] = []
    # A Move: one resource gone and one new, of one kind, with the same content. Only unambiguous
    # pairs: two identical new ones for one gone (a copy) are Creates, and the old one a Delete.
    by_shape: dict[tuple[Kind, str], list[ResourceKey]] = {}
    for key in created:
        shape = snapshot.resources[key].shape
        if shape is not None:
            by_shape.setdefault((key[0], shape), []).append(key)
    gone_by_shape: dict[tuple[Kind, str], list[ResourceKey]] = {}
    for key in deleted:
        shape = known[key].shape
        if shape is not None:
            gone_by_shape.setdefault((key[0], shape), []).append(key)
    moved: set[ResourceKey] = set()
    for shape_key, gone in gone_by_shape.items():
        new = by_shape.get(shape_key, [])
        if len(gone) == 1 and len(new) == 1:
            changes.append((ActivityType.MOVE, gone[0], new[0][1], snapshot.resources[new[0]]))
            moved.update((gone[0], new[0]))
    changes += [(ActivityType.DELETE, key, None, None) for key in deleted if key not in moved]
    changes += [(ActivityType.CREATE, key, None, snapshot.resources[key]) for key in created if key not in moved]
    changes += [
        (ActivityType.UPDATE, key, None, seen)
        for key, seen in snapshot.resources.items()
        if key in known and known[key].present and known[key].digest != seen.digest
    ]
    # Deterministic order within one recording: by kind, then id.
    order = {t: i for i, t in enumerate(ActivityType)}
    return sorted(changes, key=lambda c: (c[1][0], c[1][1], order[c[0]]))


def _put(db: sqlite3.Connection, key: ResourceKey, seen: Seen, version: int, *, present: bool) -> None:
    db.execute(
        "INSERT INTO resource (kind, object_id, digest, shape, version, present) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (kind, object_id) DO UPDATE SET digest = excluded.digest, shape = excluded.shape,"
        " version = excluded.version, present = excluded.present",
        (str(key[0]), key[1], seen.digest, seen.shape, version, int(present)),
    )


def default_path(cache: Path) -> Path:
    return cache / "discovery" / "changes.sqlite3"


def remove(path: Path) -> None:
    """Delete the store and its WAL files (a reset: the next scan records everything as new)."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
