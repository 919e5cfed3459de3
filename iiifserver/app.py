"""Application wiring: ``create_app(settings)`` builds the ASGI app. Nothing else lives here."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from iiifserver import config
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.image import probe as probe_module
from iiifserver.image import render as render_module
from iiifserver.image.planner import Plan
from iiifserver.image.service import ImageService
from iiifserver.image.source_info import SourceFormat, SourceInfo
from iiifserver.image.sources import FilesystemSource
from iiifserver.logs import configure_logging
from iiifserver.web import image_routes
from iiifserver.web.errors import http_exception_handler, unexpected_error_handler
from iiifserver.web.headers import CORSMiddleware


def create_app(settings: Settings) -> Starlette:
    probe_module.configure_libvips()
    encode = render_module.EncodeOptions(settings.jpeg_quality, settings.webp_quality)

    def probe(path: Path) -> SourceInfo:
        return probe_module.probe(
            path, plain_max_pixels=settings.plain_max_pixels, max_source_pixels=settings.max_source_pixels
        )

    def render(path: Path, fmt: SourceFormat, plan: Plan, version_token: str) -> bytes:
        return render_module.render(path, fmt, plan, encode, version_token)

    threads = settings.render_threads
    service = ImageService(
        settings,
        FilesystemSource(settings.images),
        probe,
        render,
        io_lane=Lane("io", max(4, threads), settings.max_waiting, settings.queue_timeout),
        tile_lane=Lane("tile", threads, settings.max_waiting, settings.queue_timeout),
        heavy_lane=Lane("heavy", settings.heavy_threads, settings.max_waiting, settings.queue_timeout),
    )

    async def home(request: Request) -> Response:
        return JSONResponse(
            {
                "service": "iiifserver",
                "image_api": {
                    "3.0": "/iiif/3/{identifier}/info.json",
                    "2.1": "/iiif/2/{identifier}/info.json",
                },
            }
        )

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n", headers={"cache-control": "no-store"})

    routes = [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        *image_routes.routes(service, settings),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(CORSMiddleware)],
        exception_handlers={HTTPException: http_exception_handler, Exception: unexpected_error_handler},
    )
    app.state.settings = settings
    app.state.image_service = service
    return app


def worker_app() -> Starlette:
    """Factory for uvicorn's worker processes: the settings the ``serve`` command resolved."""
    settings = config.worker_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
