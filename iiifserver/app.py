"""Application wiring: ``create_app(settings)`` builds the ASGI app. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from iiifserver import config
from iiifserver.cache.disk import DiskCache
from iiifserver.cache.memory import MemoryCache
from iiifserver.cache.tiered import TileCache
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.image import probe as probe_module
from iiifserver.image import render as render_module
from iiifserver.image.planner import Plan
from iiifserver.image.service import BlockingOps, ImageService, Lanes
from iiifserver.image.source_info import SourceFormat, SourceInfo, SourceVersion
from iiifserver.image.sources import FilesystemSource
from iiifserver.image.tiff_directory import read_tile_index
from iiifserver.image.tile_files import open_and_read
from iiifserver.image.tile_grid import StoredTiles
from iiifserver.logs import configure_logging
from iiifserver.presentation.service import PresentationService
from iiifserver.web import admin, image_routes, pages, presentation_routes
from iiifserver.web.assets import Assets
from iiifserver.web.errors import http_exception_handler, unexpected_error_handler
from iiifserver.web.fast_path import FastPath, ResponseMemo
from iiifserver.web.headers import CORSMiddleware
from iiifserver.web.observer import AccessLog, Observer
from iiifserver.web.response import Reply

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def create_app(settings: Settings, observer: Observer | None = None) -> IIIFApplication:
    """The app; ``observer`` hears of every answered request (``web.observer``), by default
    uvicorn's access log for the answers given in the protocol when ``access_log`` is on."""
    probe_module.configure_libvips()
    encode = render_module.EncodeOptions(settings.jpeg_quality, settings.webp_quality, settings.jpeg_chroma_subsampling)

    def probe(path: Path) -> SourceInfo:
        return probe_module.probe(
            path, plain_max_pixels=settings.plain_max_pixels, max_source_pixels=settings.max_source_pixels
        )

    def render(path: Path, fmt: SourceFormat, plan: Plan, version: SourceVersion) -> bytes:
        return render_module.render(path, fmt, plan, encode, version)

    def tile_index(path: Path, info: SourceInfo) -> StoredTiles | None:
        if not settings.tile_passthrough or info.format is not SourceFormat.TIFF or not info.is_tiled:
            return None
        try:
            return read_tile_index(path, info.levels)
        except (OSError, ValueError) as exc:  # no passthrough for this file; rendering still works
            log.warning("no stored-tile index for %s: %s", path, exc)
            return None

    threads = settings.render_threads
    lanes = Lanes(
        io=Lane("io", max(4, threads), settings.max_waiting, settings.queue_timeout),
        tile=Lane("tile", threads, settings.max_waiting, settings.queue_timeout),
        heavy=Lane("heavy", settings.heavy_threads, settings.max_waiting, settings.queue_timeout),
        background=Lane("background", 1, settings.max_waiting, settings.queue_timeout),
    )
    cache = _tile_cache(settings, lanes.io)
    service = ImageService(
        settings,
        FilesystemSource(settings.images),
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
    )
    memo = ResponseMemo(settings.trusted_proxy_set)

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
        }

    async def object_exists(object_id: str) -> bool:
        entry = (await presentation.catalogue()).objects.get(object_id)
        return entry is not None

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n", headers={"cache-control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = None
        if cache is not None and cache.disk is not None:
            # Debris of crashed writers goes, the size is recounted; then purges made by other
            # worker processes reach this one's memory tier within a second.
            disk = cache.disk
            await lanes.io.run(disk.scan)
            watcher = asyncio.create_task(_watch_purges(cache))
        try:
            yield
        finally:
            await service.drain()
            service.close()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    def fast_path_stats() -> dict[str, int]:
        return app.fast_path.stats() if app.fast_path is not None else {}

    image_endpoints = image_routes.endpoints(service, settings, memo)
    routes = [
        Route("/health", health, methods=["GET", "HEAD"]),
        *pages.routes(settings, Assets(run_io=lanes.io.run), object_exists, describe),
        *admin.routes(service, settings.admin_token, extra_stats=lambda: {"fast_path": fast_path_stats()}),
        *image_routes.routes(image_endpoints),
        *presentation_routes.routes(presentation, settings),
    ]
    app = IIIFApplication(
        routes=routes,
        middleware=[Middleware(CORSMiddleware)],
        exception_handlers={HTTPException: http_exception_handler, Exception: unexpected_error_handler},
        lifespan=lifespan,
    )
    if observer is None and settings.access_log:
        observer = AccessLog()  # uvicorn's access log misses the answers the HTTP protocol gives itself
    app.fast_path = FastPath(app.framework, service, memo, image_endpoints, observer)
    app.state.settings = settings
    app.state.image_service = service
    app.state.presentation = presentation
    app.state.memo = memo
    return app


class IIIFApplication(Starlette):
    """Starlette with the fast path in front of its whole middleware stack.

    Starlette always puts its error middleware outermost; a repeated IIIF request or a tile miss
    has no use for it (the image endpoints answer their own errors) and paid for it on every
    request. Everything else goes through the framework as usual. ``web.http_protocol`` finds
    ``answer_in_protocol`` and ``observer`` here.
    """

    fast_path: FastPath | None = None

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


def _tile_cache(settings: Settings, io: Lane) -> TileCache | None:
    if settings.memory_cache_mb == 0 and settings.disk_cache_mb == 0:
        return None
    disk = DiskCache(settings.cache, settings.disk_cache_mb * MIB) if settings.disk_cache_mb else None
    # A zero-byte memory tier stores nothing: the disk tier then answers every hit.
    return TileCache(MemoryCache(settings.memory_cache_mb * MIB), disk, io.run)


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
    configure_logging(settings.log_level)
    app = create_app(settings)
    # Caches keep many long-lived objects; full collections walking them show up as tail
    # latency. Start-up objects are frozen out of collection and young collections run less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return app
