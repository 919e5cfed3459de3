#!/usr/bin/env python3
"""Side-by-side benchmark: iiifserver against IIPImage's iipsrv (with and without memcached).

    python benchmarks/side_by_side.py            # the full matrix, about 45 minutes on 2 cores
    python benchmarks/side_by_side.py --quick    # c=8 only, 10 s runs, one repeat: about 6 minutes

Run it from anywhere as root on Debian (it may apt-get); nothing else CPU-heavy meanwhile. It uses
the shared harness in ``../shared/bench`` next to the repository (its README describes every
script) and copies none of it:

1. installs what is missing: iipsrv, lighttpd, spawn-fcgi, memcached (``peer_iipsrv.sh install``)
   and wrk (apt-get);
2. makes the test images with ``make_images.py`` into ``$BENCH_ROOT/images`` (skipping what exists):
   the 12000x9000 pyramid with JPEG Q90 4:4:4 tiles, the same at Q85 4:2:0, and the 40000x25000
   (1 gigapixel) and 4000x2500 (10 megapixel) Q85 pair, each with symlink aliases for cold runs;
3. runs ``run_matrix.py`` on both 12000x9000 pyramids for iiifserver, iipsrv and
   iipsrv-memcached: cold and hot deep-zoom tiles at concurrency 1, 8 and 64, plus info.json.
   Output quality equals the stored tiles' (``IIP_JPEG_Q=Q`` for iipsrv,
   ``IIIFSERVER_ARGS="--jpeg-quality Q"`` for iiifserver), so iiifserver may pass stored tiles
   through and iipsrv re-encodes at the same quality;
4. runs the non-passthrough workload (random unaligned regions at other sizes, from
   ``viewer_sessions.unaligned_requests``) through ``tile_load.py --urls-file`` for iiifserver and
   iipsrv at c=8, on both pyramids;
5. runs iiifserver cold at c=8 on the 1-gigapixel pyramid and on its 10-megapixel block;
6. prints one markdown table: every target, both sides' figures, the ratio and PASS/FAIL.

Everything goes to ``benchmarks/results/<YYYY-MM-DD>-<hostname>-<cpu model>[-quick].{jsonl,md}``:
the JSON lines of every run (``tile_load.py``'s fields) and the table, the machine, the versions
and ``summarize.py``'s table of all runs. iiifserver's log is copied to ``.server.log`` next to
them (best effort: the shared script truncates it at every restart).

Every server is started and stopped by the shared scripts (PID files, stopped by PID); this
script stops them all on exit, on error and on Ctrl-C. All traffic is on 127.0.0.1. If a server
of the shared scripts is already running (someone else's benchmark), it refuses to start.

Environment: ``BENCH_ROOT`` (default ``${TMPDIR:-/tmp}/iiifbench``), ``IIIFSERVER_ARGS`` (extra
``serve`` arguments, the quality is appended).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import viewer_sessions as vs  # this folder (the script is run by path)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = (REPO / ".." / "shared" / "bench").resolve()  # the shared harness, next to the repository

PYRAMIDS = [(90, "big", "Q90 4:4:4"), (85, "big-q85", "Q85 4:2:0")]  # quality, run_matrix label, name
CONFIGS = ["iiifserver", "iipsrv", "iipsrv-memcached"]
BUSY_PCT = 25  # a run during which other processes used more than this (% of one core) is flagged


def shared_module(name: str) -> ModuleType:
    """Import a script of ../shared/bench (writing no bytecode next to it)."""
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location(f"shared_bench_{name}", SHARED / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {SHARED / name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- plan


COLD_TILES_PER_S = 20_000  # the most cold tiles/s a run may need URLs for


@dataclass
class Plan:
    quick: bool
    conc: list[int]
    repeats: int
    duration: int
    min_cold_urls: int
    unaligned_urls: int
    links_big: int
    links_giga: int

    @classmethod
    def make(cls, quick: bool, duration: int | None, repeats: int | None) -> Plan:
        conc = [8] if quick else [1, 8, 64]
        reps = repeats or (1 if quick else 2)
        dur = duration or (10 if quick else 20)
        # A cold run must not run out of URLs: iiifserver served 10,700 cold tiles/s from the
        # Q85 pyramid on 2 cores (2026-11-22), so twice that, for margin and faster machines.
        min_cold = COLD_TILES_PER_S * dur
        big = vs.ImageInfo(12000, 9000, scale_factors=(1, 2, 4, 8, 16, 32, 64)).n_tiles()
        tenmp = vs.ImageInfo(4000, 2500, scale_factors=(1, 2, 4, 8, 16)).n_tiles()
        full_cold = COLD_TILES_PER_S * 20
        # enough aliases for the full matrix whatever this run is, so a later full run makes none
        links_big = -(-full_cold // big) * 3 * 2 + 20
        links_giga = -(-full_cold // tenmp) * 2 + 20
        return cls(quick, conc, reps, dur, min_cold, 4_000 * dur, links_big, links_giga)

    def minutes(self) -> float:
        per = self.duration + 5
        matrix = 2 * (3 * (2 * len(self.conc) * self.repeats * per + self.repeats * 12))
        unaligned = 2 * 2 * self.repeats * per
        giga = 2 * self.repeats * per
        return (matrix + unaligned + giga) / 60


# ---------------------------------------------------------------- processes


class Runner:
    """Runs children in their own process group; stops the running one (by PID) on interrupt."""

    def __init__(self, env: dict[str, str], log: Callable[[str], None]) -> None:
        self.env = env
        self.log = log
        self.current: subprocess.Popen[bytes] | None = None

    def run(
        self, cmd: Sequence[str], env: dict[str, str] | None = None, check: bool = True, capture: bool = False
    ) -> subprocess.CompletedProcess[str]:
        self.log("$ " + " ".join(str(c) for c in cmd))
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            env=env or self.env,
            start_new_session=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=None,
        )
        self.current = proc
        try:
            out, _ = proc.communicate()
        except BaseException:  # Ctrl-C, SIGTERM: stop the child before anything else happens
            self.stop_current()
            raise
        self.current = None
        text = out.decode(errors="replace") if out else ""
        if check and proc.returncode:
            raise RuntimeError(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited with {proc.returncode}")
        return subprocess.CompletedProcess(list(map(str, cmd)), proc.returncode, text, "")

    def shell(self, cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, shell=True, env=env or self.env, capture_output=True, text=True)

    def stop_current(self) -> None:
        """SIGTERM, then SIGKILL, to the running child's process group (its PID), and wait for it."""
        proc, self.current = self.current, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)  # the child's own group (its PID): it and its wrk
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


