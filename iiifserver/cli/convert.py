"""``convert``: masters into tiled pyramidal TIFFs, in a folder or published to a bucket, here or on a Dask cluster.

Owns: the command's flags and exit status, the staging folder of an upload, where an ``--object``
description names its pages; the work itself is ``iiifserver.ingest``'s.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iiifserver import config
from iiifserver.cli.options import load, setting_options
from iiifserver.cli.root import main

if TYPE_CHECKING:
    from iiifserver.ingest.batch import BatchOptions
    from iiifserver.ingest.plan import ConvertOptions
    from iiifserver.ingest.report import Summary


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
@setting_options
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
            settings = load(config_file, overrides)
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
