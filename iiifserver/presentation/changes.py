"""Finding changes to the published manifests and collections, and serving the Change Discovery log.

Owns: what counts as a change (a manifest's digest is that of its built document, so a rebuild
that produces the same bytes is no change; a collection's digest covers its own description and
its members' ids and labels, not their thumbnails), when the catalogue is compared with the log
(at start-up and when a harvester asks, at most every ``discovery_check_interval`` seconds, in one
worker process at a time), and the built documents of the log with their ETags.
Must not know: HTTP, SQL (``change_log``), the JSON shapes (``discovery``).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import cachetools
import orjson

from iiifserver.errors import IIIFError, NotFound, ServiceUnavailable
from iiifserver.presentation import discovery
from iiifserver.presentation.builder import PRESENTATION_PREFIX, object_path
from iiifserver.presentation.catalogue import Catalogue, CollectionEntry
from iiifserver.presentation.change_log import ChangeLog, ResourceKey, Seen, Snapshot
from iiifserver.presentation.discovery import Activity, Kind
from iiifserver.presentation.service import PresentationService

log = logging.getLogger(__name__)
RunBlocking = Callable[..., Awaitable[Any]]
# Documents are built under this base for their digests, so the public URL (or a request's Host)
# never makes a change; ``.invalid`` is reserved (RFC 2606) and reaches nobody.
DIGEST_BASE = "https://change-discovery.invalid"
PARALLEL_BUILDS = 8  # manifests whose digest is computed at once during a comparison
DIGESTS_KEPT = 100_000  # manifest keys -> digests remembered, so an unchanged one is not rebuilt


@dataclass(frozen=True, slots=True)
class Published:
    """A document of the log: its body, ETag value and Last-Modified time."""

    key: str
    body: bytes
    mtime_ns: int


class ChangeTracker:
    def __init__(
        self,
        presentation: PresentationService,
        store: ChangeLog,
        run_io: RunBlocking,
        *,
        check_interval: float,
        page_size: int,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._presentation = presentation
        self.store = store
        self._run_io = run_io
        self._interval = check_interval
        self._page_size = page_size
        self._clock = clock
        self._checked_at: float | None = None  # time.monotonic() of the last comparison's start
        self._lock = asyncio.Lock()
        self._digests: cachetools.LRUCache[str, Seen] = cachetools.LRUCache(DIGESTS_KEPT)

    # -- comparing ------------------------------------------------------------------------------

    async def check(self) -> list[Activity]:
        """Compare what exists now with the log and record the difference (one comparison at a time)."""
        requested = time.monotonic()
        async with self._lock:
            if self._checked_at is not None and self._checked_at >= requested:
                return []  # a comparison that began after this call was made has just finished
            self._checked_at = time.monotonic()
            claim: int | None = await self._run_io(self.store.claim_comparison)
            if claim is None:
                return []  # another worker process is comparing the same files right now
            try:
                snapshot = await self._snapshot(self._checked_at)
                recorded: list[Activity] = await self._run_io(self.store.record, snapshot)
            finally:
                self.store.release_comparison(claim)  # a close: never blocks
        if 0 < len(recorded) <= 20:
            for activity in recorded:
                log.info("change discovery: %s %s %r", activity.type, activity.kind, activity.object_id)
        elif recorded:
            counts = collections.Counter(str(activity.type) for activity in recorded)
            log.info("change discovery: %s", ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
        return recorded

    async def check_if_due(self) -> None:
        """``check`` unless one began within ``discovery_check_interval``; a failure is logged and
        the log is served as it stands (a harvester gets what was recorded, never an error)."""
        checked = self._checked_at
        if checked is not None and time.monotonic() - checked < self._interval:
            return
        try:
            await self.check()
        except Exception:  # a store that cannot be written must not take the log's pages down
            log.exception("change discovery: comparing the catalogue with the log failed")

    async def _snapshot(self, started: float) -> Snapshot:
        scanned_ns = self._clock()
        catalogue = await self._presentation.catalogue(newer_than=started)
        resources: dict[ResourceKey, Seen] = {}
        unknown: set[ResourceKey] = set()
        ids = iter(list(catalogue.objects))

        async def worker() -> None:  # a few at a time, taking ids from one shared iterator
            for object_id in ids:
                seen = await self._manifest(object_id)
                if seen is None:
                    unknown.add((Kind.MANIFEST, object_id))
                else:
                    resources[(Kind.MANIFEST, object_id)] = seen

        async with asyncio.TaskGroup() as group:  # one failing (503) cancels the others
            for _ in range(PARALLEL_BUILDS):
                group.create_task(worker())
        for path, entry in catalogue.collections.items():
            if entry.error is not None:
                unknown.add((Kind.COLLECTION, path))
            else:
                resources[(Kind.COLLECTION, path)] = Seen(_collection_digest(catalogue, entry))
        return Snapshot(scanned_ns, resources, frozenset(unknown))

    async def _manifest(self, object_id: str) -> Seen | None:
        """The digests of an object's manifest; None when it cannot be built now (its error is
        the manifest's own to report: nothing is recorded for it until it builds again)."""
        try:
            keyed = await self._presentation.manifest_key(object_id, DIGEST_BASE)
            seen = self._digests.get(keyed.key)
            if seen is None:
                document = await self._presentation.manifest(object_id, DIGEST_BASE, keyed, keep=False)
                own = f"{DIGEST_BASE}{PRESENTATION_PREFIX}/{object_path(object_id)}/".encode()
                # The same document under another id: the object's own URLs taken out.
                seen = Seen(_digest(document.body), _digest(document.body.replace(own, b"\0")))
                self._digests[keyed.key] = seen
            return seen
        except ServiceUnavailable:
            raise  # the server is saturated: try the whole comparison again later
        except IIIFError:
            return None

    # -- documents ------------------------------------------------------------------------------

    async def collection(self, base: str) -> Published:
        await self.check_if_due()
        state = await self._run_io(self.store.state)
        body = orjson.dumps(discovery.collection_document(base, state.total, self._page_size))
        return Published(_digest(state.log_id, str(state.total), str(self._page_size), base), body, state.newest_ns)

    async def page(self, base: str, number: int) -> Published:
        await self.check_if_due()
        state = await self._run_io(self.store.state)
        if number >= discovery.page_count(state.total, self._page_size):
            raise NotFound(f"no page {number} of the change log", parameter="page")
        positions = discovery.page_range(number, self._page_size)
        activities: list[Activity] = await self._run_io(self.store.read, positions.start, positions.stop)
        body = orjson.dumps(discovery.page_document(base, number, activities, state.total, self._page_size))
        # A full page never changes (newest last); the last one changes with every recording.
        # Its items and whether a next page exists: both told by how far past its start the log goes.
        reach = min(state.total, positions.stop + 1)
        key = _digest(state.log_id, str(number), str(reach), str(self._page_size), base)
        mtime = activities[-1].end_time_ns if activities else 0
        return Published(key, body, mtime)

    def close(self) -> None:
        self.store.close()


def _collection_digest(catalogue: Catalogue, entry: CollectionEntry) -> str:
    members: list[Any] = [repr(entry.description), list(entry.collections)]
    for sub in entry.collections:
        sub_entry = catalogue.collections.get(sub)
        members.append(repr(sub_entry.description) if sub_entry is not None else None)
    for object_id in entry.objects:
        obj = catalogue.objects.get(object_id)
        if obj is not None and obj.description is not None:  # objects in error are not listed
            members.append([object_id, repr(obj.description.label)])
    return _digest(orjson.dumps(members, default=repr))


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:32]
