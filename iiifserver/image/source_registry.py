"""Which source file an identifier stands for, what is known of it, and how long that is trusted.

Owns: identifier -> ``SourceFile`` (the version cache, else a stat in a worker thread; concurrent
checks of one identifier share one thread hop; a busy identifier is re-checked in the background
before its trust runs out); the facts of each source version (``SourceInfo`` and the stored-tile
index, probed once in a worker thread; an unsupported file is remembered briefly, a damaged one
for as long as that version is on disk); the last ``KnownSource`` of each identifier, so that a
trusted one is found without I/O; and the damaged sources found so far (``damaged()``: identifier
-> reason, each logged once per source version, for readiness details and ``manifests validate``).
Must not know: image requests, plans, the tile cache, the web framework, pyvips (the probe and
the tile index are functions it is given, and run in worker threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cachetools

from iiifserver.cache.keys import KeyHasher
from iiifserver.cache.singleflight import SingleFlight
from iiifserver.concurrency import Lane
from iiifserver.errors import IIIFError, SourceChanged, SourceDamaged, UnsupportedSource
from iiifserver.image.object_store import ObjectPath
from iiifserver.image.source_info import SourceInfo, SourceVersion
from iiifserver.image.sources import Source, SourceFile, VersionCache, raise_if_changed
from iiifserver.image.tile_files import TileFiles, open_checked
from iiifserver.image.tile_grid import StoredTiles

log = logging.getLogger(__name__)

KNOWN_MEMO_SIZE = 4096
# Seconds after its last request an identifier is still re-checked before its trust expires
# (``SourceRegistry._keep_fresh``): a person looking at an image pauses between pans and zooms.
KEEP_FRESH = 10.0
DAMAGED_LIST_SIZE = 10_000  # identifiers listed by ``damaged()``; the oldest go first beyond it

ProbeFn = Callable[[Path | ObjectPath], SourceInfo]
TileIndexFn = Callable[[Path | ObjectPath, SourceInfo], StoredTiles | None]


@dataclass(frozen=True, slots=True)
class KnownSource:
    """One version of a source file and what is known of it: its facts and its cache keys."""

    file: SourceFile
    info: SourceInfo
    stored: StoredTiles | None = None  # JPEG tile index for passthrough, when the source has one
    keys: KeyHasher = field(init=False, repr=False, compare=False)  # cache keys of this version

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", KeyHasher(self.file.cache_name, self.file.version.token))


class SourceRegistry:
    """Identifier -> ``KnownSource``. Event loop only, except the ``_blocking`` parts (worker threads).

    ``tile_files`` is shared with the request path: a check that finds a new version opens its
    descriptor for stored-tile reads in the same thread hop, so the first tiles of a new
    identifier are read on the loop, not each in a thread of its own.
    """

    def __init__(
        self,
        source: Source,
        probe: ProbeFn,
        tile_index: TileIndexFn,
        *,
        check_interval: float,
        lane: Lane,
        recheck_lane: Lane,
        tile_files: TileFiles,
    ) -> None:
        self._source = source
        self._probe = probe
        self._tile_index = tile_index
        self._lane = lane
        self._recheck_lane = recheck_lane
        self._tile_files = tile_files
        self._facts: cachetools.LRUCache[
            tuple[Path | ObjectPath, SourceVersion], tuple[SourceInfo, StoredTiles | None]
        ] = cachetools.LRUCache(4096)
        self._errors: cachetools.TTLCache[tuple[Path | ObjectPath, SourceVersion], IIIFError] = cachetools.TTLCache(
            1024, ttl=30
        )
        # A damaged version stays damaged: remembered (not re-probed) until the file changes.
        damaged_versions: cachetools.LRUCache[tuple[Path | ObjectPath, SourceVersion], SourceDamaged] = (
            cachetools.LRUCache(4096)
        )
        self._damaged_versions = damaged_versions
        self._damaged: dict[str, tuple[SourceVersion, str]] = {}  # identifier -> (version, reason)
        self._lock = threading.Lock()  # _facts and _errors are filled from worker threads
        # The last KnownSource of each identifier, while the version cache trusts that very file:
        # a cold tile then finds its image with two dict lookups.
        self._known: dict[str, KnownSource] = {}
        self._versions = VersionCache(check_interval)
        self._checks: SingleFlight[KnownSource] = SingleFlight()
        self._rechecks: set[str] = set()  # identifiers being re-checked in the background
        self.background: set[asyncio.Task[None]] = set()  # referenced until done (else collectable)
        self._keeper: asyncio.TimerHandle | None = None  # ``_keep_fresh``'s next run, while in use

    async def find(self, identifier: str) -> KnownSource:
        """Resolve and probe ``identifier``: from memory when recently seen, else in a worker thread.

        Concurrent checks of one identifier share one thread hop. A busy identifier is re-checked
        in the background before its trust runs out: under load a thread waits milliseconds for
        the GIL, and every request of an identifier whose check had expired used to wait for it.
        """
        known = self.find_if_known(identifier)
        if known is not None:
            return known
        job = functools.partial(self._find_and_open, identifier, self._versions.peek(identifier))
        if self._versions.interval <= 0:  # "check on every request": nothing shared
            return self._adopt(await self._lane.run(job))
        return await self._checks.run_in(identifier, self._lane, job, self._adopt)

    def find_if_known(self, identifier: str) -> KnownSource | None:
        """``find`` from memory only (no I/O, no await); None: ``find`` must check."""
        file, due = self._versions.lookup(identifier)
        if self._keeper is None:
            self._start_keeper()
        if file is None:
            return None
        if due:
            self._recheck_soon(identifier)
        known = self._known.get(identifier)
        if known is not None and known.file is file:
            return known
        with self._lock:
            facts = self._facts.get((file.path, file.version))
        if facts is None:
            return None
        if len(self._known) >= KNOWN_MEMO_SIZE:
            del self._known[next(iter(self._known))]  # the oldest
        known = self._known[identifier] = KnownSource(file, *facts)
        return known

    def current_version(self, identifier: str) -> SourceVersion | None:
        """The version ``identifier`` is trusted to have now, without any I/O; None: check it."""
        file, due = self._versions.lookup(identifier)
        if file is None:
            return None
        if due:
            self._recheck_soon(identifier)
        return file.version

    def damaged(self) -> dict[str, str]:
        """The damaged sources found so far (by a request, a manifest or a collection), identifier
        -> reason, sorted by identifier. Reasons never name a path. A source leaves the list when
        a new version of its file is read without damage."""
        with self._lock:
            return {identifier: reason for identifier, (_, reason) in sorted(self._damaged.items())}

    def damage_found(self, identifier: str, file: SourceFile, exc: SourceDamaged) -> SourceDamaged:
        """Record damage found in ``identifier``'s file (once per version: one log line) and return
        the error naming it. Any thread."""
        with self._lock:
            seen = self._damaged.get(identifier)
            new = seen is None or seen[0] != file.version
            if new:
                self._damaged.pop(identifier, None)
                if len(self._damaged) >= DAMAGED_LIST_SIZE:
                    del self._damaged[next(iter(self._damaged))]
                self._damaged[identifier] = (file.version, exc.detail)
        if new:
            # Logged by identifier (the operator's name for it); the path is theirs to look up.
            log.error("damaged source %r: %s (its requests answer 500)", identifier, exc.detail)
        return exc.named(identifier)

    def forget(self, identifier: str | None = None) -> None:
        """Drop what is remembered of ``identifier``'s file (all for None): it is stat-ed again."""
        self._versions.forget(identifier)

    def _adopt(self, checked: tuple[KnownSource, int | None]) -> KnownSource:
        """On the loop, after a check: keep the tile descriptor it opened, trust the version."""
        known, fd = checked
        if fd is not None:
            self._tile_files.adopt(known.file.path, known.file.version, fd)
        self._versions.put(known.file)
        return known

    def _find_and_open(self, identifier: str, previous: SourceFile | None = None) -> tuple[KnownSource, int | None]:
        """``_find_blocking``, and a descriptor for stored-tile reads in the same thread hop.
        Re-checking an unchanged ``previous`` file costs one ``stat`` and opens nothing."""
        known = self._find_blocking(identifier, previous)
        if known.stored is None or known.file == previous or isinstance(known.file.path, ObjectPath):
            return known, None
        try:
            return known, open_checked(known.file.path, known.file.version)
        except (OSError, SourceChanged):  # the tile read finds out again and decides
            return known, None

    def _start_keeper(self) -> None:
        interval = self._versions.interval
        if interval <= 0:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a tool, a test): requests re-check
            self._keeper = asyncio.get_running_loop().call_later(interval / 4, self._keep_fresh)

    def _keep_fresh(self) -> None:
        """Every quarter interval: re-check, in one background job, the identifiers requested in
        the last ``KEEP_FRESH`` seconds whose check is half an interval old, so a request of an
        image in use never finds its trust expired (a viewer's first tile after a pause, a
        deep-zoom run over many images, each visited in bursts). Stops while nothing is in use.

        Without it, an identifier not asked for in the window between its re-check falling due
        and its trust expiring was checked by its next request, which then went the full way (a
        thread hop for the stat, the framework): 8 % of the tiles of a cold run over 150 images,
        a sixth of the CPU."""
        self._keeper = None
        identifiers = [i for i in self._versions.in_use(KEEP_FRESH) if i not in self._rechecks]
        if identifiers:
            self._rechecks.update(identifiers)
            task = asyncio.get_running_loop().create_task(self._recheck_all(identifiers))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        if identifiers or self._versions.in_use_count():
            self._start_keeper()

    async def _recheck_all(self, identifiers: list[str]) -> None:
        try:
            previous = [(identifier, self._versions.peek(identifier)) for identifier in identifiers]
            results = await self._recheck_lane.run(self._recheck_blocking, previous)
            for identifier, outcome in results:
                if isinstance(outcome, BaseException):
                    self._versions.forget(identifier)  # gone, unreadable: the next request checks it
                else:
                    self._adopt(outcome)
        except Exception:  # the lane is full or timed out: each next request checks its own
            pass
        finally:
            self._rechecks.difference_update(identifiers)

    def _recheck_blocking(
        self, previous: list[tuple[str, SourceFile | None]]
    ) -> list[tuple[str, tuple[KnownSource, int | None] | BaseException]]:
        out: list[tuple[str, tuple[KnownSource, int | None] | BaseException]] = []
        for identifier, file in previous:
            try:
                out.append((identifier, self._find_and_open(identifier, file)))
            except Exception as exc:
                out.append((identifier, exc))
        return out

    def _recheck_soon(self, identifier: str) -> None:
        if identifier in self._rechecks:
            return
        self._rechecks.add(identifier)

        async def recheck() -> None:
            try:
                # Its own thread: a request that must wait for a check never queues behind these.
                job = functools.partial(self._find_and_open, identifier, self._versions.peek(identifier))
                await self._checks.run_in(identifier, self._recheck_lane, job, self._adopt)
            except Exception:  # gone, unreadable, overloaded: the next request checks it itself
                self._versions.forget(identifier)
            finally:
                self._rechecks.discard(identifier)

        task = asyncio.get_running_loop().create_task(recheck())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _find_blocking(self, identifier: str, previous: SourceFile | None = None) -> KnownSource:
        file = self._source.resolve(identifier) if previous is None else self._source.recheck(previous)
        key = (file.path, file.version)
        with self._lock:
            facts = self._facts.get(key)
            error = self._errors.get(key)
            damage = self._damaged_versions.get(key)
        if damage is not None:
            raise self.damage_found(identifier, file, damage)
        if error is not None:
            raise error
        if facts is None:
            try:
                info = self._probe(file.path)
            except SourceDamaged as exc:
                raise_if_changed(file.path, file.version)  # replaced since the stat: a change, not damage
                with self._lock:
                    self._damaged_versions[key] = exc
                raise self.damage_found(identifier, file, exc) from None
            except UnsupportedSource as exc:
                # Bad sources are remembered briefly, so a flood of requests does not re-probe.
                with self._lock:
                    self._errors[key] = exc
                raise
            facts = (info, self._tile_index(file.path, info))
            # Probed by name: the facts are this version's only if the file is still it (one stat,
            # once per version), else another file's dimensions would be filed under this version.
            raise_if_changed(file.path, file.version)
            with self._lock:
                self._facts[key] = facts
                seen = self._damaged.get(identifier)
                if seen is not None and seen[0] != file.version:
                    del self._damaged[identifier]  # replaced by a good file
        return KnownSource(file, *facts)
