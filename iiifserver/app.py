"""Application wiring: ``create_app(settings)`` builds the ASGI app. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from iiifserver import allocator, config
from iiifserver.cache.disk import DiskCache
from iiifserver.cache.memory import MemoryCache
from iiifserver.cache.shared import SharedCache
from iiifserver.cache.tiered import TileCache
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.image import block_cache, tile_mosaic
from iiifserver.image import probe as probe_module
from iiifserver.image import render as render_module
from iiifserver.image.access import AccessRules
from iiifserver.image.block_cache import BlockCache
from iiifserver.image.object_sources import parse_roots
from iiifserver.image.object_store import ObjectPath, ObjectStore
from iiifserver.image.planner import Plan
from iiifserver.image.service import BlockingOps, ImageService, Lanes
from iiifserver.image.source_info import (
    SOURCE_INFO_FORMAT,
    SourceFormat,
    SourceInfo,
    SourceVersion,
    decode_source_info,
    encode_source_info,
)
from iiifserver.image.tiff_directory import read_tile_index, read_tile_index_from
from iiifserver.image.tile_files import open_and_read
from iiifserver.image.tile_grid import StoredTiles, TileGrid
from iiifserver.institutions import InstitutionError, load_institutions
from iiifserver.logs import configure_logging
from iiifserver.presentation import access as access_module
from iiifserver.presentation.catalogue import Catalogue
from iiifserver.presentation.change_log import ChangeLog, default_path
from iiifserver.presentation.changes import ChangeTracker
from iiifserver.presentation.institutions import InstitutionsScanner
from iiifserver.presentation.service import PresentationService
from iiifserver.web import admin, auth_routes, health, image_routes, pages, presentation_routes
from iiifserver.web.assets import Assets
from iiifserver.web.auth import Auth
from iiifserver.web.auth_manifests import ManifestServices
from iiifserver.web.connection_guard import ConnectionLimits
from iiifserver.web.errors import http_exception_handler, unexpected_error_handler
from iiifserver.web.fast_path import FastPath, ResponseMemo
from iiifserver.web.headers import CORSMiddleware
from iiifserver.web.institutions import (
    Deployment,
    document_base,
    host_collection,
    institution_of_path,
    request_host,
)
from iiifserver.web.metrics import Metrics
from iiifserver.web.observer import AccessLog, Observer, combined
from iiifserver.web.response import Reply

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def create_app(settings: Settings, observer: Observer | None = None) -> IIIFApplication:
    """The app; ``observer`` hears of every answered request (``web.observer``), as do the
    metrics (``metrics`` setting) and the access log (``access_log``)."""
    probe_module.configure_libvips()
    probe_module.set_opened_budget(nbytes=settings.opened_levels_mb * MIB)
    tile_mosaic.decoded_tiles.resize(settings.decoded_tiles_mb * MIB)
    encode = render_module.EncodeOptions(settings.jpeg_quality, settings.webp_quality, settings.jpeg_chroma_subsampling)

    institutions_path = Path(settings.institutions_file) if settings.institutions_file else None
    store = _object_store(settings, institutions_path)

    def probe(path: Path | ObjectPath) -> SourceInfo:
        def here() -> SourceInfo:
            return probe_module.probe(
                path, plain_max_pixels=settings.plain_max_pixels, max_source_pixels=settings.max_source_pixels
            )

        # Facts another instance probed are read from the shared tier instead of the file's headers.
        shared = cache.shared if cache is not None else None
        if shared is None or isinstance(path, ObjectPath):
            return here()
        return _probe_through_shared(shared, settings, path, here)

    def render(
        path: Path | ObjectPath, fmt: SourceFormat, plan: Plan, version: SourceVersion, grid: TileGrid | None
    ) -> bytes:
        if metrics is None:
            return render_module.render(path, fmt, plan, encode, version, grid)
        started = time.perf_counter()
        try:
            return render_module.render(path, fmt, plan, encode, version, grid)
        finally:
            metrics.rendered(time.perf_counter() - started)

    def tile_index(path: Path | ObjectPath, info: SourceInfo) -> StoredTiles | None:
        # A file is indexed with passthrough off too: its renders decode regions from the stored
        # tiles. An object's renders go through libvips: its index serves passthrough only.
        if info.format is not SourceFormat.TIFF or not info.is_tiled:
            return None
        if isinstance(path, ObjectPath) and not settings.tile_passthrough:
            return None
        try:
            if isinstance(path, ObjectPath):
                # The directories through the block cache: ranged reads, once per object version.
                reader = block_cache.reader_of(path)
                return read_tile_index_from(lambda n, at: reader.read(at, n), path.size, info.levels)
            return read_tile_index(path, info.levels)
        except (OSError, ValueError) as exc:  # no passthrough for this file; rendering still works
            log.warning("no stored-tile index for %s: %s", path, exc)
            return None

    run_dir = config.metrics_dir()  # the folder ``serve`` made for this run's worker files
    metrics = (
        Metrics(
            lambda: _cache_figures(service),
            lambda: _lane_figures(lanes),
            run_dir,
            # Requests also counted by institution (its slug remembered per raw path, as the kind).
            (lambda raw: institution_of_path(deployment.registry, raw)) if institutions_path else None,
        )
        if settings.metrics
        else None
    )
    workers = admin.WorkerStats(run_dir)
    threads = settings.render_threads
    lanes = Lanes(
        io=Lane("io", max(4, threads), settings.max_waiting, settings.queue_timeout),
        # One nice value for both render lanes: libvips' worker threads are shared between them.
        tile=Lane("tile", threads, settings.max_waiting, settings.queue_timeout, settings.render_nice),
        heavy=Lane("heavy", settings.heavy_threads, settings.max_waiting, settings.queue_timeout, settings.render_nice),
        background=Lane("background", 1, settings.max_waiting, settings.queue_timeout),
    )
    cache = _tile_cache(settings, lanes.io)
    # Each institution's slug is one more image root prefix; the roots follow the file's changes.
    default_root = config.object_root(settings.images) or settings.images
    deployment = Deployment(institutions_path, default_root, parse_roots(settings.image_roots), store)
    service = ImageService(
        settings,
        deployment.source if institutions_path is not None else deployment.source.current,
        BlockingOps(probe=probe, render=render, tile_index=tile_index, read_tile=open_and_read),
        lanes,
        cache,
    )

    presentation = PresentationService(
        settings.manifests,
        settings.images,
        service,
        lanes.io.run,
        check_interval=settings.source_check_interval,
        page_size=settings.collection_page_size,
        scan=(lambda scanner: InstitutionsScanner(scanner, deployment.current).scan) if institutions_path else None,
        member_base=(lambda name, base: document_base(deployment.registry, name, base)) if institutions_path else None,
    )
    # A swapped registry: files resolved through the old roots are looked up again.
    deployment.on_swap.append(lambda _registry: service.forget(None))
    if metrics is not None:
        deployment.on_swap.append(lambda _registry: metrics.institutions_changed())
    changes = ChangeTracker(
        presentation,
        ChangeLog(Path(settings.discovery_store) if settings.discovery_store else default_path(settings.cache)),
        lanes.io.run,
        check_interval=settings.discovery_check_interval,
        page_size=settings.discovery_page_size,
    )
    memo = ResponseMemo(settings.trusted_proxy_networks)
    # Access rules (docs/access.md): read from the descriptions before the first request, then
    # with the catalogue; a change empties the memo (it may hold answers the check must now see).
    access_rules = AccessRules()
    access_rules.on_change(memo.clear)
    auth = Auth(settings, access_rules)
    rules_lock = asyncio.Lock()

    rules_read_from: list[Catalogue | None] = [None]  # the catalogue the rules were last read from

    async def load_rules(catalogue: Catalogue | None = None) -> None:
        """Read the rules from ``catalogue`` (default: the presentation's, rescanned if stale)."""
        async with rules_lock:
            catalogue = catalogue or await presentation.catalogue()
            await access_module.refresh(catalogue, service, access_rules, deployment.access_default)
            rules_read_from[0] = catalogue

    async def follow_rules() -> None:
        """Rules from every catalogue a presentation request scanned (no scan of its own), and a
        rescan of their own every ``access_rules_interval`` seconds."""
        last_own = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                if time.monotonic() - last_own >= settings.access_rules_interval:
                    last_own = time.monotonic()
                    await load_rules()
                elif (latest := presentation.latest) is not None and latest is not rules_read_from[0]:
                    await load_rules(latest)
            except Exception:  # the last rules stay; the next round tries again
                log.exception("reading the access rules failed")

    auth.load = load_rules
    presentation.access = ManifestServices(auth)

    def describe() -> dict[str, object]:
        return {
            "service": "iiifserver",
            "image_api": {"3.0": "/iiif/3/{identifier}/info.json", "2.1": "/iiif/2/{identifier}/info.json"},
            "presentation_api": {
                "3.0": {
                    "collection": "/iiif/presentation/3/collection",
                    "manifest": "/iiif/presentation/3/{object}/manifest",
                }
            },
            "change_discovery_api": {"1.0": "/iiif/discovery/activity/all-changes"},
        }

    async def object_exists(object_id: str) -> bool:
        entry = (await presentation.catalogue()).objects.get(object_id)
        return entry is not None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = None
        if cache is not None and cache.disk is not None:
            # Debris of crashed writers goes, the size is recounted; then purges made by other
            # worker processes reach this one's memory tier within a second.
            disk = cache.disk
            await lanes.io.run(disk.scan)
            watcher = asyncio.create_task(_watch_purges(cache))
        shared_link = None
        if cache is not None and cache.shared is not None:
            # Up or down before the first request (one warning when down), then kept connected.
            await lanes.io.run(cache.shared.ping)
            shared_link = asyncio.create_task(cache.shared.keep_connected(lanes.rechecks.run))
        publisher = asyncio.create_task(_publish_every_second(metrics, workers, lambda: worker_figures(), lanes.io))
        await load_rules()  # before the first request: restricted images are known from the start
        rules_refresher = asyncio.create_task(follow_rules())
        # Changes made while the server was down are recorded now, not when a harvester first asks.
        first_check = asyncio.create_task(changes.check_if_due())
        reloads = None
        if institutions_path is not None and settings.institutions_check_interval > 0:
            reloads = asyncio.create_task(deployment.watch(settings.institutions_check_interval, lanes.io.run))
        try:
            yield
        finally:
            rules_refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rules_refresher
            if reloads is not None:
                reloads.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reloads
            first_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first_check
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            if metrics is not None:
                metrics.close()
            workers.forget()
            await service.drain()
            service.close()
            changes.close()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if shared_link is not None and cache is not None and cache.shared is not None:
                shared_link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shared_link
                cache.shared.close()

    def fast_path_stats() -> dict[str, int]:
        return app.fast_path.stats() if app.fast_path is not None else {}

    def block_cache_stats() -> dict[str, object]:
        blocks = store.block_cache if store is not None else None
        if not isinstance(blocks, BlockCache):
            return {}
        return {"block_cache": {"fetched": blocks.fetched, "hits": blocks.hits, "bytes": blocks.nbytes}}

    def worker_figures() -> dict[str, object]:
        return {**service.stats(), "fast_path": fast_path_stats(), **block_cache_stats()}

    image_endpoints = image_routes.endpoints(service, settings, memo, auth)
    routes = [
        *health.routes(
            None if config.object_root(settings.images) else settings.images,
            settings.cache if settings.disk_cache_mb else None,
            settings.workers,
            workers.live_workers,
            lanes.io.run,
            service.damaged,
        ),
        *(metrics.routes(settings.metrics_token, lanes.io.run) if metrics is not None else []),
        *pages.routes(
            settings,
            Assets(run_io=lanes.io.run),
            object_exists,
            describe,
            (
                lambda request: host_collection(
                    deployment.registry, request_host(request.scope, settings.trusted_proxies)
                )
            )
            if institutions_path
            else None,
        ),
        *admin.routes(
            service,
            settings.admin_token,
            extra_stats=lambda: {"fast_path": fast_path_stats(), **block_cache_stats()},
            workers=workers,
            run_io=lanes.io.run,
            institutions=deployment.current if institutions_path is not None else None,
        ),
        *image_routes.routes(image_endpoints),
        *auth_routes.routes(auth, service.find),
        *presentation_routes.routes(presentation, settings, changes, deployment.current),
    ]
    app = IIIFApplication(
        routes=routes,
        middleware=[Middleware(CORSMiddleware)],
        exception_handlers={HTTPException: http_exception_handler, Exception: unexpected_error_handler},
        lifespan=lifespan,
    )
    # uvicorn's own access log is off (``cli.server_config``): it missed the answers the HTTP
    # protocol gives itself. This one hears every request.
    access_log = (
        AccessLog(
            settings.log_format,
            settings.trusted_proxy_networks,
            institution_of=(lambda raw: institution_of_path(deployment.registry, raw)) if institutions_path else None,
        )
        if settings.access_log
        else None
    )
    observer = combined([observer, metrics, access_log])
    app.fast_path = FastPath(app.framework, service, memo, image_endpoints, observer)
    app.connection_limits = ConnectionLimits.from_settings(settings)
    app.state.settings = settings
    app.state.image_service = service
    app.state.presentation = presentation
    app.state.changes = changes
    app.state.memo = memo
    app.state.access_rules = access_rules
    app.state.auth = auth
    app.state.deployment = deployment
    return app


class IIIFApplication(Starlette):
    """Starlette with the fast path in front of its whole middleware stack.

    Starlette always puts its error middleware outermost; a repeated IIIF request or a tile miss
    has no use for it (the image endpoints answer their own errors) and paid for it on every
    request. Everything else goes through the framework as usual. ``web.http_protocol`` finds
    ``answer_in_protocol`` and ``observer`` here.
    """

    fast_path: FastPath | None = None
    connection_limits: ConnectionLimits | None = None  # read by web.connection_guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and scope["type"] == "http":
            scope["app"] = self
            await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def answer_in_protocol(self, scope: Scope) -> Reply | None:
        """For ``web.http_protocol``: a repeated request or a cold tile answered before any task is started."""
        return self.fast_path.answer_in_protocol(scope) if self.fast_path is not None else None

    @property
    def observer(self) -> Observer | None:
        """What hears of every answered request (``web.observer``), whichever way it was answered."""
        return self.fast_path.observer if self.fast_path is not None else None

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def _object_store(settings: Settings, institutions: Path | None = None) -> ObjectStore | None:
    """The process's object store client and block cache, when an image root is an s3:// URL
    (an institution's included; its errors are the ``Deployment``'s to report)."""
    if not config.uses_object_storage(settings) and not _institutions_use_objects(institutions):
        return None
    # Each worker process bounds the blocks it knows of (its own, and what it found at start):
    # a share of the bound each keeps the shared folder within it.
    blocks = BlockCache(settings.block_cache, settings.block_cache_mb * MIB // max(1, settings.workers))
    return ObjectStore(settings.storage_timeout, blocks)


def _institutions_use_objects(path: Path | None) -> bool:
    try:
        registry = load_institutions(path)
    except InstitutionError:
        return False
    return any(config.object_root(item.images) for item in registry.items)


def _tile_cache(settings: Settings, io: Lane) -> TileCache | None:
    if settings.memory_cache_mb == 0 and settings.disk_cache_mb == 0 and not settings.shared_cache_url:
        return None
    disk = DiskCache(settings.cache, settings.disk_cache_mb * MIB) if settings.disk_cache_mb else None
    # A zero-byte memory tier stores nothing: the disk tier then answers every hit.
    return TileCache(MemoryCache(settings.memory_cache_mb * MIB), disk, io.run, shared=_shared_cache(settings))


def _shared_cache(settings: Settings) -> SharedCache | None:
    if not settings.shared_cache_url:
        return None
    return SharedCache(
        settings.shared_cache_url,
        timeout=settings.shared_cache_timeout,
        max_entry_bytes=settings.shared_cache_max_entry_kb * 1024,
        ttl=settings.shared_cache_ttl,
        prefix=settings.shared_cache_prefix,
        # One connection per thread that may call it: the lanes' threads.
        max_connections=max(4, settings.render_threads) + settings.render_threads + settings.heavy_threads + 2,
    )


def _probe_through_shared(
    shared: SharedCache, settings: Settings, path: Path, probe: Callable[[], SourceInfo]
) -> SourceInfo:
    """``path``'s facts from the shared tier, else ``probe()`` (blocking: runs in a worker thread)
    and shared when the file stayed the same version throughout. Damaged and unsupported sources
    raise from the probe and are never shared.

    Named by the real path under the image root, not the identifier (every identifier of one file
    shares), and the version stat'd now, so a replaced file is another name (the registry checks
    the version it resolved against the file after this returns); also by the encoding version and
    the probe's limits, which decide whether a file is served at all.
    """
    root = Path(os.path.realpath(settings.images))
    try:
        before = SourceVersion.of(os.stat(path))
    except OSError:
        return probe()  # the probe reports it
    if not path.is_relative_to(root):
        return probe()
    name = "/".join(
        (
            f"source-info-{SOURCE_INFO_FORMAT}",
            f"{settings.plain_max_pixels}-{settings.max_source_pixels}",
            before.token,
            path.relative_to(root).as_posix(),
        )
    )
    info = shared.load_facts(name, decode_source_info)
    if info is not None:
        return info
    info = probe()
    try:
        unchanged = SourceVersion.of(os.stat(path)) == before
    except OSError:
        unchanged = False
    if unchanged:  # else these may be another file's facts: not filed under ``before``
        shared.put_facts(name, encode_source_info(info))
    return info


def _cache_figures(service: ImageService) -> dict[str, int]:
    """The cumulative figures ``web.metrics`` publishes, from this process's service and tiers."""
    figures = {
        "renders": service.counters.renders,
        "renders_deferred": service.admission.deferred,
        "stored_tiles_not_kept": service.doorkeeper.first_asks,
        "passthrough": service.counters.passthrough,
    }
    cache = service.cache
    if cache is not None:
        figures["memory_hits"] = cache.memory.stats.hits
        figures["memory_misses"] = cache.memory.stats.misses
        if cache.disk is not None:
            figures["disk_hits"] = cache.disk.stats.hits
            figures["disk_misses"] = cache.disk.stats.misses
        if cache.shared is not None:
            shared = cache.shared.stats
            figures["shared_hits"] = shared.hits
            figures["shared_misses"] = shared.misses
            figures["shared_facts_hits"] = shared.facts_hits
            figures["shared_facts_misses"] = shared.facts_misses
            figures["shared_up"] = int(shared.up)
    return figures


def _lane_figures(lanes: Lanes) -> dict[str, int]:
    figures: dict[str, int] = {}
    for lane in (lanes.io, lanes.tile, lanes.heavy, lanes.rechecks):
        figures[lane.name] = lane.waiting
        figures[f"{lane.name}:busy"] = lane.busy
    return figures


async def _publish_every_second(
    metrics: Metrics | None, workers: admin.WorkerStats, figures: Callable[[], dict[str, object]], io: Lane
) -> None:
    """Metrics to prometheus_client's files and this worker's figures to its stats file."""
    while True:
        try:
            if metrics is not None:
                metrics.publish()
            if workers.directory is not None:
                await io.run(workers.publish, figures())
        except asyncio.CancelledError:
            raise
        except Exception:  # a publisher that dies silently would freeze every figure
            log.exception("publishing metrics")
        await asyncio.sleep(1.0)


async def _watch_purges(cache: TileCache) -> None:
    while True:
        await asyncio.sleep(1.0)
        try:
            await cache.check_generation()
        except Exception:  # a watcher that dies silently would leave stale tiles after a purge
            log.exception("purge watcher")


def worker_app() -> Starlette:
    """Factory for uvicorn's worker processes: the settings the ``serve`` command resolved."""
    settings = config.worker_settings()
    allocator.limit_arenas(settings.malloc_arenas)  # before the lanes start their threads
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # Caches keep many long-lived objects; full collections walking them show up as tail
    # latency. Start-up objects are frozen out of collection and young collections run less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return app
