"""The ``iiifserver`` command line.

Owns: the commands and their flags. ``serve`` flags map one to one onto ``Settings`` fields
(generated from them, so a new setting is a new flag with no extra code); the other commands
that need settings take ``--config FILE`` and repeatable ``--setting NAME=VALUE`` instead, so
their ``--help`` shows their own options rather than forty server flags. Commands do their
work through the same modules the server uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import logging
import math
import os
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iiifserver import config
from iiifserver.config import DEFAULT_IMAGES, Settings, SettingsError, load_settings
from iiifserver.logs import configure_logging

if TYPE_CHECKING:
    import uvicorn

    from iiifserver.ingest.batch import BatchOptions
    from iiifserver.ingest.plan import ConvertOptions
    from iiifserver.ingest.report import Summary

DEMO_ASSETS = Path(__file__).parent / "demo" / "assets"


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One CLI flag per setting; unset flags leave the lower layers (TOML, env) in force."""
    for f in reversed(config.fields()):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        help_text = f"{config.field_help(f)} [default: {f.default}; env {config.env_name(f.name)}]"
        if kind == "bool":
            fn = click.option(f"{flag}/--no-{f.name.replace('_', '-')}", f.name, default=None, help=help_text)(fn)
        else:
            click_type = {"int": int, "float": float, "Path": click.Path(path_type=Path)}.get(kind, str)
            fn = click.option(flag, f.name, type=click_type, default=None, help=help_text)(fn)
    return _config_option(fn)


def _config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML file of settings (or env IIIFSERVER_CONFIG).",
    )(fn)


def _setting_pairs(ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` texts -> overrides, each value converted as its environment variable would be."""
    names = [f.name for f in config.fields()]
    overrides: dict[str, Any] = {}
    for pair in pairs:
        raw_name, equals, value = pair.partition("=")
        name = raw_name.strip().replace("-", "_")  # max-width and max_width alike
        if not equals or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", ctx, param)
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else " (`iiifserver settings` lists them)"
            raise click.BadParameter(f"unknown setting {raw_name.strip()!r}{hint}", ctx, param)
        try:
            overrides[name] = config.coerce_setting(name, value, name)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return overrides


def _setting_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` and ``--setting NAME=VALUE``: defaults < file < environment < these."""
    fn = click.option(
        "--setting",
        "-s",
        "overrides",
        multiple=True,
        metavar="NAME=VALUE",
        callback=_setting_pairs,
        help="Set one setting (repeatable), e.g. -s images=scans -s max_width=4000; "
        "names and values as in the TOML file. Wins over --config and IIIFSERVER_* variables.",
    )(fn)
    return _config_option(fn)


def _load(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config_file, overrides=overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _check_institutions(settings: Settings) -> None:
    """Wrong [institutions.*] tables stop the start here, with their message, not in each worker."""
    if not settings.institutions_file:
        return
    from iiifserver.institutions import InstitutionError, load_institutions

    try:
        load_institutions(Path(settings.institutions_file))
    except InstitutionError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
@click.version_option(package_name="iiifserver")
def main() -> None:
    """iiifserver: IIIF Image API 3.0/2.1 and Presentation API 3.0 server for pyramidal TIFFs."""


@main.command()
@_settings_options
def serve(config_file: Path | None, **overrides: Any) -> None:
    """Run the server (uvicorn). With the default image folder, prepares the demo collection first."""
    settings = _load(config_file, overrides)
    _check_institutions(settings)
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
            serving.run(uvicorn_config, on_worker_exit=lambda pid: metrics.mark_process_dead(pid, Path(run_dir)))
        finally:
            # The folder goes with this block: nothing run later in this process may point at it.
            os.environ.pop(config.METRICS_DIR_ENV, None)


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
@_setting_options
def settings(config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Print the settings in force (after TOML file, environment and --setting), as TOML; tokens masked."""
    resolved = _load(config_file, overrides)
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
@_setting_options
def get(
    path: str, output: Path | None, show_headers: bool, config_file: Path | None, overrides: dict[str, Any]
) -> None:
    """Answer one request in-process, without a network server: PATH like /iiif/3/ID/info.json."""
    settings = _load(config_file, overrides)
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


@main.group()
def users() -> None:
    """Login users of restricted images (the file named by auth_users_file; docs/access.md)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--file",
    "users_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The users file (default: auth_users_file of the settings).",
)
@_setting_options
def users_add(name: str, users_file: Path | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Add user NAME (or set a new password): prompts for the password and writes its scrypt hash."""
    from iiifserver.web.auth import add_user

    if users_file is None:
        configured = _load(config_file, overrides).auth_users_file
        if not configured:
            raise click.UsageError("no users file: pass --file or set auth_users_file")
        users_file = Path(configured)
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        add_user(users_file, name, password)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"user {name!r} written to {users_file}")


