"""``manifests build``, ``manifests validate`` (with ``--profile europeana``) and ``manifests import``.

Owns: building every document through the server's own presentation service, reporting each bad
description; the aggregator profile's report (text or JSON) and its live checks of a running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from iiifserver.cli.options import load, setting_options
from iiifserver.cli.root import main
from iiifserver.config import Settings


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
@setting_options
def manifests_build(out: Path | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Build every manifest and collection (ids under public_url), reporting each bad description."""
    settings = load(config_file, overrides)
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
@setting_options
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
    settings = load(config_file, overrides)
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
@setting_options
def manifests_import(spreadsheet: Path, force: bool, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Turn a CSV spreadsheet (one row per object or per page) into one YAML description per object.

    A spreadsheet can also be served as it is by putting it in the manifests folder.
    """
    import yaml

    from iiifserver.presentation.catalogue import read_description_file
    from iiifserver.presentation.description import DescriptionError, check_object_id, lists_pages, parse_object

    settings = load(config_file, overrides)
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