class LogCopier(threading.Thread):
    """Copies iiifserver's log (truncated by the shared script at every start) into one file."""

    def __init__(self, src: Path, dst: Path) -> None:
        super().__init__(daemon=True)
        self.src, self.dst = src, dst
        self.stop_event = threading.Event()
        self.pos = 0

    def poll(self) -> None:
        try:
            size = self.src.stat().st_size
        except OSError:
            return
        if size < self.pos:
            self.pos = 0  # restarted: a new log
        if size > self.pos:
            with self.src.open("rb") as f, self.dst.open("ab") as out:
                f.seek(self.pos)
                data = f.read(size - self.pos)
                out.write(data)
                self.pos += len(data)

    def run(self) -> None:
        while not self.stop_event.wait(0.3):
            self.poll()
        self.poll()


class CodeWatcher(threading.Thread):
    """Notes when the server code under test changes (others may edit and commit meanwhile)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.changes: list[tuple[str, str]] = [(now_iso(), code_version())]
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(5):
            v = code_version()
            if v != self.changes[-1][1]:
                self.changes.append((now_iso(), v))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def version_at(changes: Sequence[Sequence[str]], run: dict[str, Any]) -> str:
    """The server code a run measured: the version when its server started (about duration + 5 s
    before the run's end time)."""
    if not changes:
        return "?"
    end = datetime.strptime(run["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    start = end - float(run.get("duration_s") or 0) - 5
    version = changes[0][1]
    for when, v in changes:
        if datetime.strptime(when, "%Y-%m-%dT%H:%M:%S%z").timestamp() <= start:
            version = v
    return version


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "cpu"


def mem_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def versions(venv_python: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in ("iipimage-server", "lighttpd", "spawn-fcgi", "memcached", "wrk"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "?"
    r = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import pyvips; print(pyvips.__version__, '/ libvips', '.'.join(str(pyvips.version(i)) for i in range(3)))",
        ],
        capture_output=True,
        text=True,
    )
    out["pyvips"] = r.stdout.strip() or "?"
    out["iiifserver"] = code_version()
    return out


def code_version() -> str:
    """The server code under test: HEAD, plus a digest of uncommitted changes to the package."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD", "--", "iiifserver"], capture_output=True)
    out = head.stdout.strip() or "?"
    if diff.stdout.strip():
        out += "+changes:" + hashlib.sha1(diff.stdout).hexdigest()[:8]
    return out


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- results -> table


@dataclass
class Target:
    name: str
    ours: tuple[str, str, str, int]  # config, image label, mode, concurrency
    theirs: tuple[str, str, str, int]
    field: str
    goal: str  # ">=" ratio, "<=" ratio, or "<abs" absolute bound on ours
    bound: float
    unit: str
    peer_name: str
    note: str = ""


def load_runs(path: Path) -> dict[tuple[str, str, str, int], list[dict[str, Any]]]:
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        cfg, image = ([*r["label"].split("/"), "", ""])[:2]
        runs.setdefault((cfg, image, r["mode"], int(r["concurrency"])), []).append(r)
    return runs


def value(runs: list[dict[str, Any]], field: str) -> float | None:
    vals = [r[field] for r in runs if r.get(field) is not None]
    if not vals:
        return None
    return float(max(vals)) if field == "server_peak_rss_mb" else float(statistics.median(vals))


def targets(quick: bool) -> list[Target]:
    hi = 8 if quick else 64
    sub = "quick run: measured at c=8, the target is for c=64" if quick else ""
    out = []
    for _, p, pname in PYRAMIDS:
        out += [
            Target(
                f"cold deep-zoom tiles/s, c=8, {pname}",
                ("iiifserver", p, "cold", 8),
                ("iipsrv", p, "cold", 8),
                "rps_ok",
                ">=",
                3.0,
                "/s",
                "iipsrv",
            ),
            Target(
                f"hot tiles/s, c={hi}, {pname}",
                ("iiifserver", p, "hot", hi),
                ("iipsrv-memcached", p, "hot", hi),
                "rps_ok",
                ">=",
                2.0,
                "/s",
                "iipsrv+memcached",
                sub,
            ),
            Target(
                f"info.json/s, c=8, {pname}",
                ("iiifserver", p, "info", 8),
                ("iipsrv", p, "info", 8),
                "rps_ok",
                ">=",
                2.0,
                "/s",
                "iipsrv",
            ),
            Target(
                f"non-passthrough req/s (unaligned regions, other sizes), c=8, {pname}",
                ("iiifserver", f"{p}-unaligned", "cold", 8),
                ("iipsrv", f"{p}-unaligned", "cold", 8),
                "rps_ok",
                ">=",
                1.0,
                "/s",
                "iipsrv",
            ),
            Target(
                f"p99 latency, cold c={hi}, {pname}",
                ("iiifserver", p, "cold", hi),
                ("iipsrv", p, "cold", hi),
                "p99_ms",
                "<=",
                1.0,
                " ms",
                "iipsrv",
                sub,
            ),
            Target(
                f"server CPU per tile, cold c=8, {pname}",
                ("iiifserver", p, "cold", 8),
                ("iipsrv", p, "cold", 8),
                "server_cpu_ms_per_req",
                "<=",
                0.5,
                " ms",
                "iipsrv",
            ),
            Target(
                f"peak RSS, all server processes, cold c={hi}, {pname}",
                ("iiifserver", p, "cold", hi),
                ("iipsrv", p, "cold", hi),
                "server_peak_rss_mb",
                "<abs",
                1024.0,
                " MB",
                "iipsrv",
                sub,
            ),
        ]
    out.append(
        Target(
            "server CPU per tile, 1-gigapixel vs 10-megapixel pyramid (Q85 4:2:0), cold c=8",
            ("iiifserver", "giga-q85", "cold", 8),
            ("iiifserver", "10mp-q85", "cold", 8),
            "server_cpu_ms_per_req",
            "<=",
            1.2,
            " ms",
            "iiifserver 10 Mpx",
        )
    )
    return out


def edge_share(width: int, height: int, tile: int = 256) -> float:
    """Share of a pyramid's tiles that are partial (right or bottom edge): no stored tile to pass through."""
    info = vs.ImageInfo(width, height, tile, tile, vs.default_scale_factors(width, height, tile, tile))
    edge = 0
    for s in info.scales:
        cols, rows = info.grid(s)
        full_cols = width // (tile * s)
        full_rows = height // (tile * s)
        edge += cols * rows - full_cols * full_rows
    return edge / info.n_tiles()


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 1000 else 0
    return f"{v:,.{digits}f}{unit}"


def notes(runs: list[dict[str, Any]], who: str) -> list[str]:
    out = []
    errors = sum(r.get("errors", 0) for r in runs)
    if errors:
        kinds: dict[str, int] = {}
        for r in runs:
            for k, n in (r.get("err_detail") or {}).items():
                if n:
                    kinds[k.removeprefix("err_")] = kinds.get(k.removeprefix("err_"), 0) + n
        out.append(f"{who}: {errors} errors ({', '.join(f'{k} {n}' for k, n in kinds.items())})")
    if any(r.get("wraps") for r in runs if r.get("mode") == "cold"):
        out.append(f"{who}: cold URL list ran out (not fully cold)")
    busy = max((r.get("other_cpu_pct") or 0 for r in runs), default=0)
    if busy > BUSY_PCT:
        out.append(f"{who}: machine busy, other processes used {busy:.0f} % of a core")
    bad = sum(r.get("check_failures", 0) for r in runs)
    if bad:
        ex = next((r["check_examples"][0] for r in runs if r.get("check_examples")), None)
        out.append(f"{who}: {bad} sampled responses wrong" + (f" (e.g. {ex[1]})" if ex else ""))
    return out


def table(
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]],
    quick: bool,
    code_changes: Sequence[Sequence[str]] = (),
) -> tuple[str, int, int]:
    """The targets table; also the number of PASS and of rows."""
    lines = [
        "| target | iiifserver | peer | peer's | ratio | goal | result | notes |",
        "|---|---:|---|---:|---:|---|---|---|",
    ]
    passed = 0
    rows = targets(quick)
    for t in rows:
        ours_runs, theirs_runs = runs.get(t.ours, []), runs.get(t.theirs, [])
        ours, theirs = value(ours_runs, t.field), value(theirs_runs, t.field)
        ratio = ours / theirs if ours is not None and theirs else None
        if t.goal == "<abs":
            goal = f"< {t.bound:,.0f}{t.unit}"
            ok = ours is not None and ours < t.bound
        elif t.goal == ">=":
            goal = f">= {t.bound:g}x"
            ok = ratio is not None and ratio >= t.bound
        else:
            goal = f"<= {t.bound:g}x"
            ok = ratio is not None and ratio <= t.bound
        result = "MISSING" if ours is None or (theirs is None and t.goal != "<abs") else "PASS" if ok else "FAIL"
        passed += result == "PASS"
        n = notes(ours_runs, "iiifserver") + notes(theirs_runs, t.peer_name)
        if len(code_changes) > 1:
            ours_all = [r for r in ours_runs + theirs_runs if r["label"].startswith("iiifserver/")]
            seen = sorted({version_at(code_changes, r) for r in ours_all})
            if len(seen) > 1:
                n.append(f"iiifserver runs measured different code: {', '.join(seen)}")
        if t.field in ("rps_ok", "server_cpu_ms_per_req") and ours_runs and theirs_runs and t.ours[2] != "info":
            kb = [statistics.median(r["avg_bytes"] for r in rs) / 1000 for rs in (ours_runs, theirs_runs)]
            n.append(f"avg response {kb[0]:.1f} / {kb[1]:.1f} kB")
        if t.note:
            n.append(t.note)
        if t.ours[1] == "giga-q85" and ours_runs and theirs_runs:
            n.append(
                f"identifiers per run {ours_runs[0]['ids']} / {theirs_runs[0]['ids']}; "
                f"edge tiles {edge_share(40000, 25000):.0%} / {edge_share(4000, 2500):.0%} of all tiles"
            )
        lines.append(
            f"| {t.name} | {fmt(ours, t.unit)} | {t.peer_name} | {fmt(theirs, t.unit)} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | {goal} | {result} | {'; '.join(n)} |"
        )
    return "\n".join(lines), passed, len(rows)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="c=8 only, 10 s runs, one repeat (a smoke run)")
    ap.add_argument("--duration", type=int, help="seconds per load run (default 20, quick 10)")
    ap.add_argument("--repeats", type=int, help="repeats of every run (default 2, quick 1)")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="where the .jsonl and .md go")
    ap.add_argument("--no-install", action="store_true", help="never apt-get; fail if something is missing")
    ap.add_argument("--seed", type=int, default=1, help="seed of the unaligned requests")
    ap.add_argument(
        "--report",
        type=Path,
        metavar="JSONL",
        help="run nothing: rebuild the table and the .md of an earlier run from its .jsonl",
    )
    args = ap.parse_args(argv)

    t_start = time.time()
    bench_root = Path(os.environ.get("BENCH_ROOT") or Path(os.environ.get("TMPDIR") or "/tmp") / "iiifbench")
    if args.report:
        runs = load_runs(args.report)
        if not runs:
            print(f"no runs in {args.report}", file=sys.stderr)
            return 2
        meta_path = args.report.with_suffix(".meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        quick = bool(meta.get("quick", args.quick or "-quick" in args.report.name))
        tbl, passed, total = table(runs, quick, meta.get("code_changes") or ())
        print(tbl)
        print(f"\n{passed}/{total} targets met; {sum(len(v) for v in runs.values())} runs")
        md = args.report.with_suffix(".md")
        write_report(md, args.report, tbl, passed, total, meta)
        print(f"written: {md}")
        return 0
    images = bench_root / "images"
    venv_python = REPO / ".venv" / "bin" / "python"
    if not (REPO / ".venv" / "bin" / "iiifserver").exists():
        print(f"no {REPO}/.venv/bin/iiifserver: install the project first (scripts/serve-demo.sh)", file=sys.stderr)
        return 2
    if not (SHARED / "run_matrix.py").exists():
        print(f"the shared benchmark harness is not at {SHARED}", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick, args.duration, args.repeats)
    base_args = os.environ.get("IIIFSERVER_ARGS", "").strip()
    env = dict(
        os.environ,
        BENCH_ROOT=str(bench_root),
        IIIFSERVER_PROJECT=str(REPO),
        IIP_IMAGES=str(images),
        IIIFSERVER_IMAGES=str(images),
        IMAGES=str(images),
        PYTHONDONTWRITEBYTECODE="1",
    )

    day = datetime.now().strftime("%Y-%m-%d")
    stem = f"{day}-{slug(socket.gethostname())}-{slug(cpu_model())}" + ("-quick" if args.quick else "")
    args.results.mkdir(parents=True, exist_ok=True)
    n = 1
    name = stem
    while (args.results / f"{name}.jsonl").exists() or (args.results / f"{name}.md").exists():
        n += 1
        name = f"{stem}-{n}"
    jsonl, md, server_log = (args.results / f"{name}.{ext}" for ext in ("jsonl", "md", "server.log"))

    def log(msg: str) -> None:
        print(f"[side_by_side {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    runner = Runner(env, log)
    run_matrix = shared_module("run_matrix")
    scripts = run_matrix.CONFIGS

    # someone else's servers? then do not touch anything
    for cfg in ("iiifserver", "iipsrv"):
        if runner.shell(scripts[cfg]["pids"]).stdout.strip():
            print(
                f"{cfg} of the shared scripts is already running ({scripts[cfg]['pids']}): another benchmark? "
                "Stop it first.",
                file=sys.stderr,
            )
            return 2
    for port in (8081, 8083, 11311):
        if port_in_use(port):
            print(f"127.0.0.1:{port} is in use: the shared scripts need it", file=sys.stderr)
            return 2

    log(
        f"plan: {'quick' if args.quick else 'full'}, concurrency {plan.conc}, {plan.duration} s runs, "
        f"{plan.repeats} repeat(s), about {plan.minutes():.0f} min of load; results -> {args.results / name}.*"
    )
    interrupted = False
    copier = LogCopier(bench_root / "run" / "iiifserver" / "iiifserver.log", server_log)
    watcher = CodeWatcher()
    watcher.start()

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_hup = signal.signal(signal.SIGHUP, on_term)
    try:
        install(runner, args.no_install, log)
        make_images(runner, venv_python, images, plan, log)
        copier.start()
        phases: list[tuple[str, Callable[[], None]]] = []
        for quality, label, pname in PYRAMIDS:
            q_env = dict(env, IIP_JPEG_Q=str(quality), IIIFSERVER_ARGS=f"{base_args} --jpeg-quality {quality}".strip())
            phases.append((f"matrix {pname}", lambda q=quality, e=q_env: matrix(runner, e, images, jsonl, plan, q)))
            phases.append(
                (
                    f"unaligned {pname}",
                    lambda q=quality, e=q_env, lb=label: unaligned(
                        runner, e, scripts, run_matrix, images, jsonl, plan, q, lb, args.seed, log
                    ),
                )
            )
        g_env = dict(env, IIP_JPEG_Q="85", IIIFSERVER_ARGS=f"{base_args} --jpeg-quality 85".strip())
        phases.append(("1 gigapixel vs 10 megapixel", lambda: giga(runner, g_env, images, jsonl, plan)))
        for title, phase in phases:
            t0 = time.time()
            log(f"--- {title}")
            phase()
            log(f"--- {title}: {time.time() - t0:.0f} s")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping the run and every server")
    except Exception as e:
        interrupted = True
        log(f"error: {e!r}: stopping every server")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up first
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        runner.stop_current()
        for cfg in ("iiifserver", "iipsrv"):
            runner.shell(scripts[cfg]["stop"])
        left = [cfg for cfg in ("iiifserver", "iipsrv") if runner.shell(scripts[cfg]["pids"]).stdout.strip()]
        if left:
            log(f"warning: still running after stop: {left}")
        copier.stop_event.set()
        if copier.is_alive():
            copier.join(timeout=5)
        watcher.stop_event.set()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    elapsed = time.time() - t_start
    runs = load_runs(jsonl)
    changes = [*watcher.changes]
    if code_version() != changes[-1][1]:
        changes.append((now_iso(), code_version()))
    meta = {
        "command": "python benchmarks/side_by_side.py" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "elapsed_s": round(elapsed),
        "interrupted": interrupted,
        "plan": vars(plan),
        "bench_root": str(bench_root),
        "server_log": server_log.name,
        "versions": versions(venv_python),
        "code_changes": changes,
    }
    jsonl.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    tbl, passed, total = table(runs, args.quick, changes)
    print()
    print(tbl)
    print()
    print(
        f"{passed}/{total} targets met; {sum(len(v) for v in runs.values())} runs; "
        f"{elapsed / 60:.1f} min{' (INTERRUPTED: partial)' if interrupted else ''}"
    )
    if len(changes) > 1:
        print(f"warning: the server code changed during the run: {' -> '.join(v for _, v in changes)}")
    write_report(md, jsonl, tbl, passed, total, meta)
    print(f"results: {jsonl}\n         {md}")
    return 1 if interrupted else 0


def install(runner: Runner, no_install: bool, log: Callable[[str], None]) -> None:
    have_peer = (
        all(shutil.which(x) for x in ("lighttpd", "spawn-fcgi", "memcached"))
        and Path("/usr/lib/iipimage-server/iipsrv.fcgi").exists()
    )
    updated = False
    if not have_peer:
        if no_install:
            raise RuntimeError("iipsrv/lighttpd/spawn-fcgi/memcached missing (--no-install)")
        log("installing the iipsrv peer (peer_iipsrv.sh install)")
        runner.run([str(SHARED / "peer_iipsrv.sh"), "install"])
        updated = True
        # apt may have started the system services: stop those (our peers run their own instances)
        if shutil.which("service"):
            for svc in ("lighttpd", "memcached"):
                runner.shell(f"service {svc} stop")
    if not shutil.which("wrk"):
        if no_install:
            raise RuntimeError("wrk missing (--no-install)")
        log("installing wrk")
        if not updated:
            runner.run(["apt-get", "update", "-qq"])
        runner.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
            env=dict(runner.env, DEBIAN_FRONTEND="noninteractive"),
        )


def make_images(runner: Runner, venv_python: Path, images: Path, plan: Plan, log: Callable[[str], None]) -> None:
    def have(stem: str, links: int) -> bool:
        return (images / f"{stem}.tif").exists() and (images / f"{stem}_{links - 1:02d}.tif").exists()

    sets = [
        (["artwork_big"], ["--only", "big"], plan.links_big),
        (["artwork_big_q85"], ["--only", "big", "--quality", "85"], plan.links_big),
        (["artwork_giga_q85", "artwork_10mp_q85"], ["--gigapixel", "--quality", "85"], plan.links_giga),
    ]
    for stems, flags, links in sets:
        if all(have(s, links) for s in stems):
            log(f"images: {', '.join(stems)} and {links} aliases exist")
            continue
        runner.run(
            [str(venv_python), str(SHARED / "make_images.py"), "--out", str(images), *flags, "--links", str(links)]
        )


def matrix(runner: Runner, env: dict[str, str], images: Path, jsonl: Path, plan: Plan, quality: int) -> None:
    runner.run(
        [
            sys.executable,
            str(SHARED / "run_matrix.py"),
            "--configs",
            *CONFIGS,
            "--image",
            "big",
            "--quality",
            str(quality),
            "--modes",
            "cold",
            "hot",
            "--conc",
            *map(str, plan.conc),
            "--repeats",
            str(plan.repeats),
            "-d",
            str(plan.duration),
            "--info",
            "--project",
            str(REPO),
            "--images",
            str(images),
            "--out",
            str(jsonl),
            "--min-cold-urls",
            str(plan.min_cold_urls),
        ],
        env=env,
    )


def giga(runner: Runner, env: dict[str, str], images: Path, jsonl: Path, plan: Plan) -> None:
    for image in ("giga", "10mp"):
        runner.run(
            [
                sys.executable,
                str(SHARED / "run_matrix.py"),
                "--configs",
                "iiifserver",
                "--image",
                image,
                "--quality",
                "85",
                "--modes",
                "cold",
                "--conc",
                "8",
                "--repeats",
                str(plan.repeats),
                "-d",
                str(plan.duration),
                "--project",
                str(REPO),
                "--images",
                str(images),
                "--out",
                str(jsonl),
                "--min-cold-urls",
                str(plan.min_cold_urls),
            ],
            env=env,
        )


def unaligned(
    runner: Runner,
    env: dict[str, str],
    scripts: dict[str, dict[str, str]],
    run_matrix: ModuleType,
    images: Path,
    jsonl: Path,
    plan: Plan,
    quality: int,
    label: str,
    seed: int,
    log: Callable[[str], None],
) -> None:
    """Random unaligned regions at other sizes, the same list for iiifserver and iipsrv, server cold."""
    stem = run_matrix.image_stem("big", quality)
    width, height = run_matrix.IMAGES["big"]
    info = vs.ImageInfo(width, height, scale_factors=(1, 2, 4, 8, 16, 32, 64))
    ids = [f"{stem}_{i:02d}.tif" for i in range(50)]
    per_id = -(-plan.unaligned_urls // len(ids))
    reqs = vs.interleave(
        [[(ident, r) for r in vs.unaligned_requests(info, per_id, f"{seed}.{ident}")] for ident in ids]
    )
    urls_file = jsonl.with_name(f"{jsonl.stem}.unaligned-{label}.txt")
    urls_file.write_text("".join(f"{quote(ident, safe='')}{r.url}\t{r.width}\t{r.height}\n" for ident, r in reqs))
    try:
        for rep in range(1, plan.repeats + 1):
            for cfg in ("iiifserver", "iipsrv"):
                c = scripts[cfg]
                runner.shell(c["stop"], env)
                started = runner.shell(c["start"], env)
                if started.returncode:
                    log(f"{cfg} failed to start: {started.stderr.strip()}")
                    continue
                time.sleep(1)
                runner.run(
                    [
                        sys.executable,
                        str(SHARED / "tile_load.py"),
                        c["base"],
                        "--urls-file",
                        str(urls_file),
                        "--mode",
                        "cold",
                        "-c",
                        "8",
                        "-d",
                        str(plan.duration),
                        "--pids-cmd",
                        c["pids"],
                        "--label",
                        f"{cfg}/{label}-unaligned/r{rep}",
                        "--json-out",
                        str(jsonl),
                        "--check",
                        "10",
                    ],
                    env=env,
                    check=False,
                )
                runner.shell(c["stop"], env)
    finally:
        urls_file.unlink(missing_ok=True)


def write_report(md: Path, jsonl: Path, tbl: str, passed: int, total: int, meta: dict[str, Any]) -> None:
    """The .md: how, where and on what the run was made, the targets table, and every run."""
    summary = subprocess.run(
        [sys.executable, str(SHARED / "summarize.py"), str(jsonl)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    server_log = jsonl.with_suffix(".server.log")
    log_text = server_log.read_text(errors="replace") if server_log.exists() else ""
    tracebacks = log_text.count("Traceback")
    errors = sum(1 for line in log_text.splitlines() if " ERROR " in line)
    records = [r for rs in load_runs(jsonl).values() for r in rs]
    when = min((r["time"] for r in records), default=now_iso())[:16].replace("T", " ")
    busy = [
        f"{r['label']} {r['mode']} c={r['concurrency']}" for r in records if (r.get("other_cpu_pct") or 0) > BUSY_PCT
    ]
    plan = meta.get("plan") or vars(Plan.make(bool(meta.get("quick")), None, None))
    v = meta.get("versions") or {}
    changes = meta.get("code_changes") or []
    elapsed = meta.get("elapsed_s")
    text = [
        f"# iiifserver side by side: {when} on {socket.gethostname()}",
        "",
        f"- Command: `{meta.get('command', 'python benchmarks/side_by_side.py')}`"
        + (" (interrupted: partial results)" if meta.get("interrupted") else "")
        + (f"; took {elapsed / 60:.1f} min." if elapsed is not None else "."),
        f"- Machine: {cpu_model()}, {os.cpu_count()} CPUs, {mem_gb():.0f} GB RAM, {platform.system()} "
        f"{platform.release()}.",
        "- Versions: "
        + (
            f"iiifserver {v.get('iiifserver', '?')}; pyvips {v.get('pyvips', '?')}; iipimage-server "
            f"{v.get('iipimage-server', '?')}, lighttpd {v.get('lighttpd', '?')}, "
            f"spawn-fcgi {v.get('spawn-fcgi', '?')}, memcached {v.get('memcached', '?')}; wrk {v.get('wrk', '?')}."
            if v
            else "not recorded."
        ),
        "- Server code during the run: "
        + (
            "; ".join(f"{ver} from {t[11:19]}" for t, ver in changes)
            + (
                " (**it changed during the run**: the table notes the rows whose runs measured different code)"
                if len(changes) > 1
                else ""
            )
            + "."
            if changes
            else "not recorded."
        ),
        *([f"- Note: {meta['note']}"] if meta.get("note") else []),
        f"- Matrix: concurrency {' '.join(map(str, plan['conc']))}, {plan['duration']} s per run, "
        f"{plan['repeats']} repeat(s) (median shown; peak RSS: the maximum); servers restarted and fresh "
        "identifiers before every cold run; 2 iiifserver workers, 2 iipsrv FastCGI processes behind lighttpd.",
        "- Equal JPEG quality: output quality = the pyramid's stored quality (iipsrv `IIP_JPEG_Q`, iiifserver "
        "`--jpeg-quality`). Pyramids: 12000x9000 JPEG Q90 RGB 4:4:4 and Q85 YCbCr 4:2:0 "
        "(`make_images.py`), 40000x25000 and 4000x2500 Q85 for the size target.",
        "- Throughput is responses with status 2xx/3xx per second (`rps_ok`); CPU per tile is the server "
        "processes' CPU time over the run divided by the requests.",
        f"- Images and run dirs: `{meta.get('bench_root', '$BENCH_ROOT')}`. Raw runs: `{jsonl.name}` "
        "(one JSON line per run).",
        f"- iiifserver log during the run (`{server_log.name}`, best effort): {tracebacks} tracebacks, "
        f"{errors} ERROR lines.",
        f"- Other processes used more than {BUSY_PCT} % of a core in {len(busy)} of {len(records)} runs "
        "(the `other CPU %` column below; such runs understate the server that ran in them)"
        + (f": {', '.join(busy[:12])}{' ...' if len(busy) > 12 else ''}." if busy else "."),
        "",
        "## Targets",
        "",
        tbl,
        "",
        f"{passed}/{total} targets met.",
        "",
        "## All runs (`summarize.py`)",
        "",
        summary.stdout.strip() if summary.returncode == 0 else "(no runs)",
        "",
    ]
    md.write_text("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
