"""``verify``: converted images against the SHA-256 ``convert`` recorded, in a folder or a bucket.

Owns: the command's report and exit status; the checks are ``iiifserver.ingest.verify``'s and
``ingest.publish``'s.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import click

from iiifserver import config
from iiifserver.cli.options import load, setting_options
from iiifserver.cli.root import main


@main.command()
@click.argument("identifiers", nargs=-1)
@click.option("--strict", is_flag=True, help="Images without a recorded checksum fail the check too.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Files hashed at once [default: cores, at most 4]."
)
@click.option("--quiet", is_flag=True, help="No progress lines; only problems and the summary.")
@setting_options
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
    settings = load(config_file, overrides)
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