@main.group()
def cache() -> None:
    """The disk tile cache."""


@cache.command("purge")
@click.argument("identifier", required=False)
@_setting_options
def cache_purge(identifier: str | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Remove IDENTIFIER's cached tiles (all tiles without one) from the disk cache.

    Running servers sharing the cache folder drop their memory tiers within a second.
    """
    settings = _load(config_file, overrides)
    from iiifserver.cache.disk import DiskCache
    from iiifserver.image.sources import cache_names

    if not settings.cache.is_dir():
        click.echo(f"no cache folder {settings.cache}: nothing to purge", err=True)
        return
    disk = DiskCache(settings.cache, max(1, settings.disk_cache_mb) * 1024 * 1024)
    if identifier is None:
        removed = disk.purge(None)
    else:
        # Entries are filed by file name; an identifier may name its file with or without extension.
        name = unicodedata.normalize("NFC", identifier)
        removed = sum(disk.purge(candidate) for candidate in cache_names(name))
    what = f"for {identifier!r}" if identifier is not None else "in all"
    click.echo(f"purged {removed} cached tiles {what} ({settings.cache})")


@main.command()
@click.argument("identifiers", nargs=-1)
@click.option("--strict", is_flag=True, help="Images without a recorded checksum fail the check too.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Files hashed at once [default: cores, at most 4]."
)
@click.option("--quiet", is_flag=True, help="No progress lines; only problems and the summary.")
@_setting_options
def verify(
    identifiers: tuple[str, ...],
    strict: bool,
    threads: int | None,
    quiet: bool,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Check converted images against the SHA-256 that `convert` recorded in their stamps.

    Checks IDENTIFIERs, or every image under the image folder without any. Reads only; never
    changes a file. An s3://BUCKET/PREFIX image root: each .tif object there (or named) is
    streamed and checked against the SHA-256 that `convert --out s3://` put in its metadata.
    Exit status: 0 all intact (images without a checksum are warnings), 1 if any
    image changed, could not be read or was not found (or, with --strict, has no checksum),
    2 usage error.
    """
    settings = _load(config_file, overrides)
    from iiifserver.ingest import verify as checks

    root = settings.images
    url = config.object_root(root)
    if url is not None:  # an s3:// image root: each object against the SHA-256 in its metadata
        _verify_objects(url, identifiers, strict=strict, threads=threads or 4, quiet=quiet)
        return
    if not root.is_dir():
        raise click.UsageError(f"image folder {root} does not exist")
    if identifiers:
        files, missing = checks.named_files(root, [unicodedata.normalize("NFC", i) for i in identifiers])
    else:
        files, missing = checks.image_files(root), []
    for identifier in missing:
        click.echo(f"not found: {identifier}", err=True)

    def progress(p: checks.Progress) -> None:
        mb_done, mb_total = p.bytes_done / 1e6, p.bytes_total / 1e6
        click.echo(f"verify: {p.files_done}/{p.files_total} files, {mb_done:.0f}/{mb_total:.0f} MB", err=True)

    counts = dict.fromkeys(checks.Verdict, 0)
    workers = threads or min(4, os.cpu_count() or 1)
    for finding in checks.verify(files, root, threads=workers, progress=None if quiet else progress):
        counts[finding.verdict] += 1
        if finding.verdict is not checks.Verdict.OK:
            level = "warning" if finding.verdict is checks.Verdict.NO_CHECKSUM and not strict else "error"
            click.echo(f"{level}: {finding.name}: {finding.verdict.value} ({finding.detail})", err=True)
    click.echo(
        f"{counts[checks.Verdict.OK]} intact, {counts[checks.Verdict.CHANGED]} changed, "
        f"{counts[checks.Verdict.UNREADABLE]} unreadable, {counts[checks.Verdict.NO_CHECKSUM]} without a checksum, "
        f"{len(missing)} not found ({root})",
        err=True,
    )
    failed = missing or any(counts[v] for v in checks.Verdict if v.is_problem)
    if failed or (strict and counts[checks.Verdict.NO_CHECKSUM]):
        sys.exit(1)


def _verify_objects(url: str, identifiers: tuple[str, ...], *, strict: bool, threads: int, quiet: bool) -> None:
    """``verify`` on an ``s3://BUCKET/PREFIX`` root: the ``.tif`` objects under it, or those the
    identifiers name (``.tif`` added when they have no extension), each streamed and hashed."""
    from concurrent.futures import ThreadPoolExecutor

    from iiifserver.image.object_store import StorageUnavailable, parse_object_url
    from iiifserver.ingest import publish
    from iiifserver.ingest.verify import Verdict

    bucket, prefix = parse_object_url(url)
    base = f"{prefix}/" if prefix else ""
    if identifiers:
        names = [unicodedata.normalize("NFC", i) for i in identifiers]
        keys = [base + (n if "." in n.rsplit("/", 1)[-1] else n + ".tif") for n in names]
    else:
        try:
            keys = [k for k in publish.store(publish.HEAD_TIMEOUT).list_keys(bucket, prefix) if k.endswith(".tif")]
        except StorageUnavailable:
            click.echo(f"error: object store unreachable or refusing (listing {url})", err=True)
            sys.exit(1)
    counts = dict.fromkeys(Verdict, 0)
    with ThreadPoolExecutor(threads) as pool:
        for done, (key, (verdict, detail)) in enumerate(
            zip(keys, pool.map(lambda k: publish.verify_object(bucket, k), keys), strict=True), 1
        ):
            counts[verdict] += 1
            if not quiet:
                click.echo(f"verify: {done}/{len(keys)} objects", err=True)
            if verdict is not Verdict.OK:
                level = "warning" if verdict is Verdict.NO_CHECKSUM and not strict else "error"
                click.echo(f"{level}: {key[len(base) :]}: {verdict.value} ({detail})", err=True)
    click.echo(
        f"{counts[Verdict.OK]} intact, {counts[Verdict.CHANGED]} changed, {counts[Verdict.UNREADABLE]} unreadable, "
        f"{counts[Verdict.NO_CHECKSUM]} without a checksum ({url})",
        err=True,
    )
    if any(counts[v] for v in Verdict if v.is_problem) or (strict and counts[Verdict.NO_CHECKSUM]):
        sys.exit(1)


@main.group()
def manifests() -> None:
    """Object descriptions and the Presentation API documents built from them."""


def _cli_base(settings: Settings) -> str:
    return settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"


@manifests.command("build")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Also write every document here: OBJECT/manifest.json, collection.json, collection/PATH.json.",
)
@_setting_options
def manifests_build(out: Path | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Build every manifest and collection (ids under public_url), reporting each bad description."""
    settings = _load(config_file, overrides)
    failures = asyncio.run(_build_all(settings, out, progress=True))
    if failures:
        sys.exit(1)


@manifests.command("validate")
@click.argument("identifiers", nargs=-1)
@click.option(
    "--schema",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Also check every document against this JSON Schema (the IIIF Presentation 3.0 schema).",
)
@click.option(
    "--profile",
    type=click.Choice(["europeana"]),
    default=None,
    help="Check each manifest (or the IDENTIFIERS given) against what an aggregator asks: errors and warnings, "
    "exit 1 on errors only. See docs/europeana.md.",
)
@click.option(
    "--url",
    "live_url",
    metavar="BASE",
    default=None,
    help="With --profile: fetch each manifest and its first info.json from this running server (e.g. the "
    "public https address) and also check CORS and the ids as served.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="With --profile: the report's format.",
)
@_setting_options
def manifests_validate(
    identifiers: tuple[str, ...],
    schema: Path | None,
    profile: str | None,
    live_url: str | None,
    output_format: str,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Check every description and its images, and build each document; exit 1 on any problem.

    With --profile, check the manifests as served (ids under public_url) against an aggregator's
    requirements instead: exit 0 when there are no errors (warnings alone pass), 1 on errors.
    """
    settings = _load(config_file, overrides)
    if profile is not None:
        if schema is not None:
            raise click.UsageError("--schema and --profile are separate checks: run them one at a time")
        if live_url is not None and not live_url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{live_url!r} is not an http(s) URL", param_hint="--url")
        sys.exit(asyncio.run(_check_profile(settings, identifiers, live_url, output_format)))
    if identifiers or live_url is not None or output_format != "text":
        raise click.UsageError("IDENTIFIERS, --url and --format go with --profile")
    validator = None
    if schema is not None:
        try:
            import jsonschema
        except ImportError:
            raise click.UsageError("--schema needs the jsonschema package (pip install jsonschema)") from None
        import json

        validator = jsonschema.Draft7Validator(json.loads(schema.read_text(encoding="utf-8")))
    failures = asyncio.run(_build_all(settings, None, progress=False, validator=validator))
    if failures:
        click.echo(f"{failures} problem(s)", err=True)
        sys.exit(1)
    click.echo("all descriptions are valid")


async def _build_all(settings: Settings, out: Path | None, *, progress: bool, validator: Any = None) -> int:
    from iiifserver.app import create_app
    from iiifserver.errors import IIIFError, SourceDamaged
    from iiifserver.presentation.builder import object_path

    app = create_app(settings)
    presentation = app.state.presentation
    logging.getLogger("iiifserver.presentation").setLevel(logging.ERROR)  # problems are printed below
    base = _cli_base(settings)
    catalogue = await presentation.catalogue()
    failures = 0
    reported: set[str] = set()
    for problem in catalogue.problems:
        click.echo(f"FAIL {problem}", err=True)
        reported.add(str(problem))
        failures += 1
    jobs: list[tuple[str, str, int]] = [("manifest", i, 0) for i in sorted(catalogue.objects)]
    size = settings.collection_page_size
    for path in sorted(catalogue.collections):
        try:
            _keyed, members = await presentation.collection_key(path, base, 0)
        except IIIFError:
            continue  # already reported among the catalogue's problems
        pages = -(-len(members) // size) if len(members) > size else 0
        jobs += [("collection", path, page) for page in range(pages + 1)]
    built = 0
    bar_context: Any = (
        click.progressbar(jobs, label="building", file=sys.stderr, show_pos=True)
        if progress
        else contextlib.nullcontext(jobs)
    )
    with bar_context as bar:
        for kind, name, page in bar:
            try:
                if kind == "manifest":
                    document = await presentation.manifest(name, base)
                    target = f"{object_path(name)}/manifest.json"
                else:
                    document = await presentation.collection(name, base, page)
                    suffix = f"-page-{page}" if page else ""
                    target = (f"collection/{object_path(name)}" if name else "collection") + f"{suffix}.json"
            except IIIFError as exc:
                if str(exc) not in reported:
                    click.echo(f"\nFAIL {exc}" if progress else f"FAIL {exc}", err=True)
                    reported.add(str(exc))
                    failures += 1
                continue
            if validator is not None:
                import json

                errors = sorted(validator.iter_errors(json.loads(document.body)), key=lambda e: list(e.path))
                for error in errors[:5]:
                    where = "/".join(str(p) for p in error.absolute_path)
                    click.echo(f"FAIL {kind} {name or '(top)'}: schema: {where}: {error.message[:200]}", err=True)
                failures += bool(errors)
            if out is not None:
                path = out / target
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(document.body)
                os.replace(tmp, path)
            built += 1
    # Damaged sources are left out of collections and folder-built objects, so no document fails
    # for them: list each found while building (a described object's damaged page failed above).
    for identifier, reason in app.state.image_service.damaged().items():
        message = str(SourceDamaged(reason, identifier=identifier))
        if message not in reported:  # an object whose every image is damaged has said so already
            click.echo(f"FAIL {message}", err=True)
            failures += 1
    await app.state.image_service.drain()
    objects = sum(1 for e in catalogue.objects.values() if e.error is None)
    click.echo(
        f"{built} documents built ({objects} objects, {len(catalogue.collections)} collections); {failures} problem(s)",
        err=True,
    )
    return failures


_EUROPEANA_ORIGIN = "https://www.europeana.eu"  # the Origin a live check sends: where Europeana's viewer runs


async def _check_profile(settings: Settings, identifiers: tuple[str, ...], live_url: str | None, fmt: str) -> int:
    """``manifests validate --profile europeana``: 0 without errors, 1 with (warnings alone pass)."""
    import json

    from iiifserver.app import create_app
    from iiifserver.errors import IIIFError
    from iiifserver.presentation import europeana

    app = create_app(settings)
    presentation = app.state.presentation
    logging.getLogger("iiifserver.presentation").setLevel(logging.ERROR)  # problems are reported below
    base = _cli_base(settings)
    report: list[dict[str, Any]] = []
    try:
        catalogue = await presentation.catalogue()
        unknown = [i for i in identifiers if i not in catalogue.objects]
        if unknown:
            raise click.UsageError(f"no object {', '.join(map(repr, unknown))} in {settings.manifests} or the images")
        for object_id in identifiers or sorted(catalogue.objects):
            entry = catalogue.objects[object_id]
            described = entry.origin in ("description", "spreadsheet") and entry.description is not None
            source = entry.description.source if described and entry.description else ""
            findings: list[tuple[europeana.Finding | None, str]] = []
            try:
                if entry.error is not None:
                    raise entry.error
                document = json.loads((await presentation.manifest(object_id, base)).body)
                if live_url is not None:
                    document, served = _fetch_served(live_url.rstrip("/"), object_id, document)
                    findings += [(f, "") for f in served]
                findings += [(f, "") for f in europeana.check_manifest(document)]
            except IIIFError as exc:
                findings.append((None, str(exc)))
            report.append({"id": object_id, "source": source, "origin": entry.origin, "findings": findings})
    finally:
        await app.state.image_service.drain()
    errors = sum(1 for o in report for f, _ in o["findings"] if f is None or f.severity is europeana.Severity.ERROR)
    warnings = sum(
        1 for o in report for f, _ in o["findings"] if f is not None and f.severity is europeana.Severity.WARNING
    )
    if fmt == "json":
        click.echo(json.dumps(_profile_json(report, errors, warnings), indent=2, ensure_ascii=False))
    else:
        _print_profile(report, settings)
        failing = sum(
            1 for o in report if any(f is None or f.severity is europeana.Severity.ERROR for f, _ in o["findings"])
        )
        click.echo(
            f"{len(report)} object(s) checked against the europeana profile: {failing} with errors; "
            f"{errors} error(s), {warnings} warning(s)"
        )
    return 1 if errors else 0


def _fetch_served(base: str, object_id: str, built: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The manifest as ``base`` serves it (else the built one) and what its answers break: status, type, CORS.

    Ids in the served manifest are under the server's public address, which may not be ``base``
    (a check from inside, past the proxy): the first image's info.json is asked of ``base``.
    """
    import json

    from iiifserver.presentation import europeana
    from iiifserver.presentation.builder import manifest_url

    url = manifest_url(base, object_id)
    status, content_type, allow_origin, body = _http_get(url)
    findings = europeana.check_served("manifest", url, status, content_type, allow_origin, _EUROPEANA_ORIGIN)
    try:
        served = json.loads(body) if status == 200 else built
    except ValueError:
        served = built
    if not isinstance(served, dict):
        served = built
    service = europeana.first_image_service(served)
    public = str(served.get("id", "")).partition("/iiif/presentation/3/")[0]
    if service and public:
        info = (base + service.removeprefix(public) if service.startswith(public) else service) + "/info.json"
        status, content_type, allow_origin, _ = _http_get(info)
        findings += europeana.check_served("info.json", info, status, content_type, allow_origin, _EUROPEANA_ORIGIN)
    return served, findings


def _http_get(url: str) -> tuple[int, str, str | None, bytes]:
    """GET ``url`` as a viewer on Europeana's site would: status, Content-Type, Access-Control-Allow-Origin, body."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Origin": _EUROPEANA_ORIGIN, "Accept": "application/ld+json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return (
                response.status,
                response.headers.get("Content-Type", ""),
                response.headers.get("Access-Control-Allow-Origin"),
                response.read(16 * 1024 * 1024),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.headers.get("Access-Control-Allow-Origin"), b""
    except (OSError, ValueError) as exc:
        return 0, f"(no answer: {getattr(exc, 'reason', exc)})", None, b""


def _print_profile(report: list[dict[str, Any]], settings: Settings) -> None:
    for obj in report:
        if obj["source"]:
            where = obj["source"]
        else:
            where = f"no description, built from its {obj['origin']}: write {settings.manifests}/{obj['id']}.yaml"
        if not obj["findings"]:
            click.echo(f"ok   {obj['id']} ({where})")
            continue
        click.echo(f"{obj['id']} ({where})")
        for finding, text in obj["findings"]:
            if finding is None:
                click.echo(f"  ERROR   {text}")
                continue
            field = f"field {finding.rule.field!r}: " if finding.rule.field else ""
            at = (
                "" if finding.path == finding.rule.field or finding.path.startswith("http") else f" [at {finding.path}]"
            )
            label = "ERROR  " if finding.severity.value == "error" else "warning"
            click.echo(f"  {label} {field}{finding.message}{at} ({finding.rule.id})")
            if finding.severity.value == "error":
                click.echo(f"          source: {finding.rule.source}")


def _profile_json(report: list[dict[str, Any]], errors: int, warnings: int) -> dict[str, Any]:
    objects = []
    for obj in report:
        items = []
        for finding, text in obj["findings"]:
            if finding is None:
                items.append({"severity": "error", "rule": "description", "field": "", "path": "", "message": text})
            else:
                items.append(
                    {
                        "severity": finding.severity.value,
                        "rule": finding.rule.id,
                        "field": finding.rule.field,
                        "path": finding.path,
                        "message": finding.message,
                        "source": finding.rule.source,
                    }
                )
        objects.append({"id": obj["id"], "description": obj["source"] or None, "findings": items})
    return {"profile": "europeana", "errors": errors, "warnings": warnings, "objects": objects}


@manifests.command("import")
@click.argument("spreadsheet", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace descriptions that already exist.")
@_setting_options
def manifests_import(spreadsheet: Path, force: bool, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Turn a CSV spreadsheet (one row per object or per page) into one YAML description per object.

    A spreadsheet can also be served as it is by putting it in the manifests folder.
    """
    import yaml

    from iiifserver.presentation.catalogue import read_description_file
    from iiifserver.presentation.description import DescriptionError, check_object_id, lists_pages, parse_object

    settings = _load(config_file, overrides)
    data = read_description_file(spreadsheet, spreadsheet.name)
    if isinstance(data, DescriptionError):
        raise click.ClickException(str(data))
    objects, loose = data
    failures = len(loose)
    for problem in loose:
        click.echo(f"FAIL {problem}", err=True)
    written = 0
    for item in objects:
        source = f"{spreadsheet.name} line {item.first_row}"
        try:
            if item.error is not None:
                raise item.error
            check_object_id(item.object_id, source)
            if lists_pages(item.raw):
                parse_object(item.raw, source)  # pages given: check it all now
        except DescriptionError as exc:
            click.echo(f"FAIL {exc}", err=True)
            failures += 1
            continue
        target = settings.manifests / f"{item.object_id}.yaml"
        if target.exists() and not force:
            click.echo(f"FAIL {item.object_id}: {target} exists (use --force to replace it)", err=True)
            failures += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(yaml.safe_dump(item.raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
        os.replace(tmp, target)
        written += 1
    click.echo(f"{written} descriptions written to {settings.manifests}; {failures} problem(s)", err=True)
    if failures:
        sys.exit(1)


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    help="Folder for the pyramids, or s3://BUCKET/PREFIX to publish them to object storage.",
)
@click.option(
    "--staging",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="With --out s3://...: folder each pyramid is made in before its upload [default: a temporary folder].",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=85,
    show_default=True,
    help="JPEG quality of the tiles (below 90: YCbCr 4:2:0; 90 and above: RGB).",
)
@click.option("--tile-size", type=click.Choice(["256", "512"]), default="256", show_default=True)
@click.option(
    "--background",
    default="#ffffff",
    show_default=True,
    help="Colour transparent pixels are flattened on: #rrggbb or r,g,b.",
)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Masters converted at once [default: cores].")
@click.option(
    "--memory-budget-mb",
    type=click.IntRange(min=64),
    default=2048,
    show_default=True,
    help="Estimated memory all parallel conversions may take together.",
)
@click.option("--force", is_flag=True, help="Convert up-to-date outputs too; replace an existing --object description.")
@click.option(
    "--bigtiff",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="auto: BigTIFF when the output could pass 4 GB.",
)
@click.option(
    "--object",
    "object_name",
    default=None,
    help="Also describe the converted images as one object: writes MANIFESTS/NAME.yaml, or adds new pages to it.",
)
@click.option(
    "--cluster",
    default=None,
    metavar="ADDRESS|local:N",
    help="Convert on a Dask cluster: a running scheduler (tcp://host:8786), or local:N worker processes "
    "started here. Resumable: a journal in OUT records each master. Needs the cluster extra.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="With --cluster: times a master is tried again after its worker died, before it counts as failed.",
)
@click.option("--quiet", is_flag=True, help="No progress bar; only the summary.")
@_setting_options
def convert(
    sources: tuple[Path, ...],
    out_dir: str,
    staging: Path | None,
    quality: int,
    tile_size: str,
    background: str,
    jobs: int | None,
    memory_budget_mb: int,
    force: bool,
    bigtiff: str,
    object_name: str | None,
    cluster: str | None,
    retries: int,
    quiet: bool,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Convert masters (files, or folders recursively) into tiled pyramidal TIFFs in OUT.

    OUT may be s3://BUCKET/PREFIX: each pyramid is made in the staging folder, then uploaded
    (published whole or not at all) with its stamp in the object's metadata.

    Exit status: 0 all converted or up to date, 1 if any master failed, 2 usage error,
    130 interrupted.
    """
    from iiifserver.ingest.pool import Pool

    # The workers start first (a fraction of a second each), while the rest is imported and planned.
    with Pool(jobs or os.cpu_count() or 1) as pool:
        if cluster is None:  # with --cluster, the pool is never started
            pool.warm_up()
        from iiifserver.ingest import describe
        from iiifserver.ingest.batch import BatchOptions, run_batch
        from iiifserver.ingest.plan import BigTiff, ConvertOptions, parse_background
        from iiifserver.ingest.report import Status, summary_lines

        try:
            options = ConvertOptions(quality, int(tile_size), parse_background(background), BigTiff(bigtiff))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--background") from None
        destination = _object_destination(out_dir, staging)
        out = Path(out_dir)
        if not destination and out.exists() and not out.is_dir():
            raise click.UsageError(f"--out {out} is not a folder")
        settings = None
        below_root = ""  # with --out s3:// and --object: the output prefix relative to the image root's
        if object_name is not None:
            settings = _load(config_file, overrides)
            try:
                describe.check_name(object_name)
                if destination:
                    below_root = _below_object_root(destination, settings.images)
                else:
                    describe.check_inside(out, settings.images)
            except describe.DescriptionError as exc:
                raise click.UsageError(str(exc)) from None
        if destination:
            out = staging or Path(tempfile.mkdtemp(prefix="iiifserver-staging-"))
            if out.exists() and not out.is_dir():
                raise click.UsageError(f"--staging {out} is not a folder")
        batch = BatchOptions(jobs=pool.jobs, memory_budget_mb=memory_budget_mb, force=force, progress=not quiet)
        try:
            if cluster is None:
                summary = run_batch(list(sources), out, options, batch, pool=pool, destination=destination)
            else:
                summary = _convert_on_cluster(cluster, retries, list(sources), out, options, batch, destination)
        finally:
            if destination and staging is None:
                shutil.rmtree(out, ignore_errors=True)
        for line in summary_lines(summary):
            click.echo(line, err=True)
        if summary.interrupted:
            sys.exit(130)
        if object_name is not None and settings is not None:
            if not summary.ok:
                click.echo(f"object {object_name}: not described, as some masters failed", err=True)
            else:
                outputs = [o.output for o in summary.outcomes if o.status is not Status.FAILED and o.output is not None]
                images_root = settings.images
                if destination:  # identifiers as the server names the objects: staged paths, placed as the keys are
                    images_root = out
                    outputs = [out / below_root / output.relative_to(out) for output in outputs]
                try:
                    if force or not describe.description_path(settings.manifests, object_name).exists():
                        written = describe.write_description(
                            settings.manifests, object_name, outputs, images_root, force=force
                        )
                        click.echo(f"object {object_name}: {len(outputs)} pages in {written}", err=True)
                    else:  # an existing object: new pages join it, everything written there stays
                        written, added = describe.add_pages(settings.manifests, object_name, outputs, images_root)
                        click.echo(f"object {object_name}: {len(added)} pages added to {written}", err=True)
                except describe.DescriptionError as exc:
                    raise click.UsageError(str(exc)) from None
        if not summary.ok:
            sys.exit(1)


def _object_destination(out: str, staging: Path | None) -> str:
    """``--out s3://BUCKET/PREFIX`` -> that URL, checked; a folder -> "" (and no --staging)."""
    from iiifserver.image.object_store import is_object_url, parse_object_url

    if not is_object_url(out):
        if staging is not None:
            raise click.UsageError("--staging is for --out s3://BUCKET/PREFIX only")
        return ""
    try:
        bucket, prefix = parse_object_url(out)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _below_object_root(destination: str, images: Path) -> str:
    """The destination's prefix relative to the image root's (``images`` must be an s3:// URL
    at or above it, so the server names the objects); raises ``DescriptionError``."""
    from iiifserver.image.object_store import parse_object_url
    from iiifserver.ingest.describe import DescriptionError

    root = config.object_root(images)
    bucket, prefix = parse_object_url(destination)
    if root is not None:
        root_bucket, root_prefix = parse_object_url(root)
        if root_bucket == bucket and not root_prefix:
            return prefix
        if root_bucket == bucket and (prefix == root_prefix or prefix.startswith(root_prefix + "/")):
            return prefix[len(root_prefix) :].lstrip("/")
    raise DescriptionError(
        f"--object needs the output ({destination}) inside the image root ({images}); "
        "set --images to that bucket and prefix, or above it"
    )


def _convert_on_cluster(
    address: str,
    retries: int,
    sources: list[Path],
    out_dir: Path,
    options: ConvertOptions,
    batch: BatchOptions,
    destination: str = "",
) -> Summary:
    try:
        from iiifserver.ingest import cluster
    except ModuleNotFoundError as exc:
        raise click.UsageError(
            f"--cluster needs Dask ({exc.name} is missing): pip install 'iiifserver[cluster]'"
        ) from None
    try:
        target = cluster.Target.parse(address)
        return cluster.run_cluster(target, sources, out_dir, options, batch, retries=retries, destination=destination)
    except cluster.ClusterError as exc:
        raise click.BadParameter(str(exc), param_hint="--cluster") from None
