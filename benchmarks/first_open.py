"""CPU of a never-opened image's first view, in-process: what the server spends the first time it sees a file.

    python -m benchmarks.first_open                               # 40 copies of the Q85 'big' pyramid
    python -m benchmarks.first_open --baseline-commit HEAD~1 --repeats 5   # before and after, alternating
    python -m benchmarks.first_open --size small --count 20 --quick       # a smoke run

Each measurement is a fresh Python process serving ``--count`` distinct copies (their own inode,
size and mtime: what a collection of distinct files is, unlike symbolic links to one file) through
the ASGI app in-process (``asgi_call``: no sockets, no HTTP parsing), with default settings and an
empty cache folder. For each image, as OpenSeadragon does it: its info.json, then the tiles of the
home view (``viewer_sessions``, a 1600x1000 viewport), then three more steps of a session (zoom
and pan: tiles of an image that is already open). The CPU time of the process (all threads:
``time.process_time``) is taken around each part, so the figures do not depend on how busy the
machine's other cores are; they do depend on the CPU model, which the results name.

Reported per image: info.json, the home view's tiles, the two together (the *first viewport*)
and, for comparison, the CPU of one tile of an open image. ``--restart`` measures the first
viewport again on a second app over the same cache folder (a restarted server). With
``--baseline-commit REV``, the same measurement runs on ``git archive REV iiifserver`` too,
alternating with this tree's, ``--repeats`` times each.

Results: ``benchmarks/results/<date>-<host>-<cpu>-first-open.{json,md}``.

Owns: the first-open measurement and its report. Knows the app only through ``create_app`` and
``asgi_call``; the images come from ``harness.images``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import images as bench_images
from benchmarks.harness import results

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = (1600, 1000)
NEXT_STEPS = 3  # session steps after the home view: tiles of an open image
PARTS = ("info", "home", "first_view", "open_tile", "restart_first_view")


# ---------------------------------------------------------------- one measurement (child process)


async def _measure(image_dir: Path, cache_dir: Path, names: list[str], restart: bool) -> dict[str, Any]:
    from benchmarks import viewer_sessions
    from iiifserver.app import create_app
    from iiifserver.asgi_call import call
    from iiifserver.config import Settings

    def app_of() -> Any:
        return create_app(Settings(images=image_dir, manifests=cache_dir / "no-manifests", cache=cache_dir / "cache"))

    async def get(app: Any, url: str) -> bytes:
        status, _, body = await call(app, url)
        if status != 200:
            raise RuntimeError(f"{url}: HTTP {status}")
        return body

    async def first_view(app: Any, name: str) -> tuple[float, float, int, list[str]]:
        base = f"/iiif/3/{name}"
        c0 = time.process_time()
        info = json.loads(await get(app, f"{base}/info.json"))
        c1 = time.process_time()
        session = viewer_sessions.session(info, VIEWPORT, seed=name, steps=NEXT_STEPS, image_url=base)
        home = session.steps[0].urls
        c2 = time.process_time()
        for url in home:
            await get(app, url)
        c3 = time.process_time()
        later = [url for step in session.steps[1:] for url in step.urls]
        return c1 - c0, c3 - c2, len(home), later

    app = app_of()
    await first_view(app, names[0])  # imports, threads, libvips start-up: not a first open's cost
    info_s = home_s = open_s = 0.0
    home_tiles = open_tiles = 0
    for name in names[1:]:
        info_cpu, home_cpu, n_home, later = await first_view(app, name)
        c0 = time.process_time()
        for url in later:
            await get(app, url)
        open_s += time.process_time() - c0
        info_s, home_s = info_s + info_cpu, home_s + home_cpu
        home_tiles, open_tiles = home_tiles + n_home, open_tiles + len(later)
    n = len(names) - 1
    out: dict[str, Any] = {
        "images": n,
        "home_tiles_per_image": home_tiles / n,
        "info": info_s / n * 1000,
        "home": home_s / n * 1000,
        "first_view": (info_s + home_s) / n * 1000,
        "open_tile": open_s / max(1, open_tiles) * 1000,
    }
    if restart:
        again = app_of()
        await first_view(again, names[0])
        total = 0.0
        for name in names[1:]:
            info_cpu, home_cpu, _, _ = await first_view(again, name)
            total += info_cpu + home_cpu
        out["restart_first_view"] = total / n * 1000
    return out


def child(args: argparse.Namespace) -> None:
    import iiifserver

    names = json.loads(args.names)
    with tempfile.TemporaryDirectory(prefix="first-open-cache-") as cache:
        record = asyncio.run(_measure(Path(args.image_dir), Path(cache), names, args.restart))
    record["package"] = str(Path(iiifserver.__file__).resolve().parent)  # which tree ran (checked, not kept)
    print(json.dumps(record))


# ---------------------------------------------------------------- the run (parent process)


def _copies(image_dir: Path, size: str, quality: int, count: int) -> list[str]:
    source = bench_images.make(image_dir, size, quality)
    return [path.name for path in bench_images.make_aliases(source, count, copies=True)]


def _baseline_tree(commit: str, into: Path) -> Path:
    """``iiifserver/`` of ``commit`` (git archive: the index and work tree are left alone), with
    its C extensions built in place: a baseline without them would be measured on the paths a
    server installed without a compiler takes, not the code of that commit as installed."""
    archive = into / "baseline.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", commit, "iiifserver"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    for source in sorted((into / "iiifserver").rglob("_*.c")):
        _build_extension(source)
    return into


def _build_extension(source: Path) -> Path:
    """``source`` compiled next to itself as the module setup.py makes of it (-O3, over libjpeg and libm)."""
    target = source.with_name(source.stem + str(sysconfig.get_config_var("EXT_SUFFIX")))
    compiler = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    command = [compiler, "-shared", "-fPIC", "-O3", f"-I{sysconfig.get_paths()['include']}", str(source)]
    subprocess.run([*command, "-ljpeg", "-lm", "-o", str(target)], check=True, capture_output=True)
    return target


def _run_child(python_path: list[Path], image_dir: Path, names: list[str], restart: bool, cwd: Path) -> dict[str, Any]:
    """One measurement in a fresh process whose ``iiifserver`` is the first tree of ``python_path``
    (run from ``cwd``, a neutral folder: ``-m`` puts the working folder first on the path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in python_path))
    command = [sys.executable, "-m", "benchmarks.first_open", "--child", "--image-dir", str(image_dir)]
    command += ["--names", json.dumps(names)] + (["--restart"] if restart else [])
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result.pop("package")) != python_path[0] / "iiifserver":
        raise RuntimeError(f"the measurement imported iiifserver from elsewhere than {python_path[0]}")
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs), "home_tiles_per_image": runs[0]["home_tiles_per_image"]}
    for part in PARTS:
        values = [run[part] for run in runs if part in run]
        if values:
            out[part] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def _report(record: dict[str, Any]) -> str:
    m = record["machine"]
    lines = [
        *results.heading("First open of never-opened images: CPU per image", m),
        f"{record['count']} distinct copies of the {record['size']} pyramid (Q{record['quality']}), "
        f"in-process (ASGI), default settings; CPU time of the process, all threads; median of "
        f"{record['repeats']} runs (min-max). Home view: {record['viewport'][0]}x{record['viewport'][1]} "
        "viewport, OpenSeadragon's model (`viewer_sessions`).",
        "",
        "| tree | info.json ms | home view tiles ms | first viewport ms | tile of an open image ms |"
        + (" restarted server, first viewport ms |" if record["restart"] else ""),
        "|---|---|---|---|---|" + ("---|" if record["restart"] else ""),
    ]
    for label, summary in record["variants"].items():

        def cell(part: str, summary: dict[str, Any] = summary) -> str:
            value = summary.get(part)
            if value is None:
                return "-"
            return f"{value['median']:.2f} ({value['min']:.2f}-{value['max']:.2f})"

        home = f"{cell('home')} for {summary['home_tiles_per_image']:.0f} tiles"
        row = f"| {label} | {cell('info')} | {home} | {cell('first_view')} | {cell('open_tile')} |"
        lines.append(row + (f" {cell('restart_first_view')} |" if record["restart"] else ""))
    lines += ["", f"Command: `{record['machine']['command']}`", ""]
    return "\n".join(lines)


