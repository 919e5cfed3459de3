"""Application wiring: ``create_app(settings)`` builds the ASGI app. Nothing else lives here.

Owns: which parts a worker's app is made of and how they are connected: the lanes, the image
service with the operations and stores a worker gives it (made by ``image.operations``), the
presentation and change discovery services, access rules, the routes, the fast path and the
observers, and the background tasks of the app's lifespan; ``worker_app``, uvicorn's factory.
Must not know: what any part does with a request, how this worker's figures are gathered
(``web.worker_figures``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from iiifserver import allocator, config
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.image import operations
from iiifserver.image.access import AccessRules
from iiifserver.image.object_sources import parse_roots
from iiifserver.image.service import ImageService, Lanes
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
from iiifserver.web.worker_figures import WorkerFigures, cache_figures, lane_figures, publish_every_second

log = logging.getLogger(__name__)


def create_app(settings: Settings, observer: Observer | None = None) -> IIIFApplication:
    """The app; ``observer`` hears of every answered request (``web.observer``), as do the
    metrics (``metrics`` setting) and the access log (``access_log``)."""
    operations.configure_process(settings)
    institutions_path = Path(settings.institutions_file) if settings.institutions_file else None
    store = operations.object_store(settings, institutions_path)
    run_dir = config.metrics_dir()  # the folder ``serve`` made for this run's worker files
    metrics = (
        Metrics(
            lambda: cache_figures(service),
            lambda: lane_figures(lanes),
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
    cache = operations.tile_cache(settings, lanes.io)
    # Each institution's slug is one more image root prefix; the roots follow the file's changes.
    default_root = config.object_root(settings.images) or settings.images
    deployment = Deployment(institutions_path, default_root, parse_roots(settings.image_roots), store)
    service = ImageService(
        settings,
        deployment.source if institutions_path is not None else deployment.source.current,
        # Given the shared tier: facts another instance probed are read there, not from the file.
        operations.blocking_ops(
            settings, cache.shared if cache is not None else None, metrics.rendered if metrics is not None else None
        ),
        lanes,
        cache,
    )
    figures = WorkerFigures(service, store, lambda: app.fast_path)

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
            watcher = asyncio.create_task(operations.watch_purges(cache))
        shared_link = None
        if cache is not None and cache.shared is not None:
            # Up or down before the first request (one warning when down), then kept connected.
            await lanes.io.run(cache.shared.ping)
            shared_link = asyncio.create_task(cache.shared.keep_connected(lanes.rechecks.run))
        publisher = asyncio.create_task(publish_every_second(metrics, workers, figures.all, lanes.io))
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
            extra_stats=figures.extra,
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
