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
import difflib
import logging
import os
import sys
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


@click.group()
@click.version_option(package_name="iiifserver")
def main() -> None:
    """iiifserver: IIIF Image API 3.0/2.1 and Presentation API 3.0 server for pyramidal TIFFs."""


@main.command()
@_settings_options
def serve(config_file: Path | None, **overrides: Any) -> None:
    """Run the server (uvicorn). With the default image folder, prepares the demo collection first."""
    settings = _load(config_file, overrides)
    configure_logging(settings.log_level)
    if settings.images == DEFAULT_IMAGES:
        _build_demo(settings.images, large=True)
    if not settings.images.is_dir():
        raise click.UsageError(f"image folder {settings.images} does not exist")
    settings.cache.mkdir(parents=True, exist_ok=True)
    from iiifserver import serving

    os.environ[config.WORKER_ENV] = settings.to_json()  # read back by each worker process
    click.echo(f"iiifserver on http://{settings.host}:{settings.port}/iiif/3/ (images: {settings.images})", err=True)
    uvicorn_config = server_config(settings)
    serving.run(uvicorn_config)


def server_config(settings: Settings) -> uvicorn.Config:
    """How ``serve`` runs uvicorn: worker processes build the app from ``WORKER_ENV``."""
    import uvicorn

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
        access_log=settings.access_log,
        # X-Forwarded-* are handled by web/urls.py, from trusted proxies only. uvicorn's proxy
        # middleware would also wrap the app and hide its answer_in_protocol from the protocol.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
@_setting_options
def settings(config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Print the settings in force (after TOML file, environment and --setting), as TOML."""
    resolved = _load(config_file, overrides)
    for f in config.fields():
        value = getattr(resolved, f.name)
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
@click.option(
    "--schema",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Also check every document against this JSON Schema (the IIIF Presentation 3.0 schema).",
)
@_setting_options
def manifests_validate(schema: Path | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Check every description and its images, and build each document; exit 1 on any problem."""
    settings = _load(config_file, overrides)
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
    from iiifserver.errors import IIIFError
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
    await app.state.image_service.drain()
    objects = sum(1 for e in catalogue.objects.values() if e.error is None)
    click.echo(
        f"{built} documents built ({objects} objects, {len(catalogue.collections)} collections); {failures} problem(s)",
        err=True,
    )
    return failures


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
    "--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False), help="Folder for the pyramids."
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
    help="Also describe the converted images as one object: writes MANIFESTS/NAME.yaml.",
)
@click.option("--quiet", is_flag=True, help="No progress bar; only the summary.")
@_setting_options
def convert(
    sources: tuple[Path, ...],
    out_dir: Path,
    quality: int,
    tile_size: str,
    background: str,
    jobs: int | None,
    memory_budget_mb: int,
    force: bool,
    bigtiff: str,
    object_name: str | None,
    quiet: bool,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Convert masters (files, or folders recursively) into tiled pyramidal TIFFs in OUT.

    Exit status: 0 all converted or up to date, 1 if any master failed, 2 usage error,
    130 interrupted.
    """
    from iiifserver.ingest.pool import Pool

    # The workers start first (a fraction of a second each), while the rest is imported and planned.
    with Pool(jobs or os.cpu_count() or 1) as pool:
        pool.warm_up()
        from iiifserver.ingest import describe
        from iiifserver.ingest.batch import BatchOptions, run_batch
        from iiifserver.ingest.plan import BigTiff, ConvertOptions, parse_background
        from iiifserver.ingest.report import Status, summary_lines

        try:
            options = ConvertOptions(quality, int(tile_size), parse_background(background), BigTiff(bigtiff))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--background") from None
        if out_dir.exists() and not out_dir.is_dir():
            raise click.UsageError(f"--out {out_dir} is not a folder")
        settings = None
        if object_name is not None:
            settings = _load(config_file, overrides)
            try:
                describe.check_name(object_name)
                describe.check_inside(out_dir, settings.images)
                existing = settings.manifests / f"{object_name}{describe.DESCRIPTION_SUFFIX}"
                if existing.exists() and not force:
                    raise describe.DescriptionError(f"{existing} exists; --force replaces it")
            except describe.DescriptionError as exc:
                raise click.UsageError(str(exc)) from None
        batch = BatchOptions(jobs=pool.jobs, memory_budget_mb=memory_budget_mb, force=force, progress=not quiet)
        summary = run_batch(list(sources), out_dir, options, batch, pool=pool)
        for line in summary_lines(summary):
            click.echo(line, err=True)
        if summary.interrupted:
            sys.exit(130)
        if object_name is not None and settings is not None:
            if not summary.ok:
                click.echo(f"object {object_name}: not described, as some masters failed", err=True)
            else:
                outputs = [o.output for o in summary.outcomes if o.status is not Status.FAILED and o.output is not None]
                try:
                    written = describe.write_description(
                        settings.manifests, object_name, outputs, settings.images, force=force
                    )
                except describe.DescriptionError as exc:
                    raise click.UsageError(str(exc)) from None
                click.echo(f"object {object_name}: {len(outputs)} pages in {written}", err=True)
        if not summary.ok:
            sys.exit(1)
