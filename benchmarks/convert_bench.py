#!/usr/bin/env python3
"""Convert benchmark: ``iiifserver convert`` against the ``vips`` command-line tool.

    python benchmarks/convert_bench.py              # 12 masters of about 50 MP, best of 3 runs each side
    python benchmarks/convert_bench.py --masters 3  # a small batch: start-up weighs more
    python benchmarks/convert_bench.py --quick      # 1 master of 3 MP, one run: a smoke test

Both sides make the same pyramids from the same masters with the same settings: tiled (256),
pyramidal, JPEG Q85 (YCbCr 4:2:0 below Q90), at the same parallelism (``--jobs``, default: the
cores): ``iiifserver convert --jobs N`` against N ``vips tiffsave`` processes at a time, each side
giving libvips the same threads per file (``VIPS_CONCURRENCY``, cores / N). The masters are
seeded 8-bit sRGB JPEGs without a profile, the common case, where ``vips tiffsave`` does the
same work as ``convert`` (which would also convert colour, orientation, depth and alpha where a
master needs it). Each side's time is the wall time of the whole batch, process start-up
included (for ``convert`` about 0.35 s of Python start-up and worker processes, once per run,
which a small batch feels most); the best of the repeats counts, the sides taking turns.

Throughput is megapixels of masters per second. Target: iiifserver at least 0.9x vips.

Results go to ``benchmarks/results/<YYYY-MM-DD>-<host>-<cpu model>-convert[-quick].{json,md}``
(``--results DIR`` elsewhere). Needs the ``vips`` tool (Debian: ``libvips-tools``, installed by
``scripts/install.sh --test`` when run as root). Masters and outputs go to a temporary folder
(``--work DIR`` to keep them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pyvips

if __package__ in (None, ""):  # run by path: make the benchmarks package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import results

HERE = Path(__file__).resolve().parent
QUALITY = 85
TILE = 256
TARGET = 0.9
SIZES = [(8660, 5774), (8660, 5774), (7000, 7140)]  # about 50 MP each, cycled
MASTERS = 12  # 600 MP: a bulk batch, in which the one-off start-up of each side weighs little
QUICK = [(2000, 1500, 11)]


def master(width: int, height: int, seed: int) -> pyvips.Image:
    """A photograph-like sRGB image: smooth colour fields, edges, and sensor-like grain."""
    small = [pyvips.Image.perlin(width // 8 + 1, height // 8 + 1, cell_size=48, seed=seed + b) for b in range(3)]
    colour = (small[0].bandjoin(small[1:]) * 180 + 128).resize(8, kernel="linear").crop(0, 0, width, height)
    edges = pyvips.Image.worley(width // 4 + 1, height // 4 + 1, cell_size=64, seed=seed).resize(4)
    grain = pyvips.Image.gaussnoise(1000, 1000, sigma=5.0, mean=0.0, seed=seed).copy_memory()
    grain = grain.replicate(width // 1000 + 1, height // 1000 + 1).crop(0, 0, width, height)
    image = colour - edges.crop(0, 0, width, height) * 0.6 + grain
    return image.cast("uchar").copy(interpretation="srgb")


def make_masters(folder: Path, sizes: list[tuple[int, int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for width, height, seed in sizes:
        path = folder / f"master-{seed}-{width}x{height}.jpg"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.part")
            master(width, height, seed).jpegsave(str(tmp), Q=95)
            os.replace(tmp, path)
        paths.append(path)
    return paths


def run_ours(masters: list[Path], out: Path, jobs: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        "from iiifserver.cli import main; main()",
        "convert",
        *map(str, masters),
        "--out",
        str(out),
        "--jobs",
        str(jobs),
        "--quality",
        str(QUALITY),
        "--tile-size",
        str(TILE),
        "--quiet",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def run_vips(masters: list[Path], out: Path, jobs: int, threads: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "VIPS_CONCURRENCY": str(threads)}

    def one(source: Path) -> None:
        command = [
            "vips",
            "tiffsave",
            str(source),
            str(out / f"{source.stem}.tif"),
            "--tile",
            f"--tile-width={TILE}",
            f"--tile-height={TILE}",
            "--pyramid",
            "--compression=jpeg",
            f"--Q={QUALITY}",
        ]
        subprocess.run(command, check=True, capture_output=True, env=env)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, masters))
    return time.perf_counter() - started


def pages(path: Path) -> int:
    return int(pyvips.Image.new_from_file(str(path)).get("n-pages"))


def vips_version() -> str:
    result = subprocess.run(["vips", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def report(record: dict[str, Any]) -> str:
    def row(label: str, side: str) -> str:
        runs = ", ".join(f"{t:.2f}" for t in record[f"{side}_runs"])
        return (
            f"| {label} | {record[f'{side}_seconds']:.2f} | {record[f'{side}_mp_per_s']:.1f} | {runs} | "
            f"{record[f'{side}_output_bytes'] / 1e6:.1f} |"
        )

    verdict = "PASS" if record["ratio"] >= TARGET else "FAIL"
    return "\n".join(
        [
            f"# iiifserver convert vs vips tiffsave: {record['date']} on {record['host']}",
            "",
            f"- Command: `{record['command']}`",
            f"- Machine: {record['cpu']}, {record['cpus']} CPUs; jobs {record['jobs']}, "
            f"{record['threads_per_job']} libvips thread(s) per file on both sides.",
            f"- Versions: iiifserver {record['commit']} with libvips {record['libvips']} (pyvips-binary); "
            f"{record['vips_cli']} (Debian libvips-tools).",
            f"- Masters: {len(record['masters'])} seeded sRGB JPEGs, {record['megapixels']:.1f} MP in all; "
            f"tiles {TILE}, JPEG Q{QUALITY}; best of {record['repeats']} run(s) per side.",
            "",
            "| side | seconds (best) | MP/s | all runs (s) | output MB |",
            "|---|---:|---:|---|---:|",
            row("iiifserver convert", "iiifserver"),
            row("vips tiffsave", "vips"),
            "",
            f"Ratio iiifserver / vips: **{record['ratio']:.2f}x** (target >= {TARGET}x): {verdict}",
            "",
            "Each side's time includes its process start-up: for `convert` about 0.35 s once per run "
            "(Python, the worker processes), for `vips` a few milliseconds per file.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one small master, one run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="files at once, both sides")
    parser.add_argument("--masters", type=int, default=MASTERS, help=f"masters of about 50 MP (default {MASTERS})")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side (default 3, quick 1)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder for the results files")
    parser.add_argument("--work", type=Path, default=None, help="keep masters and outputs here")
    args = parser.parse_args(argv)
    if shutil.which("vips") is None:
        print("convert_bench: the vips command-line tool is missing (apt-get install libvips-tools)", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.quick else 3)
    work = args.work or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    try:
        full = [(*SIZES[i % len(SIZES)], 11 + i) for i in range(args.masters)]
        masters = make_masters(work / "masters", QUICK if args.quick else full)
        megapixels = sum(
            pyvips.Image.new_from_file(str(m)).width * pyvips.Image.new_from_file(str(m)).height for m in masters
        )
        megapixels /= 1e6
        # as convert does: the cores shared among the files converted at once
        threads = max(1, (os.cpu_count() or 1) // max(1, min(args.jobs, len(masters))))
        ours_runs: list[float] = []
        vips_runs: list[float] = []
        for _ in range(repeats):  # taking turns, so a busy moment does not favour one side
            vips_runs.append(run_vips(masters, work / "vips", args.jobs, threads))
            ours_runs.append(run_ours(masters, work / "ours", args.jobs))
        ours_bytes = sum(p.stat().st_size for p in (work / "ours").glob("*.tif"))
        vips_bytes = sum(p.stat().st_size for p in (work / "vips").glob("*.tif"))
        for m in masters:
            ours_pages, vips_pages = pages(work / "ours" / f"{m.stem}.tif"), pages(work / "vips" / f"{m.stem}.tif")
            if ours_pages != vips_pages:
                raise SystemExit(f"convert_bench: {m.name}: {ours_pages} levels against vips' {vips_pages}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    now = datetime.now()
    command = f"python benchmarks/convert_bench.py{' --quick' if args.quick else ''}" + (
        f" --masters {args.masters}" if args.masters != MASTERS and not args.quick else ""
    )
    record: dict[str, Any] = {
        **results.machine(now, command),
        "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        "vips_cli": vips_version(),
        "jobs": args.jobs,
        "threads_per_job": threads,
        "repeats": repeats,
        "masters": [m.name for m in masters],
        "megapixels": megapixels,
        "iiifserver_runs": ours_runs,
        "vips_runs": vips_runs,
        "iiifserver_seconds": min(ours_runs),
        "vips_seconds": min(vips_runs),
        "iiifserver_mp_per_s": megapixels / min(ours_runs),
        "iiifserver_output_bytes": ours_bytes,
        "vips_output_bytes": vips_bytes,
        "vips_mp_per_s": megapixels / min(vips_runs),
    }
    record["ratio"] = record["iiifserver_mp_per_s"] / record["vips_mp_per_s"]
    variant = str(args.masters) if args.masters != MASTERS else ""
    name = results.stem(now, "convert", quick=args.quick, variant=variant)
    results.write(args.results, name, record, report(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
