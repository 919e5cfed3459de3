#!/usr/bin/env python3
"""Convert on a Dask cluster against the local pool: ``convert --cluster`` vs ``convert --jobs``.

    python benchmarks/convert_cluster.py              # the 12-master batch (about 50 MP each), best of 3
    python benchmarks/convert_cluster.py --quick      # 2 masters of 3 MP, one run: a smoke test

The masters are convert_bench.py's (seeded sRGB JPEGs, made by its ``make_masters``); every side
makes the same pyramids with the same settings (tiles 256, JPEG Q85) at the same parallelism:

- **pool**: ``iiifserver convert --jobs N``, the local process pool (the default);
- **cluster**: ``iiifserver convert --cluster tcp://...`` on a LocalCluster of N workers of one
  thread each, started by this script beforehand (a campaign's cluster is running when the
  command starts), with each worker's MEMORY resource and libvips threads as ``local:N`` gives them;
- **local:N**: ``iiifserver convert --cluster local:N``, the cluster started and closed by the
  command, start-up included (for information: a campaign pays it once).

Each time is the wall time of the whole command, process start-up included; the sides take turns
and the best run counts. Throughput is megapixels of masters per second. Target: the cluster at
least 0.9x the pool. The scheduler's overhead per file is measured two ways: (cluster - pool) /
files, and the round trip of an empty task through the scheduler (submit to result, one at a
time, median of 200), the least a file can cost.

Results go to ``benchmarks/results/<YYYY-MM-DD>-<host>-<cpu model>-convert-cluster[-quick].{json,md}``.
Needs the cluster extra (``pip install -e '.[cluster]'``; the test extra has it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dask
import distributed
import pyvips
from distributed import Client, LocalCluster

if __package__ in (None, ""):  # run by path: make the benchmarks package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.convert_bench import MASTERS, QUALITY, QUICK, SIZES, TILE, make_masters
from benchmarks.harness import results
from iiifserver.ingest.cluster import local_resources
from iiifserver.ingest.plan import DEFAULT_MEMORY_BUDGET_MB

HERE = Path(__file__).resolve().parent
TARGET = 0.9
ROUND_TRIPS = 200


def run_convert(masters: list[Path], out: Path, *extra: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        "from iiifserver.cli import main; main()",
        "convert",
        *map(str, masters),
        "--out",
        str(out),
        "--quality",
        str(QUALITY),
        "--tile-size",
        str(TILE),
        "--quiet",
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def empty() -> None:
    """The task of the round-trip measure: nothing."""


def round_trip_ms(client: Client) -> float:
    """Median milliseconds from submit to result of an empty task, one at a time."""
    times = []
    for i in range(ROUND_TRIPS):
        started = time.perf_counter()
        client.submit(empty, key=f"round-trip-{i}", pure=False).result()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def report(record: dict[str, Any]) -> str:
    def row(label: str, side: str) -> str:
        runs = ", ".join(f"{t:.2f}" for t in record[f"{side}_runs"])
        return f"| {label} | {record[f'{side}_seconds']:.2f} | {record[f'{side}_mp_per_s']:.1f} | {runs} |"

    verdict = "PASS" if record["ratio"] >= TARGET else "FAIL"
    jobs = record["jobs"]
    return "\n".join(
        [
            f"# iiifserver convert on a Dask cluster vs the local pool: {record['date']} on {record['host']}",
            "",
            f"- Command: `{record['command']}`",
            f"- Machine: {record['cpu']}, {record['cpus']} CPUs; {jobs} worker processes of one thread on both sides, "
            f"{record['threads_per_job']} libvips thread(s) per file.",
            f"- Versions: iiifserver {record['commit']}, libvips {record['libvips']}, "
            f"dask {record['dask']}, distributed {record['distributed']}.",
            f"- Masters: {len(record['masters'])} seeded sRGB JPEGs, {record['megapixels']:.1f} MP in all; "
            f"tiles {TILE}, JPEG Q{QUALITY}; best of {record['repeats']} run(s) per side.",
            "",
            "| side | seconds (best) | MP/s | all runs (s) |",
            "|---|---:|---:|---|",
            row(f"local pool, `--jobs {jobs}`", "pool"),
            row(f"running LocalCluster({jobs}), `--cluster tcp://...`", "cluster"),
            row(f"`--cluster local:{jobs}` (cluster start-up included)", "local"),
            "",
            f"Ratio cluster / pool: **{record['ratio']:.2f}x** (target >= {TARGET}x): {verdict}",
            "",
            f"Scheduler overhead per file: {record['overhead_ms_per_file']:.0f} ms "
            f"((cluster - pool) / {len(record['masters'])} files; includes the client's connection and the "
            f"journal); an empty task's round trip through the scheduler: {record['round_trip_ms']:.1f} ms "
            f"(median of {ROUND_TRIPS}).",
            f"Starting and closing LocalCluster({jobs}) inside the command costs "
            f"{record['local_seconds'] - record['cluster_seconds']:.2f} s once per run.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="two small masters, one run")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, both sides (default 2)")
    parser.add_argument("--masters", type=int, default=MASTERS, help=f"masters of about 50 MP (default {MASTERS})")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side (default 3, quick 1)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder for the results files")
    parser.add_argument("--work", type=Path, default=None, help="keep masters and outputs here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    work = args.work or Path(tempfile.mkdtemp(prefix="convert-cluster-"))
    sizes = (
        [*QUICK, (2000, 1500, 12)] if args.quick else [(*SIZES[i % len(SIZES)], 11 + i) for i in range(args.masters)]
    )
    try:
        masters = make_masters(work / "masters", sizes)
        megapixels = sum(
            pyvips.Image.new_from_file(str(m)).width * pyvips.Image.new_from_file(str(m)).height for m in masters
        )
        megapixels /= 1e6
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        pool_runs: list[float] = []
        cluster_runs: list[float] = []
        local_runs: list[float] = []
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            LocalCluster(
                n_workers=args.jobs,
                threads_per_worker=1,
                processes=True,
                resources=local_resources(DEFAULT_MEMORY_BUDGET_MB, args.jobs),
                dashboard_address=None,
                env={"VIPS_CONCURRENCY": str(threads)},  # as --cluster local:N shares the cores
            ) as cluster,
            Client(cluster) as client,
        ):
            for _ in range(repeats):  # taking turns, so a busy moment does not favour one side
                pool_runs.append(run_convert(masters, work / "pool", "--jobs", str(args.jobs)))
                cluster_runs.append(run_convert(masters, work / "cluster", "--cluster", cluster.scheduler_address))
            trip = round_trip_ms(client)
        for _ in range(repeats):  # the cluster above is closed: these start their own
            local_runs.append(run_convert(masters, work / "local", "--cluster", f"local:{args.jobs}"))
        for m in masters:
            for side in ("cluster", "local"):
                ours = (work / side / f"{m.stem}.tif").read_bytes()
                if ours != (work / "pool" / f"{m.stem}.tif").read_bytes():
                    raise SystemExit(f"convert_cluster: {m.name}: the {side} output differs from the pool's")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    now = datetime.now()
    command = f"python benchmarks/convert_cluster.py{' --quick' if args.quick else ''}" + (
        f" --masters {args.masters}" if args.masters != MASTERS and not args.quick else ""
    )
    record: dict[str, Any] = {
        **results.machine(now, command),
        "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "jobs": args.jobs,
        "threads_per_job": threads,
        "repeats": repeats,
        "masters": [m.name for m in masters],
        "megapixels": megapixels,
        "pool_runs": pool_runs,
        "cluster_runs": cluster_runs,
        "local_runs": local_runs,
        "pool_seconds": min(pool_runs),
        "cluster_seconds": min(cluster_runs),
        "local_seconds": min(local_runs),
        "round_trip_ms": trip,
    }
    for side in ("pool", "cluster", "local"):
        record[f"{side}_mp_per_s"] = megapixels / record[f"{side}_seconds"]
    record["ratio"] = record["cluster_mp_per_s"] / record["pool_mp_per_s"]
    record["overhead_ms_per_file"] = (record["cluster_seconds"] - record["pool_seconds"]) / len(masters) * 1000
    variant = str(args.masters) if args.masters != MASTERS else ""
    name = results.stem(now, "convert-cluster", quick=args.quick, variant=variant)
    results.write(args.results, name, record, report(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
