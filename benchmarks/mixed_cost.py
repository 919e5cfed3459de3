"""CPU per request of the mixed viewer-and-scholar workload, per kind, in-process.

    python -m benchmarks.mixed_cost                                        # 3,000 requests, 3 repeats
    python -m benchmarks.mixed_cost --baseline-commit HEAD~1 --repeats 5   # before and after, alternating
    python -m benchmarks.mixed_cost -n 500 --repeats 1 --quick             # a smoke run

The list is ``harness/mix.py``'s (the side-by-side's ``--only mixed`` list, the same seed), over
the distinct copies ``harness/images.py`` makes under ``$BENCH_ROOT/images`` (default
``/tmp/iiifserver-bench/images``; ``--big`` copies of the 12000x9000 Q85 scan and ``--small`` of
the 4000x3000 Q85 photograph, as the side-by-side uses). Each measurement is a fresh Python process
that replays the first ``-n`` requests of the list through the ASGI app in-process (``asgi_call``:
no sockets, no HTTP parsing), one at a time, with default settings but ``jpeg_quality`` 85 (as
the side-by-side serves) and an empty cache folder. The CPU time of the whole process (all
threads: ``time.process_time``) is taken around each request and summed by kind, so the figures
do not depend on how busy the machine's other cores are; they do depend on the CPU model, which
the results name. Work a request leaves to a background thread (a disk-tier write) is counted in
whichever request is running when it runs: the overall figure is exact, the kinds nearly so.

The images are read once before each measurement (this VM pages out what was not read for about a
minute). With ``--baseline-commit REV``, the same measurement runs on ``git archive REV
iiifserver`` too, alternating with this tree's, ``--repeats`` times each (``first_open``'s
helpers). Results: ``benchmarks/results/<date>-<host>-<cpu>-mixed-cost.{json,md}``.

Owns: the per-kind CPU measurement of the mixed list and its report. Knows the app only through
``create_app`` and ``asgi_call``; the list comes from ``harness.mix``, the images from
``harness.images``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from benchmarks import first_open
from benchmarks.harness import images as bench_images
from benchmarks.harness import mix, results

REPO = Path(__file__).resolve().parents[1]
BIG, SMALL = 176, 1000  # the side-by-side's mixed collection (20 s runs)
ALL = "all"


def requests_of(big: int, small: int, n: int, seed: str) -> list[mix.MixedRequest]:
    collection = mix.collection(bench_images.alias_names("big", 85, big), bench_images.alias_names("small", 85, small))
    return mix.mixed_requests(collection, n, seed)


# ---------------------------------------------------------------- one measurement (child process)


async def _measure(image_dir: Path, cache_dir: Path, requests: list[mix.MixedRequest]) -> dict[str, Any]:
    from iiifserver.app import create_app
    from iiifserver.asgi_call import call
    from iiifserver.config import Settings

    app = create_app(
        Settings(images=image_dir, manifests=cache_dir / "no-manifests", cache=cache_dir / "cache", jpeg_quality=85)
    )
    warm = "artwork_small_q85.tif"  # not in the list: imports, threads, libvips start-up are no request's cost
    for url in (f"/iiif/3/{warm}/info.json", f"/iiif/3/{warm}/full/!200,200/0/default.jpg"):
        await call(app, url)
    cpu: dict[str, float] = defaultdict(float)
    kernel: dict[str, float] = defaultdict(float)  # of which system time: page faults, futexes, file calls
    count: dict[str, int] = defaultdict(int)
    for r in requests:
        c0, s0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
        status, _, _ = await call(app, "/iiif/3/" + r.path)
        spent, sys_spent = time.process_time() - c0, resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0
        if status != 200:
            raise RuntimeError(f"{r.path}: HTTP {status}")
        cpu[r.kind] += spent
        kernel[r.kind] += sys_spent
        count[r.kind] += 1
    out: dict[str, Any] = {
        k: {"requests": count[k], "ms": cpu[k] / count[k] * 1000, "sys_ms": kernel[k] / count[k] * 1000} for k in cpu
    }
    n = len(requests)
    out[ALL] = {"requests": n, "ms": sum(cpu.values()) / n * 1000, "sys_ms": sum(kernel.values()) / n * 1000}
    # Disk-tier writes still running in their threads would race the cache folder's removal.
    await app.state.image_service.drain()
    return out


def child(args: argparse.Namespace) -> None:
    import iiifserver

    requests = requests_of(args.big, args.small, args.n, args.seed)
    bench_images.read_once(Path(args.image_dir), sorted({unquote(r.path.split("/", 1)[0]) for r in requests}))
    with tempfile.TemporaryDirectory(prefix="mixed-cost-cache-") as cache:
        record = asyncio.run(_measure(Path(args.image_dir), Path(cache), requests))
    print(json.dumps({"kinds": record, "package": str(Path(iiifserver.__file__).resolve().parent)}))


# ---------------------------------------------------------------- the run (parent process)


def _run_child(python_path: list[Path], args: argparse.Namespace, cwd: Path) -> dict[str, Any]:
    """One measurement in a fresh process whose ``iiifserver`` is the first tree of ``python_path``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in python_path))
    command = [sys.executable, "-m", "benchmarks.mixed_cost", "--child", "--image-dir", args.image_dir]
    command += ["-n", str(args.n), "--big", str(args.big), "--small", str(args.small), "--seed", args.seed]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["package"]) != python_path[0] / "iiifserver":
        raise RuntimeError(f"the measurement imported iiifserver from elsewhere than {python_path[0]}")
    kinds: dict[str, Any] = result["kinds"]
    return kinds


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in [*mix.KINDS, ALL]:
        values = [run[kind]["ms"] for run in runs if kind in run]
        if values:
            kernel = [run[kind].get("sys_ms", 0.0) for run in runs if kind in run]
            out[kind] = {"requests": runs[0][kind]["requests"], "median": statistics.median(values)}
            out[kind].update(min=min(values), max=max(values), sys_median=statistics.median(kernel))
    return out


