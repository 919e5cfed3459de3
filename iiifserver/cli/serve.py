"""``serve`` (run the server), ``settings`` (print them), ``demo build``, ``get`` (one request in-process).

Owns: what is checked before any worker starts (folders, institutions, the port), how uvicorn is
configured (``server_config``), the run folder of the workers' metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iiifserver import config
from iiifserver.cli.options import check_institutions, load, setting_options, settings_options
from iiifserver.cli.root import main
from iiifserver.config import DEFAULT_IMAGES, Settings
from iiifserver.logs import configure_logging

if TYPE_CHECKING:
    import uvicorn

DEMO_ASSETS = Path(__file__).parent.parent / "demo" / "assets"


@main.command()
@settings_options
def serve(config_file: Path | None, **overrides: Any) -> None:
    """Run the server (uvicorn). With the default image folder, prepares the demo collection first."""
    settings = load(config_file, overrides)
    check_institutions(settings)
    configure_logging(settings.log_level, settings.log_format)
    if settings.images == DEFAULT_IMAGES:
        _build_demo(settings.images, large=True)
    settings = _check_folders(settings)
    from iiifserver import serving

    os.environ[config.WORKER_ENV] = settings.to_json()  # read back by each worker process
    uvicorn_config = server_config(settings)
    try:
        serving.check_port_free(settings.host, settings.port)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    # The run folder: every worker's metric values (prometheus_client's multiprocess mode) and
    # statistics, so that one scrape or one /admin/stats covers them all. Fresh for each run.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="iiifserver-run-") as run_dir:
        # Set before prometheus_client is first imported: it picks its value store (files or
        # memory) at import time, and with one worker the app runs in this very process.
        os.environ[config.METRICS_DIR_ENV] = run_dir
        from iiifserver.web import metrics

        metrics.prepare_directory(Path(run_dir))
        where = config.object_root(settings.images) or settings.images
        click.echo(f"iiifserver on http://{settings.host}:{settings.port}/iiif/3/ (images: {where})", err=True)
        try:
            serving.run(uvicorn_config, on_worker_exit=functools.partial(_worker_gone, Path(run_dir)))
        finally:
            # The folder goes with this block: nothing run later in this process may point at it.
            os.environ.pop(config.METRICS_DIR_ENV, None)


def _worker_gone(run_dir: Path, pid: int) -> None:
    """A worker process has gone: its live metrics and its count of connections go with it."""
    from iiifserver.web import connection_balance, metrics

    metrics.mark_process_dead(pid, run_dir)
    connection_balance.forget(run_dir, pid)


def _check_folders(settings: Settings) -> Settings:
    """The image and cache folders, checked before any worker starts: a mistake in them is a
    one-line usage error (exit 2), not a traceback from every worker. A cache folder that exists
    but cannot be written (read-only mount, permissions) is a degraded start instead: the server
    runs without the disk tier, and says so once."""
    images = settings.images
    if config.object_root(images) is not None:
        pass  # an object store: each request meets its state (503 while it is unreachable)
    elif not images.exists():
        raise click.UsageError(f"image folder {images} does not exist")
    elif not images.is_dir():
        raise click.UsageError(f"image folder {images} is not a folder")
    elif not os.access(images, os.R_OK | os.X_OK):
        raise click.UsageError(f"image folder {images} cannot be read")
    if settings.disk_cache_mb == 0:
        return settings
    cache = settings.cache
    if cache.exists() and not cache.is_dir():
        raise click.UsageError(f"cache folder {cache} is not a folder")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise click.UsageError(f"cache folder {cache} cannot be made: part of its path is a file") from None
    except OSError as exc:
        return _without_disk_cache(settings, exc)
    problem = _probe_writable(cache)
    return settings if problem is None else _without_disk_cache(settings, problem)


def _probe_writable(folder: Path) -> OSError | None:
    """None if a file can be made in ``folder`` (and is removed again), else the error."""
    probe = folder / f".write-probe.{os.getpid()}"
    try:
        probe.open("xb").close()
        probe.unlink()
    except OSError as exc:
        return exc
    return None


def _without_disk_cache(settings: Settings, exc: OSError) -> Settings:
    reason = exc.strerror or type(exc).__name__
    warning = f"warning: cache folder {settings.cache} is not writable ({reason}): serving without the disk cache"
    click.echo(warning, err=True)
    return dataclasses.replace(settings, disk_cache_mb=0)


def server_config(settings: Settings) -> uvicorn.Config:
    """How ``serve`` runs uvicorn: worker processes build the app from ``WORKER_ENV``."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from iiifserver.web import uvicorn_contract

    return uvicorn.Config(
        "iiifserver.app:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # Ours (web/http_protocol.py) when the uvicorn internals it needs hold, else uvicorn's own.
        http=uvicorn_contract.http_protocol(),
        log_level=settings.log_level,
        # web.observer.AccessLog logs every request, those answered in the protocol too.
        access_log=False,
        # JSON lines: uvicorn's own loggers go to the root handler and its JSON formatter.
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
        # X-Forwarded-* are handled by web/urls.py, from trusted proxies only. uvicorn's proxy
        # middleware would also wrap the app and hide its answer_in_protocol from the protocol.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # Idle keep-alive connections: web/connection_guard.py closes them in both our protocol
        # and the fallback; uvicorn's own timer (whole seconds) only in uvicorn's stock protocol.
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout),
    )


@main.command()
@setting_options
def settings(config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Print the settings in force (after TOML file, environment and --setting), as TOML; tokens masked."""
    resolved = load(config_file, overrides)
    for f in config.fields():
        value = getattr(resolved, f.name)
        if f.name in config.SECRET_SETTINGS and value:
            click.echo(f'{f.name} = "********"  # set; not shown')
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        click.echo(f"{f.name} = {text}")


@main.group()
def demo() -> None:
    """The bundled demo collection."""


@demo.command("build")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_IMAGES, show_default=True)
@click.option("--large/--no-large", default=True, show_default=True, help="Include the >100-megapixel image.")
def demo_build(out: Path, large: bool) -> None:
    """Build (or complete) the demo images in OUT."""
    paths = _build_demo(out, large=large)
    click.echo(f"{len(paths)} demo images in {out}")


def _build_demo(out: Path, *, large: bool) -> list[Path]:
    from iiifserver.demo import build_demo

    return build_demo(out, DEMO_ASSETS, large=large, progress=lambda line: click.echo(line, err=True))


@main.command()
@click.argument("path")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write the body here.")
@click.option("--header", "-H", "show_headers", is_flag=True, help="Print status and headers to stderr.")
@setting_options
def get(
    path: str, output: Path | None, show_headers: bool, config_file: Path | None, overrides: dict[str, Any]
) -> None:
    """Answer one request in-process, without a network server: PATH like /iiif/3/ID/info.json."""
    settings = load(config_file, overrides)
    import asyncio

    from iiifserver.app import create_app
    from iiifserver.asgi_call import call

    app = create_app(settings)

    async def one_request() -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            return await call(app, path)
        finally:
            await app.state.image_service.drain()  # let the disk cache write finish

    status, headers, body = asyncio.run(one_request())
    if show_headers:
        click.echo(f"HTTP {status}", err=True)
        for name, value in headers:
            click.echo(f"{name}: {value}", err=True)
    if output is not None:
        output.write_bytes(body)
    elif body:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    if status >= 400:
        sys.exit(1)