def trees_to_run(baseline_commit: str | None, scratch: Path) -> dict[str, list[Path]]:
    """label -> the import path of each code version to measure: the baseline commit's (its
    ``iiifserver/`` from ``git archive`` into ``scratch``, first on the path; ``benchmarks/`` from
    this tree) when one is named, then this tree."""
    trees: dict[str, list[Path]] = {}
    if baseline_commit:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", baseline_commit],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tree = scratch / "baseline"
        tree.mkdir()
        trees[f"baseline {commit}"] = [_baseline_tree(baseline_commit, tree), REPO]
    trees[f"this tree ({results.git_commit()}{'+' if _dirty() else ''})"] = [REPO]
    return trees


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="big", choices=sorted(bench_images.SIZES))
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--count", type=int, default=40, help="distinct copies (one more is the warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--restart", action="store_true", help="also the first viewport of a restarted server")
    parser.add_argument("--baseline-commit", default="", help="also measure iiifserver/ of this commit")
    parser.add_argument(
        "--image-dir",
        default=str(Path(tempfile.gettempdir()) / "iiifserver-first-open"),
        help="where the copies are made (kept for the next run)",
    )
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: results named -quick")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--names", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    image_dir = Path(args.image_dir)
    names = _copies(image_dir, args.size, args.quality, args.count + 1)
    now = datetime.now(UTC)
    command = " ".join(["python -m benchmarks.first_open", *_without_paths(argv if argv is not None else sys.argv[1:])])
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="first-open-") as scratch:
        trees = trees_to_run(args.baseline_commit, Path(scratch))
        for repeat in range(args.repeats):
            for label, path in trees.items():
                run = _run_child(path, image_dir, names, args.restart, cwd=Path(scratch))
                runs.setdefault(label, []).append(run)
                print(f"repeat {repeat + 1} {label}: first viewport {run['first_view']:.2f} ms/image", flush=True)
    record = {
        "machine": results.machine(now, command),
        "size": args.size,
        "quality": args.quality,
        "count": args.count,
        "repeats": args.repeats,
        "restart": args.restart,
        "viewport": list(VIEWPORT),
        "variants": {label: _summary(found) for label, found in runs.items()},
        "runs": runs,
    }
    results.write(Path(args.results), results.stem(now, "first-open", quick=args.quick), record, _report(record))
    return 0


def _without_paths(argv: list[str]) -> list[str]:
    """The arguments as recorded: the folders (machine paths) left out."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--image-dir", "--results"):
            skip = True
        elif not arg.startswith(("--image-dir=", "--results=")):
            shown.append(arg)
    return shown


def _dirty() -> bool:
    done = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "iiifserver"], capture_output=True, text=True
    )
    return bool(done.stdout.strip())


if __name__ == "__main__":
    raise SystemExit(main())