def _ratios(record: dict[str, Any]) -> dict[str, float]:
    """Per kind, the median over repeats of each repeat's own this-tree / baseline ratio (steadier under load)."""
    labels = list(record["runs"])
    if len(labels) != 2:
        return {}
    base, this = (record["runs"][label] for label in labels)
    out: dict[str, float] = {}
    for kind in [*mix.KINDS, ALL]:
        pairs = [(b[kind]["ms"], t[kind]["ms"]) for b, t in zip(base, this, strict=True) if kind in b and kind in t]
        if pairs:
            out[kind] = statistics.median(t / b for b, t in pairs)
    return out


def _report(record: dict[str, Any]) -> str:
    m = record["machine"]
    labels = list(record["variants"])
    ratios = record.get("ratios") or {}
    lines = [
        *results.heading("The mixed viewer-and-scholar workload: CPU per request, per kind", m),
        f"The first {record['n']:,} requests of the side-by-side's mixed list (`harness/mix.py`, seed "
        f"{record['seed']}) over {mix.collection_words(record['big'], record['small'])}, in-process (ASGI), "
        "one at a time, default "
        "settings with `jpeg_quality` 85, empty caches, images read once before; CPU time of the process "
        f"(all threads) per request, ms, median of {record['repeats']} runs (min-max).",
        "",
        *results.table_head(["kind", "requests", *labels, *(["after / before"] if ratios else [])]),
    ]
    first = record["variants"][labels[0]]
    for kind in [*mix.KINDS, ALL]:
        if kind not in first:
            continue
        cells = []
        for label in labels:
            v = record["variants"][label].get(kind)
            cells.append(
                "-" if v is None else f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}; sys {v['sys_median']:.2f})"
            )
        ratio = f" | {ratios[kind]:.2f} |" if kind in ratios else (" | - |" if ratios else " |")
        lines.append(f"| {kind} | {first[kind]['requests']:,} | " + " | ".join(cells) + ratio)
    lines += [
        "",
        "Work left to a background thread (a disk-tier write) counts in whichever request runs when it "
        "does: the `all` row is exact, the kinds nearly so. `sys`: of which system time (median). The ratio "
        "is the median of each repeat's own.",
        "",
        f"Command: `{m['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="requests: the first n of the list")
    parser.add_argument("--big", type=int, default=BIG, help="copies of the 12000x9000 scan in the collection")
    parser.add_argument("--small", type=int, default=SMALL, help="copies of the 4000x3000 photograph")
    parser.add_argument("--seed", default="1", help="the mixed list's seed (the side-by-side's default: 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-commit", default="", help="also measure iiifserver/ of this commit")
    parser.add_argument(
        "--image-dir",
        default=str(Path(os.environ.get("BENCH_ROOT", Path(tempfile.gettempdir()) / "iiifserver-bench")) / "images"),
        help="where the copies are (harness/images.py --copies; side_by_side.py makes them)",
    )
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: results named -quick")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    image_dir = Path(args.image_dir)
    missing = [
        f"{size}: {have} of {want}"
        for size, want in (("big", args.big), ("small", args.small))
        if (have := bench_images.count_copies(image_dir, size, 85)) < want
    ]
    if missing:
        parser.error(f"too few copies in the image folder ({', '.join(missing)}): make them with harness/images.py")
    now = datetime.now(UTC)
    shown = first_open._without_paths(argv if argv is not None else sys.argv[1:])
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="mixed-cost-") as scratch:
        trees = first_open.trees_to_run(args.baseline_commit, Path(scratch))
        for repeat in range(args.repeats):
            for label, path in trees.items():
                run = _run_child(path, args, cwd=Path(scratch))
                runs.setdefault(label, []).append(run)
                print(f"repeat {repeat + 1} {label}: {run[ALL]['ms']:.2f} ms/request", flush=True)
    record: dict[str, Any] = {
        "machine": results.machine(now, " ".join(["python -m benchmarks.mixed_cost", *shown])),
        "n": args.n,
        "big": args.big,
        "small": args.small,
        "seed": args.seed,
        "repeats": args.repeats,
        "variants": {label: _summary(found) for label, found in runs.items()},
        "runs": runs,
    }
    record["ratios"] = _ratios(record)
    results.write(Path(args.results), results.stem(now, "mixed-cost", quick=args.quick), record, _report(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
