"""The request path of an image: from an identifier and a parsed request to the response body.

Owns: known source (``SourceRegistry``) -> resolved request -> canonical form and cache key ->
memory tier (no thread hop) -> stored tile from the page cache (on the loop) -> single-flight:
stored tile read in a worker thread, else disk tier and render in one hop into a bounded lane (with
renders queued, the disk and shared tiers are read first in the I/O lane, so a cached body never
waits behind renders) -> cache put; which lane a request runs in; the service's counters.
Must not know: the web framework, pyvips (render and tile reading are functions it is given, and
run in worker threads), how identifiers are resolved and trusted (the registry's business).

A cache entry is only ever stored under the version of the bytes that produced it: renders and
tile reads check the file they opened against the version the key was built from, and a file
replaced in between is a 503 (retry), never a wrong entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from iiifserver.cache.admission import Admission, Doorkeeper
from iiifserver.cache.entry import Entry
from iiifserver.cache.singleflight import SingleFlight
from iiifserver.cache.tiered import TileCache
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.errors import ServiceUnavailable, SourceChanged, SourceDamaged
from iiifserver.image import canonical, planner, tile_blocks, tile_codec, tile_stretch
from iiifserver.image.object_store import ObjectPath
from iiifserver.image.passthrough import TileRef, level_grid, stored_tile_for
from iiifserver.image.request import ApiVersion, ImageRequest
from iiifserver.image.source_info import SourceFormat, SourceVersion
from iiifserver.image.source_registry import KnownSource, ProbeFn, SourceRegistry, TileIndexFn
from iiifserver.image.sources import Source, SourceFile, cache_names, raise_if_changed
from iiifserver.image.tile_files import TileFiles
from iiifserver.image.tile_grid import TileGrid

log = logging.getLogger(__name__)

# Bump when the bytes served for a canonical request change, so old cache entries die.
RENDER_VERSION = "7"
# Retry-After of a request that outlived ``render_timeout``: its render may still be running,
# and a retry after it ends is a cache hit.
RENDER_TIMEOUT_RETRY_AFTER = 5

# Where a response body came from: the memory tier, a stored tile, the disk tier, the shared tier
# (another instance rendered it), a render.
Origin = Literal["memory", "passthrough", "disk", "shared", "render"]
# The last argument is the stored-tile grid of the plan's level, from the registry's index of
# this version (None: none), so a render decodes stored tiles without reading the directories again.
RenderFn = Callable[[Path | ObjectPath, SourceFormat, planner.Plan, SourceVersion, TileGrid | None], bytes]
# tile, open descriptor (-1: none, an object)
TileReadFn = Callable[[Path | ObjectPath, SourceVersion, TileGrid, int], tuple[bytes, int]]


@dataclass(frozen=True, slots=True)
class Prepared:
    identifier: str  # as requested
    source: KnownSource
    plan: planner.Plan
    media_type: str
    canonical_v3: str  # region/size/rotation/quality.format in 3.0 canonical form
    canonical: str  # the same in the form of the request's API version
    key: str  # cache key and strong ETag value
    passthrough: TileRef | None  # the stored tile that is exactly this response (or its valid part)

    @property
    def version(self) -> SourceVersion:
        return self.source.file.version


@dataclass(slots=True)
class Counters:
    renders: int = 0
    passthrough: int = 0
    passthrough_inline: int = 0  # of which read from the page cache on the loop (no thread, no flight)
    stretched: int = 0  # of which edge tiles decoded and stretched by the pixel their level lacks
    passthrough_fallbacks: int = 0
    source_changed: int = 0
    render_timeouts: int = 0  # requests answered 503 after ``render_timeout``


@dataclass(frozen=True, slots=True)
class Lanes:
    io: Lane
    tile: Lane
    heavy: Lane
    background: Lane | None = None  # re-checks of sources; None: the io lane

    @property
    def rechecks(self) -> Lane:
        return self.background or self.io


@dataclass(frozen=True, slots=True)
class BlockingOps:
    """The blocking functions the service calls in worker threads (pyvips and file reads live there)."""

    probe: ProbeFn
    render: RenderFn
    tile_index: TileIndexFn
    read_tile: TileReadFn


class ImageService:
    """The image requests of one worker process. Event loop only; blocking work goes to ``lanes``."""

    def __init__(
        self, settings: Settings, source: Source, ops: BlockingOps, lanes: Lanes, cache: TileCache | None = None
    ) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.cache = cache
        self.lanes = lanes
        self.counters = Counters()
        self._ops = ops
        chroma = "420" if settings.jpeg_chroma_subsampling else "auto"
        self._render_tag = f"r{RENDER_VERSION}/q{settings.jpeg_quality}/{chroma}/w{settings.webp_quality}"
        self._flights: SingleFlight[tuple[Entry, Origin]] = SingleFlight()
        self._disk_writes: set[asyncio.Task[None]] = set()  # referenced until done (else collectable)
        self.admission = Admission(settings.disk_cache_admission)
        self.doorkeeper = Doorkeeper()  # whole stored tiles: kept in memory from their second ask
        self._tile_files = TileFiles()
        self.registry = SourceRegistry(
            source,
            ops.probe,
            ops.tile_index,
            check_interval=settings.source_check_interval,
            lane=lanes.io,
            recheck_lane=lanes.rechecks,
            tile_files=self._tile_files,
        )
        # The registry's answers, bound once: ``current_version`` and ``find_if_known`` are on
        # the answered-at-once path, which a delegating method would make a call longer.
        self.find: Callable[[str], Awaitable[KnownSource]] = self.registry.find
        self.find_if_known: Callable[[str], KnownSource | None] = self.registry.find_if_known
        self.current_version: Callable[[str], SourceVersion | None] = self.registry.current_version
        self.forget: Callable[[str | None], None] = self.registry.forget
        # Damaged sources found so far, identifier -> reason (readiness details, manifests validate).
        self.damaged: Callable[[], dict[str, str]] = self.registry.damaged
        # Edge tiles pass through too, cut losslessly or stretched by a pixel, with libturbojpeg.
        self._edge_crops = settings.tile_passthrough and tile_codec.available()
        self._encoding = tile_codec.Encoding(settings.jpeg_quality, settings.jpeg_chroma_subsampling)

    async def purge(self, identifier: str | None) -> int:
        """Drop ``identifier``'s cached responses, whichever file name it was reached by (all for None)."""
        self.forget(identifier)
        if identifier is None:
            self.admission.forget()
            self.doorkeeper.forget()
        if self.cache is None:
            return 0
        if identifier is None:
            return await self.cache.purge(None)
        return sum([await self.cache.purge(name) for name in cache_names(identifier)])

    # -- image requests --------------------------------------------------------------------------

    async def prepare(self, identifier: str, request: ImageRequest) -> Prepared:
        """Everything but the pixels: enough for the canonical URL, the key and a 304."""
        return self._prepare(identifier, await self.find(identifier), request)

    def prepare_if_known(self, identifier: str, request: ImageRequest) -> Prepared | None:
        """``prepare`` when the identifier's source is known and trusted (no I/O, no await);
        None: ``prepare`` must check it."""
        known = self.find_if_known(identifier)
        return None if known is None else self._prepare(identifier, known, request)

    def prepare_known(self, identifier: str, known: KnownSource, request: ImageRequest, tier: str) -> Prepared:
        """``prepare`` of a source already found, in an access tier (``image.access``): the tier
        is part of the cache key, so restricted and degraded responses never share an entry with
        open ones."""
        return self._prepare(identifier, known, request, tier)

    def _prepare(self, identifier: str, known: KnownSource, request: ImageRequest, tier: str = "") -> Prepared:
        resolved = planner.resolve(request, known.info, self.limits)
        canonical_v3 = canonical.canonical_path(resolved, ApiVersion.V3)
        plan = planner.plan(resolved, known.info)
        return Prepared(
            identifier=identifier,
            source=known,
            plan=plan,
            media_type=request.format.media_type,
            canonical_v3=canonical_v3,
            canonical=(
                canonical_v3
                if request.version is ApiVersion.V3
                else canonical.canonical_path(resolved, request.version)
            ),
            key=known.keys.key(canonical_v3, self._render_tag + tier if tier else self._render_tag),
            passthrough=(
                stored_tile_for(known.stored, known.info.levels, plan, edges=self._edge_crops, stretch=self._edge_crops)
                if known.stored is not None and self.settings.tile_passthrough
                else None
            ),
        )

    def cached_key(self, key: str) -> Entry | None:
        """``cached`` by key (a remembered response's): the memory tier only."""
        return self._memory_hit(key)

    def cached(self, prepared: Prepared) -> Entry | None:
        """The memory tier only: no await, no thread hop (hot tiles)."""
        return self._memory_hit(prepared.key)

    def _memory_hit(self, key: str) -> Entry | None:
        if self.cache is None:
            return None
        entry = self.cache.get_memory(key)
        if entry is not None and self.admission.hit(key):  # a render asked for again: on disk now
            self._write_lower(key, entry, to_disk=True, to_shared=False)
        return entry

    def entry_at_once(self, prepared: Prepared) -> Entry | None:
        """The body when it can be had at once: from the memory tier, or a stored tile in the page
        cache; no await, no thread. None: ``fetch`` must produce it."""
        entry = self.cached(prepared)
        if entry is None and prepared.passthrough is not None:
            entry = self._stored_at_once(prepared)
        return entry

    async def fetch(self, prepared: Prepared) -> Entry:
        """The response body: disk tier, else stored tile, else render; concurrent twins share one."""
        return (await self.fetch_with_origin(prepared))[0]

    async def fetch_with_origin(self, prepared: Prepared) -> tuple[Entry, Origin]:
        """``fetch``, and where the body came from (metrics and logs tell the ways apart)."""
        if prepared.passthrough is not None:
            entry = self._stored_at_once(prepared)
            if entry is not None:
                return entry, "passthrough"
        if prepared.passthrough is None:
            entry = self.cached(prepared)  # a flight that just ended
            if entry is not None:
                return entry, "memory"
        # The render deadline: this request stops waiting, and its job is dropped if it is still
        # queued and nobody else waits for it (single flight). A job already running cannot be
        # stopped (a libvips call in a thread cannot be killed): it keeps its lane slot until it
        # ends, and its entry, made for this key from the version it checked, is kept as usual.
        timeout = self.settings.render_timeout
        deadline = asyncio.timeout(timeout if timeout > 0 else None)
        try:
            async with deadline:
                if prepared.passthrough is not None:
                    return await self._flights.run(prepared.key, lambda: self._produce(prepared))
                lane = self._lane(prepared.plan)
                if not lane.has_free_thread and self.cache is not None and self.cache.has_lower:
                    # Renders are queued: a body the disk or shared tier holds is read in the I/O
                    # lane now instead of waiting behind them (a cache-busting flood must not
                    # hold up cached thumbnails). Twins read it each: cheaper than a flight. An
                    # I/O lane as busy as that is no reason to refuse: the render lane looks again.
                    found = None
                    with contextlib.suppress(ServiceUnavailable):
                        found = await self.lanes.io.run(
                            self.cache.get_lower_blocking, prepared.source.file.cache_name, prepared.key
                        )
                    if found is not None:
                        return self._kept(prepared, found)
                # One thread hop for the disk lookup and the render: under load every hop back
                # to the loop costs a loop iteration or more, and a first view's small renders
                # are its slowest tiles.
                return await self._flights.run_in(
                    prepared.key,
                    lane,
                    functools.partial(self._disk_or_render, prepared),
                    functools.partial(self._kept, prepared),
                    functools.partial(self._failed, prepared),
                )
        except TimeoutError:
            if not deadline.expired():
                raise
            self.counters.render_timeouts += 1
            raise ServiceUnavailable(
                f"the image took longer than {timeout:g} s to render; retry", retry_after=RENDER_TIMEOUT_RETRY_AFTER
            ) from None

    def _lane(self, plan: planner.Plan) -> Lane:
        """Heavy plans (the planner's decode-cost estimate) run apart, so tiles of pyramids keep
        their latency under a flood of strip-TIFF tiles, big regions or large outputs."""
        return self.lanes.heavy if plan.heavy else self.lanes.tile

    def _stored_at_once(self, prepared: Prepared) -> Entry | None:
        """A stored tile whose bytes are in the page cache, without leaving the loop.

        The commonest cold request. It needs no single flight: twins each read tens of
        kilobytes from memory, which costs less than coordinating them. Anything unusual (no
        descriptor yet, bytes not cached, a tile that fails its checks) goes the full way.
        """
        ref = prepared.passthrough
        assert ref is not None
        file = prepared.source.file
        try:
            tile = self._tile_files.read_if_cached(file.path, file.version, ref.grid, ref.index)
            if tile is not None:
                tile = self._cut(tile, ref)
        except ValueError:
            return None  # the full path logs it and renders instead
        if tile is None:
            return None
        self._count_stored(ref)
        self.counters.passthrough_inline += 1
        entry = Entry(tile, prepared.media_type, file.cache_name)
        self._keep_stored(prepared, entry)
        return entry

    def _keep_stored(self, prepared: Prepared, entry: Entry) -> None:
        """A stored tile into the memory tier: a cut or stretched one at once (they cost a decode),
        a whole one from its second ask (``Doorkeeper``: reading it again costs less than keeping it)."""
        if self.cache is None:
            return
        ref = prepared.passthrough
        if ref is not None and ref.as_stored and not self.doorkeeper.seen_again(prepared.key):
            return
        self.cache.put_memory(prepared.key, entry)

    def in_memory(self, key: str) -> bool:
        """Whether the memory tier holds ``key``'s body: a memo of its answer can replay it."""
        return self.cache is not None and self.cache.in_memory(key)

    async def _produce(self, prepared: Prepared) -> tuple[Entry, Origin]:
        """A stored tile the page cache did not hold (or that failed its checks): read in a
        thread, else rendered."""
        if self.cache is not None:
            entry = self._memory_hit(prepared.key)  # a flight that just ended
            if entry is not None:
                return entry, "memory"
        try:
            return self._kept(prepared, await self._entry(prepared))
        except (SourceChanged, SourceDamaged) as exc:
            raise self._failed(prepared, exc) from None

    def _kept(self, prepared: Prepared, produced: tuple[Entry, Origin]) -> tuple[Entry, Origin]:
        """Keep an entry: memory now, the lower tiers in the background when it was rendered (a
        shared hit: the disk tier only)."""
        entry, origin = produced
        rendered = origin == "render"
        if rendered:
            self.counters.renders += 1
        if self.cache is not None:
            # Memory now, so the next request hits; the lower tiers in the background (no waiter
            # of this flight waits for a write), the disk tier a render only once it has been
            # asked for ``disk_cache_admission`` times (``Admission``). Stored tiles are already
            # on disk in the source, disk hits are there too: memory only.
            if origin == "passthrough":
                self._keep_stored(prepared, entry)
            else:
                self.cache.put_memory(prepared.key, entry)
            if rendered:
                # The shared tier takes every render: another instance's next ask is its reason to be.
                to_disk = self.cache.has_disk and self.admission.rendered(prepared.key)
                if to_disk or self.cache.has_shared:
                    self._write_lower(prepared.key, entry, to_disk=to_disk, to_shared=True)
            elif origin == "shared" and self.cache.has_disk:
                self._write_lower(prepared.key, entry, to_disk=True, to_shared=False)
        return entry, origin

    def _write_lower(self, key: str, entry: Entry, *, to_disk: bool, to_shared: bool) -> None:
        """The disk tier (``to_disk``) and the shared one (``to_shared``) get ``entry`` in the background."""
        assert self.cache is not None
        put = self.cache.put(entry.identifier, key, entry, to_disk=to_disk, to_shared=to_shared)
        task = asyncio.get_running_loop().create_task(put)
        self._disk_writes.add(task)
        task.add_done_callback(self._disk_writes.discard)

    def _failed(self, prepared: Prepared, error: BaseException) -> BaseException:
        if isinstance(error, SourceDamaged):  # logged once per version, listed, named in the body
            return self.registry.damage_found(prepared.identifier, prepared.source.file, error)
        if not isinstance(error, SourceChanged):
            return error
        self.counters.source_changed += 1
        self.forget(prepared.identifier)
        return ServiceUnavailable("the image changed while it was read; retry", retry_after=1)

    async def _entry(self, prepared: Prepared) -> tuple[Entry, Origin]:
        """The stored tile, else the disk or shared tier's copy, else a render; and which it was."""
        file = prepared.source.file
        if prepared.passthrough is not None:
            ref = prepared.passthrough
            try:
                cut = self._cut(await self._stored_tile(file, ref.grid, ref.index), ref)
                if cut is None:
                    raise ValueError("libjpeg-turbo refused it")
            except ValueError as exc:
                self.counters.passthrough_fallbacks += 1
                log.warning("stored tile %d of %r unusable (%s); rendering", ref.index, prepared.identifier, exc)
            else:
                self._count_stored(ref)
                return Entry(cut, prepared.media_type, file.cache_name), "passthrough"
        return await self._lane(prepared.plan).run(self._disk_or_render, prepared)

    def _cut(self, tile: bytes, ref: TileRef) -> bytes | None:
        """The stored tile as the response: whole, cut to its valid area, or stretched by the
        pixel its level lacks. On the loop: a cut takes ~0.3 ms, a stretch ~0.5 ms (tiles of at
        most 256 x 256), less than a thread hop costs under load. None: libjpeg-turbo refused it."""
        if ref.stretched:
            gray = ref.grid.components == 1
            return tile_stretch.stretched(
                tile, ref.width, ref.height, ref.out_width, ref.out_height, gray=gray, encoding=self._encoding
            )
        if ref.as_stored:
            return tile
        cut = tile_blocks.edge_cut(tile, ref.grid, ref.width, ref.height)
        return cut if cut is not None else tile_codec.lossless_crop(tile, ref.width, ref.height)

    def _count_stored(self, ref: TileRef) -> None:
        self.counters.passthrough += 1
        if ref.stretched:
            self.counters.stretched += 1

    def _disk_or_render(self, prepared: Prepared) -> tuple[Entry, Origin]:
        """In a worker thread: the disk tier's entry, else the shared tier's (never raise), else a
        fresh render."""
        file = prepared.source.file
        if self.cache is not None and prepared.passthrough is None:
            found = self.cache.get_lower_blocking(file.cache_name, prepared.key)
            if found is not None:
                return found
        try:
            stored, info = prepared.source.stored, prepared.source.info
            grid = level_grid(stored, info.levels, prepared.plan.level) if stored is not None else None
            body = self._ops.render(file.path, info.format, prepared.plan, file.version, grid)
        except SourceDamaged:
            # The renderer opens the file by name: one replaced since its stat is another image, and
            # what fails on it is a change (503, retry), not damage.
            raise_if_changed(file.path, file.version)
            raise
        return Entry(body, prepared.media_type, file.cache_name), "render"

    async def _stored_tile(self, file: SourceFile, grid: TileGrid, index: int) -> bytes:
        """From the page cache on the loop (never blocks), else opened and read in a worker thread
        of the I/O lane (not behind 2-millisecond renders), keeping the descriptor for next time."""
        cached = self._tile_files.read_if_cached(file.path, file.version, grid, index)
        if cached is not None:
            return cached
        tile, fd = await self.lanes.io.run(self._ops.read_tile, file.path, file.version, grid, index)
        self._tile_files.adopt(file.path, file.version, fd)
        return tile

    async def drain(self) -> None:
        """Wait for background disk writes and source re-checks (shutdown, tests)."""
        while self._disk_writes or self.registry.background:
            await asyncio.gather(*self._disk_writes, *self.registry.background, return_exceptions=True)

    def close(self) -> None:
        self._tile_files.close()

    def stats(self) -> dict[str, object]:
        lanes = {
            lane.name: {"threads": lane.threads, "busy": lane.busy, "waiting": lane.waiting, "dropped": lane.dropped}
            for lane in (self.lanes.io, self.lanes.tile, self.lanes.heavy, self.lanes.rechecks)
        }
        return {
            "cache": self.cache.stats() if self.cache is not None else {},
            "service": {**_asdict(self.counters), "in_flight": self._flights.in_flight},
            "lanes": lanes,
        }


def _asdict(counters: Counters) -> dict[str, int]:
    return {name: getattr(counters, name) for name in counters.__dataclass_fields__}
