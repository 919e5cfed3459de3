#!/usr/bin/env python3
"""Side-by-side benchmark: iiifserver against IIPImage's iipsrv (with and without memcached).

    python benchmarks/side_by_side.py                  # the full matrix, about 45 minutes on 2 cores
    python benchmarks/side_by_side.py --quick          # c=8 only, 10 s runs, one repeat: about 7 minutes
    python benchmarks/side_by_side.py --quick --only cold,hot --label before   # a quick before/after pair
    python benchmarks/side_by_side.py --server-checkout ../baseline --label baseline   # another commit
    python benchmarks/side_by_side.py --only mixed     # the mixed viewer-and-scholar workload, c=8, 64, open loops

Run it from the repository as root on Debian (it may apt-get), with nothing else CPU-heavy
meanwhile. It uses the project's harness in ``benchmarks/harness/`` (see benchmarks/README.md):

1. installs what is missing: iipimage-server, lighttpd, spawn-fcgi, memcached and wrk (apt-get);
2. makes the test images with ``harness/images.py`` into ``$BENCH_ROOT/images`` (skipping what
   exists): the 12000x9000 pyramid with JPEG Q90 4:4:4 tiles, the same at Q85 4:2:0, and the
   40000x25000 (1 gigapixel) and 4000x2500 (10 megapixel) Q85 pair; for cold and unaligned runs
   at least 150 real copies of each 12000x9000 pyramid (distinct files, made once and kept: about
   5.5 GB at Q85, 21 GB at Q90; ``--qualities 85`` needs only the first), symlinks of the pair;
   for the mixed workload also 1000 copies of a 4000x3000 Q85 pyramid (3.5 GB);
3. runs the matrix (``harness/matrix.py``) on both 12000x9000 pyramids for iiifserver, iipsrv and
   iipsrv-memcached: cold and hot deep-zoom tiles at concurrency 1, 8 and 64, plus info.json.
   A cold run asks every image's info.json before its tiles, as viewers do.
   Output quality equals the stored tiles' (iipsrv's ``JPEG_QUALITY``, iiifserver's
   ``--jpeg-quality``), so iiifserver may pass stored tiles through and iipsrv re-encodes at the
   same quality;
4. runs the non-passthrough workload (random unaligned regions at other sizes, from
   ``viewer_sessions.unaligned_requests``) for iiifserver and iipsrv at c=8, on both pyramids;
5. runs iiifserver cold at c=8 on the 1-gigapixel pyramid and on its 10-megapixel block;
6. runs the mixed viewer-and-scholar workload (``harness/mix.py``: viewer sessions, thumbnails,
   info.json, cited regions, downloads) for iiifserver and iipsrv at c=8 and c=64, each run on a
   fresh server, with the servers' peak memory; then in an open loop at each of ``--open-rates``
   requests/s (a Poisson stream over 64 connections, each request timed from its scheduled moment);
   before each server's cold, unaligned and mixed run its image files are read once (page cache warm for all);
   every server is left to finish its start-up work before a run (``servers.settle``);
7. prints one markdown table: every target, both sides' figures, the ratio and PASS/FAIL.

``--only`` runs some of the workloads (``cold``, ``hot``, ``info``, ``unaligned``, ``giga``, ``mixed``),
``--configs`` some of the servers; the table then says MISSING for the rest.

Everything goes to ``benchmarks/results/<YYYY-MM-DD>-<hostname>-<cpu model>[-quick][-label].{jsonl,md,meta.json}``
(the label defaults to ``mixed`` for ``--only mixed``):
the JSON lines of every run (``harness/load.py``'s fields), the table with the machine, the
versions and the summary of all runs, and the metadata (command, CPU model, versions of
iiifserver, uvicorn, httptools, uvloop, pyvips/libvips, Python, iipsrv, ...). iiifserver's log
goes to ``$BENCH_ROOT/run/<name>.server.log`` (not kept with the results; the .md counts its
tracebacks and ERROR lines).

Every server is started and stopped by PID (``harness/servers.py``); all are stopped on exit, on
error and on Ctrl-C. All traffic is on 127.0.0.1. If the harness's servers are already running
(someone else's benchmark) or their ports are taken, it refuses to start.

Environment: ``BENCH_ROOT`` (default ``${TMPDIR:-/tmp}/iiifserver-bench``), ``IIIFSERVER_ARGS``
(extra ``serve`` arguments; the quality is appended).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
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
from typing import Any
from urllib.parse import quote, unquote

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run by path: make the benchmarks package importable
    sys.path.insert(0, str(REPO))

from benchmarks import viewer_sessions as vs  # noqa: E402
from benchmarks.harness import images as img  # noqa: E402
from benchmarks.harness import load, mix, servers, summary  # noqa: E402
from benchmarks.harness import matrix as mx  # noqa: E402
from benchmarks.harness.machine import cpu_model, slug  # noqa: E402

PYRAMIDS = [(90, "big", "Q90 4:4:4"), (85, "big-q85", "Q85 4:2:0")]  # quality, matrix label, name
CONFIGS = ["iiifserver", "iipsrv", "iipsrv-memcached"]  # the default run
# Also: iiifserver without metrics (their cost) and another checkout (before/after), each measured
# in the same run as iiifserver, so the machine's drift between runs does not count.
ALL_CONFIGS = [*CONFIGS, "iiifserver-no-metrics", "iiifserver-baseline"]
COLD_BOUND = 3.5  # cold deep-zoom tiles over distinct files, against iipsrv (issue 17; 3x before)
UNALIGNED_BOUND = 1.5  # unaligned regions and other sizes (issue 17; 1x before)
MIXED_BOUND = 1.5  # the mixed viewer-and-scholar workload, c=8 (issue 17)
METRICS_COST_BOUND = 1.05  # the metrics may cost at most 5 % (server CPU per request)
BASELINE_BOUND = 0.90  # a change may cost at most 10 % of the baseline's throughput
WORKLOADS = ("cold", "hot", "info", "unaligned", "giga", "mixed")
PORTS = (8081, 8083, 11311)  # iipsrv (lighttpd), iiifserver, memcached
BUSY_PCT = 25  # a run during which other processes used more than this (% of one core) is flagged
# ---------------------------------------------------------------- plan


COLD_TILES_PER_S = 20_000  # the most cold tiles/s a run may need URLs for
MIN_DISTINCT_FILES = 150  # distinct files (copies) under every cold and unaligned run (issue 17)
MIX_SMALL = 1000  # 4000x3000 photographs in the mixed workload's collection, besides the scans
MIX_REQUESTS_PER_S = 5_000  # the most mixed requests/s a run may need URLs for
MIX_CONC = (8, 64)
# Open-loop runs of the mixed list (``--open-rates``): a Poisson stream at a fixed rate that both
# servers sustain (iipsrv serves about 750-800 of these requests/s on 2 cores, at most), over this many
# connections, each request timed from its scheduled moment.
MIX_OPEN_RATES = (400.0, 600.0)
MIX_OPEN_CONC = 64


@dataclass
class Plan:
    quick: bool
    conc: list[int]
    repeats: int
    duration: int
    min_cold_urls: int
    unaligned_urls: int
    copies_big: int  # real copies of each 12000x9000 pyramid: the identifiers of cold and unaligned runs
    links_giga: int  # symlinks of the gigapixel pair (CPU per tile against image size: one file is fine)
    only: tuple[str, ...] = WORKLOADS
    configs: tuple[str, ...] = tuple(CONFIGS)
    baseline_checkout: str | None = None  # the iiifserver-baseline config's checkout
    mix_small: int = MIX_SMALL
    mix_urls: int = 0
    open_rates: tuple[float, ...] = MIX_OPEN_RATES

    @classmethod
    def make(
        cls,
        quick: bool,
        duration: int | None,
        repeats: int | None,
        only: Sequence[str] = WORKLOADS,
        configs: Sequence[str] = CONFIGS,
    ) -> Plan:
        conc = [8] if quick else [1, 8, 64]
        reps = repeats or (1 if quick else 2)
        dur = duration or (10 if quick else 20)
        # A cold run must not run out of URLs: iiifserver served 10,700 cold tiles/s from the
        # Q85 pyramid on 2 cores (2026-11-22), so twice that, for margin and faster machines.
        min_cold = COLD_TILES_PER_S * dur
        big = vs.ImageInfo(12000, 9000, scale_factors=(1, 2, 4, 8, 16, 32, 64)).n_tiles()
        tenmp = vs.ImageInfo(4000, 2500, scale_factors=(1, 2, 4, 8, 16)).n_tiles()
        # Every cold run of a pyramid takes the same identifiers from _00 (its server starts with
        # empty caches): real copies, at least MIN_DISTINCT_FILES, made once and kept.
        copies_big = max(MIN_DISTINCT_FILES, -(-min_cold // big))
        links_giga = -(-min_cold // tenmp)
        return cls(
            quick, conc, reps, dur, min_cold, 4_000 * dur, copies_big, links_giga, tuple(only), tuple(configs),
            mix_urls=MIX_REQUESTS_PER_S * dur,
        )  # fmt: skip

    def minutes(self) -> float:
        per = self.duration + 5
        modes = len({"cold", "hot"} & set(self.only))
        info = self.repeats * 12 if "info" in self.only else 0
        matrix = 2 * (len(self.configs) * (modes * len(self.conc) * self.repeats * per + info))
        unaligned = 2 * 2 * self.repeats * per if "unaligned" in self.only else 0
        giga = 2 * self.repeats * per if "giga" in self.only else 0
        mixed = 2 * (len(MIX_CONC) + len(self.open_rates)) * self.repeats * per if "mixed" in self.only else 0
        return (matrix + unaligned + giga + mixed) / 60


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
    """Copies iiifserver's log (started afresh at every server start) into one file."""

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

    def __init__(self, checkout: Path = REPO) -> None:
        super().__init__(daemon=True)
        self.checkout = checkout
        self.changes: list[tuple[str, str]] = [(now_iso(), code_version(checkout))]
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(5):
            v = code_version(self.checkout)
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


def mem_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


VERSION_CODE = """\
import importlib.metadata as m, json, platform, pyvips
out = {"python": platform.python_version(), "libvips": ".".join(str(pyvips.version(i)) for i in range(3))}
for name in ("pyvips", "uvicorn", "httptools", "uvloop", "starlette"):
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        out[name] = "not installed"
print(json.dumps(out))
"""


def versions(venv_python: Path, checkout: Path = REPO) -> dict[str, str]:
    """Versions of everything measured: the server's Python packages (in its venv), the peers, wrk."""
    out: dict[str, str] = {}
    for pkg in ("iipimage-server", "lighttpd", "spawn-fcgi", "memcached", "wrk"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True, check=False)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "?"
    r = subprocess.run([str(venv_python), "-c", VERSION_CODE], capture_output=True, text=True, check=False)
    try:
        out.update(json.loads(r.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        out["python"] = "?"
    out["iiifserver"] = code_version(checkout)
    return out


def describe_checkout(checkout: Path) -> str:
    """A checkout as result files name it: never a path of this machine (results are committed)."""
    return "this checkout" if checkout.resolve() == REPO.resolve() else f"a checkout of {code_version(checkout)}"


def code_version(checkout: Path = REPO) -> str:
    """The server code under test: HEAD, plus a digest of uncommitted changes to the package."""
    git = ["git", "-C", str(checkout)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    diff = subprocess.run([*git, "diff", "HEAD", "--", "iiifserver"], capture_output=True, check=False)
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


def paired_ratio(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], field: str) -> float | None:
    """The median over repeats of ours / theirs within the same repeat (``rN`` of the label)."""
    theirs_by_repeat = {r["label"].rsplit("/", 1)[-1]: r.get(field) for r in theirs}
    ratios = [
        r[field] / theirs_by_repeat[repeat]
        for r in ours
        if r.get(field) is not None and theirs_by_repeat.get(repeat := r["label"].rsplit("/", 1)[-1])
    ]
    return float(statistics.median(ratios)) if ratios else None


def targets(quick: bool, configs: Sequence[str] = CONFIGS) -> list[Target]:
    hi = 8 if quick else 64
    sub = "quick run: measured at c=8, the target is for c=64" if quick else ""
    out = []
    for _, p, pname in PYRAMIDS:
        for mode, c in (("cold", 8), ("hot", hi)):
            if "iiifserver-no-metrics" in configs:
                out.append(
                    Target(
                        f"metrics' cost: server CPU per request, {mode} c={c}, {pname}",
                        ("iiifserver", p, mode, c),
                        ("iiifserver-no-metrics", p, mode, c),
                        "server_cpu_us_per_req",
                        "<=",
                        METRICS_COST_BOUND,
                        " us",
                        "iiifserver --no-metrics",
                        sub,
                    )
                )
            if "iiifserver-baseline" in configs:
                out.append(
                    Target(
                        f"against the baseline checkout: {mode} tiles/s, c={c}, {pname}",
                        ("iiifserver", p, mode, c),
                        ("iiifserver-baseline", p, mode, c),
                        "rps_ok",
                        ">=",
                        BASELINE_BOUND,
                        "/s",
                        "baseline",
                        sub,
                    )
                )
    for _, p, pname in PYRAMIDS:
        out += [
            Target(
                f"cold deep-zoom tiles/s, c=8, {pname}",
                ("iiifserver", p, "cold", 8),
                ("iipsrv", p, "cold", 8),
                "rps_ok",
                ">=",
                COLD_BOUND,
                "/s",
                "iipsrv",
                f"over {MIN_DISTINCT_FILES}+ distinct files, info.json first",
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
                UNALIGNED_BOUND,
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
    out += [
        Target(
            "mixed viewer-and-scholar req/s, c=8",
            ("iiifserver", "mixed", "mixed", 8),
            ("iipsrv", "mixed", "mixed", 8),
            "rps_ok",
            ">=",
            MIXED_BOUND,
            "/s",
            "iipsrv",
        ),
        *(
            Target(
                f"p99 latency{how}, mixed, c={c}",
                ("iiifserver", "mixed", "mixed", c),
                ("iipsrv", "mixed", "mixed", c),
                field,
                "<=",
                1.0,
                " ms",
                "iipsrv",
            )
            for c in MIX_CONC
            for how, field in (
                (" of each request", "request_p99_ms"),
                (" as wrk reports it (corrected for coordinated omission)", "p99_ms"),
            )
        ),
        Target(
            "peak RSS, all server processes, mixed c=64",
            ("iiifserver", "mixed", "mixed", 64),
            ("iipsrv", "mixed", "mixed", 64),
            "server_peak_rss_mb",
            "<abs",
            1024.0,
            " MB",
            "iipsrv",
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
    if any(r.get("wraps") for r in runs if r.get("mode") in ("cold", "mixed")):
        out.append(f"{who}: the URL list ran out and started again (not fully cold)")
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
    images = {key[1] for key in runs if not key[1].startswith("mixed-open-")}  # open loops: their own table
    rows = [
        t
        for t in targets(quick, sorted({key[0] for key in runs}))
        if not images
        or t.ours[1] in images
        or t.ours[1].removesuffix("-unaligned") in images
        or ("giga" in t.ours[1] and images - {"mixed"})
    ]
    for t in rows:
        ours_runs, theirs_runs = runs.get(t.ours, []), runs.get(t.theirs, [])
        ours, theirs = value(ours_runs, t.field), value(theirs_runs, t.field)
        ratio = ours / theirs if ours is not None and theirs else None
        if t.theirs[0].startswith("iiifserver-"):
            # Two iiifserver configurations run in turn, repeat by repeat: the ratio within each
            # repeat (minutes apart) and their median, so a repeat where the machine slowed for
            # both does not count against either.
            ratio = paired_ratio(ours_runs, theirs_runs, t.field) or ratio
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
        if t.theirs[0].startswith("iiifserver-"):
            rps = [value(rs, "rps_ok") for rs in (ours_runs, theirs_runs)]
            if rps[0] and rps[1] and t.field != "rps_ok":
                n.append(f"req/s {rps[0]:,.0f} / {rps[1]:,.0f} ({rps[0] / rps[1]:.2f}x)")
        elif t.field in ("rps_ok", "server_cpu_ms_per_req") and ours_runs and theirs_runs and t.ours[2] != "info":
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


def parse_only(text: str) -> tuple[str, ...]:
    """'cold,hot' -> ('cold', 'hot'); argparse error on unknown names."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; choose from {','.join(WORKLOADS)}")
    return names


def parse_qualities(text: str) -> tuple[int, ...]:
    """'85' -> (85,); argparse error on a quality no pyramid has."""
    known = {q for q, _, _ in PYRAMIDS}
    try:
        qualities = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        qualities = ()
    if not qualities or any(q not in known for q in qualities):
        raise argparse.ArgumentTypeError(f"choose from {','.join(str(q) for q in sorted(known))}")
    return qualities


def parse_rates(text: str) -> tuple[float, ...]:
    """``--open-rates``: positive requests/s, comma-separated; empty for none."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parse_configs(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in ALL_CONFIGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown server(s) {unknown}; choose from {','.join(ALL_CONFIGS)}")
    return names


def result_stem(day: str, host: str, cpu: str, quick: bool, label: str) -> str:
    """``<date>-<host>-<cpu>[-quick][-label]``, the stem of a run's result files."""
    return f"{day}-{slug(host)}-{slug(cpu)}" + ("-quick" if quick else "") + (f"-{slug(label)}" if label else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="c=8 only, 10 s runs, one repeat (a smoke run)")
    ap.add_argument("--duration", type=int, help="seconds per load run (default 20, quick 10)")
    ap.add_argument("--repeats", type=int, help="repeats of every run (default 2, quick 1)")
    ap.add_argument(
        "--only",
        type=parse_only,
        default=WORKLOADS,
        help=f"comma-separated workloads (default all: {','.join(WORKLOADS)})",
    )
    ap.add_argument(
        "--configs", type=parse_configs, default=tuple(CONFIGS), help="comma-separated servers (default all)"
    )
    ap.add_argument(
        "--server-checkout", type=Path, default=REPO, help="the iiifserver checkout (with .venv) to benchmark"
    )
    ap.add_argument(
        "--baseline-checkout",
        type=Path,
        help="another checkout (with .venv), run as iiifserver-baseline between the others: before/after in one run",
    )
    ap.add_argument(
        "--qualities",
        type=parse_qualities,
        default=tuple(q for q, _, _ in PYRAMIDS),
        help="the 12000x9000 pyramids to run, by stored JPEG quality: 90, 85 or both (default 90,85)",
    )
    ap.add_argument("--label", default="", help="appended to the result file names (e.g. before, after)")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="where the .jsonl and .md go")
    ap.add_argument("--no-install", action="store_true", help="never apt-get; fail if something is missing")
    ap.add_argument("--seed", type=int, default=1, help="seed of the unaligned and the mixed requests")
    ap.add_argument(
        "--open-rates",
        type=parse_rates,
        default=MIX_OPEN_RATES,
        help="requests/s of the mixed workload's open-loop runs, comma-separated ('' for none; default "
        + ",".join(f"{r:g}" for r in MIX_OPEN_RATES)
        + ")",
    )
    ap.add_argument(
        "--report",
        type=Path,
        metavar="JSONL",
        help="run nothing: rebuild the table and the .md of an earlier run from its .jsonl",
    )
    args = ap.parse_args(argv)

    t_start = time.time()
    bench_root = servers.bench_root()
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
    checkout = args.server_checkout.resolve()
    images = bench_root / "images"
    venv_python = checkout / ".venv" / "bin" / "python"
    if not (checkout / ".venv" / "bin" / "iiifserver").exists():
        print(f"no {checkout}/.venv/bin/iiifserver: install that checkout first (scripts/install.sh)", file=sys.stderr)
        return 2
    configs = args.configs
    baseline = args.baseline_checkout.resolve() if args.baseline_checkout else None
    if baseline is not None:
        if not (baseline / ".venv" / "bin" / "iiifserver").exists():
            print(f"no {baseline}/.venv/bin/iiifserver: install that checkout first", file=sys.stderr)
            return 2
        if "iiifserver-baseline" not in configs:
            configs = (*configs, "iiifserver-baseline")
    elif "iiifserver-baseline" in configs:
        print("iiifserver-baseline needs --baseline-checkout", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick, args.duration, args.repeats, args.only, configs)
    plan.baseline_checkout = str(baseline) if baseline else None
    plan.open_rates = args.open_rates
    base_args = shlex.split(os.environ.get("IIIFSERVER_ARGS", ""))

    day = datetime.now().strftime("%Y-%m-%d")
    run_label = args.label or ("mixed" if plan.only == ("mixed",) else "")
    stem = result_stem(day, socket.gethostname(), cpu_model(), args.quick, run_label)
    args.results.mkdir(parents=True, exist_ok=True)
    n = 1
    name = stem
    while (args.results / f"{name}.jsonl").exists() or (args.results / f"{name}.md").exists():
        n += 1
        name = f"{stem}-{n}"
    jsonl, md = (args.results / f"{name}.{ext}" for ext in ("jsonl", "md"))
    server_log = bench_root / "run" / f"{name}.server.log"

    def log(msg: str) -> None:
        print(f"[side_by_side {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    runner = Runner(dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), log)

    # someone else's servers? then do not touch anything
    for config in ("iiifserver", "iipsrv"):
        running = servers.make(config, images).pids()
        if running:
            print(f"{config} of the harness is already running ({running}): another benchmark? Stop it first.",
                  file=sys.stderr)  # fmt: skip
            return 2
    for port in PORTS:
        if port_in_use(port):
            print(f"127.0.0.1:{port} is in use: the harness needs it", file=sys.stderr)
            return 2

    log(
        f"plan: {'quick' if args.quick else 'full'}, workloads {','.join(plan.only)}, servers "
        f"{','.join(plan.configs)}, concurrency {plan.conc}, {plan.duration} s runs, {plan.repeats} repeat(s), "
        f"about {plan.minutes():.0f} min of load; iiifserver from {checkout}; results -> {args.results / name}.*"
    )
    interrupted = False
    server_log.parent.mkdir(parents=True, exist_ok=True)
    server_log.unlink(missing_ok=True)
    copier = LogCopier(bench_root / "run" / "iiifserver" / "iiifserver.log", server_log)
    watcher = CodeWatcher(checkout)
    watcher.start()

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_hup = signal.signal(signal.SIGHUP, on_term)
    try:
        if not args.no_install:
            servers.install()
        make_images(runner, venv_python, images, plan, args.qualities, log)
        copier.start()
        phases: list[tuple[str, Callable[[], None]]] = []
        for quality, label, pname in PYRAMIDS:
            if quality not in args.qualities:
                continue
            serve = [*base_args, "--jpeg-quality", str(quality)]
            if {"cold", "hot", "info"} & set(plan.only):
                phases.append(
                    (f"matrix {pname}", lambda q=quality, s=serve: matrix(images, jsonl, plan, q, checkout, s, log))
                )
            if "unaligned" in plan.only:
                phases.append(
                    (
                        f"unaligned {pname}",
                        lambda q=quality, s=serve, lb=label: unaligned(
                            images, jsonl, plan, q, lb, args.seed, checkout, s, log
                        ),
                    )
                )
        if "giga" in plan.only and "iiifserver" in plan.configs:
            g_serve = [*base_args, "--jpeg-quality", "85"]
            phases.append(("1 gigapixel vs 10 megapixel", lambda: giga(images, jsonl, plan, checkout, g_serve, log)))
        if "mixed" in plan.only:
            m_serve = [*base_args, "--jpeg-quality", "85"]
            phases.append(
                (
                    "mixed viewer-and-scholar workload",
                    lambda: mixed(images, jsonl, plan, args.seed, checkout, m_serve, log),
                )
            )
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
        for config in ("iiifserver", "iipsrv"):
            servers.make(config, images).stop()
        left = [config for config in ("iiifserver", "iipsrv") if servers.make(config, images).pids()]
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
    if code_version(checkout) != changes[-1][1]:
        changes.append((now_iso(), code_version(checkout)))
    command = ["python", "benchmarks/side_by_side.py", *(argv if argv is not None else sys.argv[1:])]
    meta = {
        "command": " ".join(shlex.quote(c) for c in command),
        "quick": args.quick,
        "only": list(plan.only),
        "configs": list(plan.configs),
        "label": run_label,
        **({"mix": mix_table(plan, args.seed)} if "mixed" in plan.only else {}),
        "server_checkout": describe_checkout(checkout),
        "elapsed_s": round(elapsed),
        "interrupted": interrupted,
        "plan": {**vars(plan), "baseline_checkout": describe_checkout(baseline) if baseline else None},
        "bench_root": str(bench_root),
        "server_log": str(server_log),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "versions": versions(venv_python, checkout),
        **({"baseline_versions": versions(baseline / ".venv" / "bin" / "python", baseline)} if baseline else {}),
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


def image_sets(plan: Plan, qualities: Sequence[int]) -> list[tuple[tuple[str, ...], int, int, bool]]:
    """(sizes, quality, aliases, real copies?) of the images a plan needs: copies of the 12000x9000
    pyramids for cold, info and unaligned runs and of both mixed collections, symlinks for the
    gigapixel pair."""
    sets: dict[tuple[tuple[str, ...], int], tuple[int, bool]] = {}
    if {"cold", "info", "unaligned"} & set(plan.only):
        sets.update({(("big",), q): (plan.copies_big, True) for q in qualities})
    elif "hot" in plan.only:
        sets.update({(("big",), q): (0, True) for q in qualities})
    if "mixed" in plan.only:
        sets[(("big",), 85)] = (plan.copies_big, True)
        sets[(("small",), 85)] = (plan.mix_small, True)
    if "giga" in plan.only and "iiifserver" in plan.configs:
        sets[(("giga", "10mp"), 85)] = (plan.links_giga, False)
    return [(sizes, q, n, copies) for (sizes, q), (n, copies) in sets.items()]


def make_images(
    runner: Runner, venv_python: Path, images: Path, plan: Plan, qualities: Sequence[int], log: Callable[[str], None]
) -> None:
    """The pyramids this plan needs and their aliases, made with the server checkout's pyvips; copies
    are made once and kept (``images.py`` checks the free disk first)."""
    for sizes, quality, n, copies in image_sets(plan, qualities):
        count = img.count_copies if copies else img.count_aliases
        if all((images / f"{img.stem(s, quality)}.tif").exists() and count(images, s, quality) >= n for s in sizes):
            names = ", ".join(img.stem(s, quality) for s in sizes)
            log(f"images: {names} and {n} {'copies' if copies else 'links'} exist")
            continue
        runner.run(
            [str(venv_python), "-m", "benchmarks.harness.images", "--out", str(images),
             *(a for s in sizes for a in ("--size", s)), "--quality", str(quality), "--aliases", str(n),
             *(["--copies"] if copies else [])],
            env=dict(runner.env, PYTHONPATH=str(REPO)),
        )  # fmt: skip


def mix_requests(plan: Plan, seed: int) -> list[mix.MixedRequest]:
    """The mixed workload's list: the scans' copies and the photographs' copies, seeded."""
    collection = mix.collection(
        img.alias_names("big", 85, plan.copies_big), img.alias_names("small", 85, plan.mix_small)
    )
    return mix.mixed_requests(collection, plan.mix_urls, seed)


def mix_table(plan: Plan, seed: int) -> str:
    return mix.describe_md(mix_requests(plan, seed))


def mixed(
    images: Path, jsonl: Path, plan: Plan, seed: int, checkout: Path, serve: list[str], log: Callable[[str], None]
) -> None:
    """The mixed viewer-and-scholar workload (``harness/mix.py``) at c=8 and c=64, the same list for
    iiifserver and iipsrv (equal JPEG quality 85), each run on a freshly started server."""
    requests = mix_requests(plan, seed)
    urls_file = jsonl.with_name(f"{jsonl.stem}.mixed.txt")
    urls_file.write_text("".join(r.line() + "\n" for r in requests))
    ids = sorted({r.path.split("/", 1)[0] for r in requests})
    # (concurrency, open-loop rate or None, the label's image field): closed loops, then open ones
    shapes = [(c, None, "mixed") for c in MIX_CONC]
    shapes += [(MIX_OPEN_CONC, rate, open_name(rate)) for rate in plan.open_rates]
    try:
        for rep in range(1, plan.repeats + 1):
            for c, rate, name in shapes:
                for config in [name for name in ("iiifserver", "iipsrv") if name in plan.configs]:
                    server = servers.make(config, images, jpeg_quality=85, checkout=checkout, args=serve)
                    try:
                        server.stop()
                        server.start()
                        img.read_once(images, [unquote(i) for i in ids])  # page cache warm for every server alike
                        time.sleep(1)
                        work = load.make_workload(server.base, "mixed", ids, urls_file=urls_file)
                        record = load.run(
                            server.base, work, concurrency=c, duration=plan.duration, pids=server.pids,
                            label=f"{config}/{name}/r{rep}", check=20, kinds=[r.kind for r in requests], rate=rate,
                        )  # fmt: skip
                        load.append_jsonl(jsonl, record)
                        log(load.describe(record))
                    except RuntimeError as e:
                        log(f"{config}: {e}")
                    finally:
                        server.stop()
    finally:
        urls_file.unlink(missing_ok=True)


def matrix(
    images: Path, jsonl: Path, plan: Plan, quality: int, checkout: Path, serve: list[str], log: Callable[[str], None]
) -> None:
    mx.run_matrix(
        plan.configs,
        images,
        jsonl,
        size="big",
        quality=quality,
        modes=[m for m in ("cold", "hot") if m in plan.only],
        conc=plan.conc,
        repeats=plan.repeats,
        duration=plan.duration,
        info="info" in plan.only,
        min_cold_urls=plan.min_cold_urls,
        min_ids=plan.copies_big,
        checkout=checkout,
        serve_args=serve,
        baseline_checkout=Path(plan.baseline_checkout) if plan.baseline_checkout else None,
        log=log,
    )


def giga(images: Path, jsonl: Path, plan: Plan, checkout: Path, serve: list[str], log: Callable[[str], None]) -> None:
    for size in ("giga", "10mp"):
        mx.run_matrix(
            ["iiifserver"],
            images,
            jsonl,
            size=size,
            quality=85,
            modes=["cold"],
            conc=[8],
            repeats=plan.repeats,
            duration=plan.duration,
            min_cold_urls=plan.min_cold_urls,
            checkout=checkout,
            serve_args=serve,
            log=log,
        )


def unaligned(
    images: Path,
    jsonl: Path,
    plan: Plan,
    quality: int,
    label: str,
    seed: int,
    checkout: Path,
    serve: list[str],
    log: Callable[[str], None],
) -> None:
    """Random unaligned regions at other sizes over the distinct copies, the same list for iiifserver
    and iipsrv, server cold."""
    stem = img.stem("big", quality)
    width, height = img.SIZES["big"]
    info = vs.ImageInfo(width, height, scale_factors=(1, 2, 4, 8, 16, 32, 64))
    ids = img.alias_names("big", quality, min(plan.copies_big, img.count_aliases(images, "big", quality)))
    ids = ids or [f"{stem}.tif"]
    per_id = -(-plan.unaligned_urls // len(ids))
    reqs = vs.interleave(
        [[(ident, r) for r in vs.unaligned_requests(info, per_id, f"{seed}.{ident}")] for ident in ids]
    )
    urls_file = jsonl.with_name(f"{jsonl.stem}.unaligned-{label}.txt")
    urls_file.write_text("".join(f"{quote(ident, safe='')}{r.url}\t{r.width}\t{r.height}\n" for ident, r in reqs))
    try:
        for rep in range(1, plan.repeats + 1):
            for config in [c for c in ("iiifserver", "iipsrv") if c in plan.configs]:
                server = servers.make(config, images, jpeg_quality=quality, checkout=checkout, args=serve)
                try:
                    server.stop()
                    server.start()
                    img.read_once(images, ids)  # the page cache warm for every server alike
                    time.sleep(1)
                    work = load.make_workload(server.base, "cold", urls_file=urls_file)
                    record = load.run(
                        server.base,
                        work,
                        concurrency=8,
                        duration=plan.duration,
                        pids=server.pids,
                        label=f"{config}/{label}-unaligned/r{rep}",
                        check=10,
                    )
                    load.append_jsonl(jsonl, record)
                    log(load.describe(record))
                except RuntimeError as e:
                    log(f"{config}: {e}")
                finally:
                    server.stop()
    finally:
        urls_file.unlink(missing_ok=True)


def open_name(rate: float) -> str:
    """The image field of an open-loop mixed run's label (``load_runs`` keys runs by it)."""
    return f"mixed-open-{rate:g}"


def mixed_open(runs: dict[tuple[str, str, str, int], list[dict[str, Any]]]) -> str:
    """The open-loop mixed runs (none: ""): per rate and server, requests/s answered, each request's p50,
    p90 and p99 from its scheduled moment, the p99 of each kind, errors (medians over repeats)."""
    rates = sorted({r["rate"] for records in runs.values() for r in records if r.get("rate")})
    if not rates:
        return ""
    kinds = list(mix.KINDS)
    lines = [
        "| rate | server | req/s | p50 ms | p90 ms | p99 ms | " + " | ".join(f"p99 {k}" for k in kinds) + " | errors |",
        "|---:|---|" + "---:|" * (4 + len(kinds) + 1),
    ]
    for rate in rates:
        for cfg in ("iiifserver", "iipsrv"):
            records = runs.get((cfg, open_name(rate), "mixed", MIX_OPEN_CONC), [])
            if not records:
                continue

            def latency(group: str, q: str, records: list[dict[str, Any]] = records) -> float | None:
                got = [r["request_latency"][group][q] for r in records if group in r.get("request_latency", {})]
                return statistics.median(got) if got else None

            cells = [fmt(value(records, "rps_ok"), ""), *(fmt(latency("all", q), "") for q in ("p50", "p90", "p99"))]
            cells += [fmt(latency(k, "p99"), "") for k in kinds]
            errors = sum(r.get("errors", 0) for r in records)
            lines.append(f"| {rate:g}/s | {cfg} | {' | '.join(cells)} | {errors} |")
    return "\n".join(lines)


def mixed_summary(runs: dict[tuple[str, str, str, int], list[dict[str, Any]]]) -> str:
    """The mixed workload, server against server per concurrency: req/s, p50, p99, errors, peak
    memory (medians over repeats; memory the maximum) and iiifserver's ratio to iipsrv."""
    fields = ("rps_ok", "request_p50_ms", "request_p99_ms", "p50_ms", "p99_ms", "server_peak_rss_mb")
    lines = [
        "| c | server | req/s | p50 ms | p99 ms | wrk's p50 ms | wrk's p99 ms | errors | peak RSS, all processes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in MIX_CONC:
        got = {cfg: runs.get((cfg, "mixed", "mixed", c), []) for cfg in ("iiifserver", "iipsrv")}
        figures = {cfg: [value(rs, f) for f in fields] for cfg, rs in got.items()}
        for cfg, row in figures.items():
            errs = sum(r.get("errors", 0) for r in got[cfg])
            shown = [fmt(v, "") for v in row[:-1]]
            lines.append(f"| {c} | {cfg} | {' | '.join(shown)} | {errs} | {fmt(row[-1], ' MB')} |")
        ours, theirs = figures["iiifserver"], figures["iipsrv"]
        ratios = [f"{a / b:.2f}x" if a is not None and b else "n/a" for a, b in zip(ours, theirs, strict=True)]
        lines.append(f"| {c} | ratio | {' | '.join(ratios[:-1])} | | {ratios[-1]} |")
    return "\n".join(lines)


def _mixed_table(
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]],
    columns: list[str],
    row: Callable[[list[dict[str, Any]]], list[str] | None],
) -> str:
    """A table of the mixed runs, one row per concurrency and server: ``row(records)`` gives its
    cells under ``columns`` from that server's mixed runs at that concurrency (None: no row)."""
    lines = [
        "| c | server | " + " | ".join(columns) + " |",
        "|---:|---|" + "---:|" * len(columns),
    ]
    for c in MIX_CONC:
        for cfg in ("iiifserver", "iipsrv"):
            cells = row(runs.get((cfg, "mixed", "mixed", c), []))
            if cells is not None:
                lines.append(f"| {c} | {cfg} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _kinds_table(
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]],
    row: Callable[[list[dict[str, Any]], list[str]], list[str] | None],
) -> str:
    """``_mixed_table`` with a column per kind of the mixed list: ``row(records, kinds)``."""
    kinds = [*mix.KINDS]
    return _mixed_table(runs, kinds, lambda records: row(records, kinds))


def mixed_kinds(runs: dict[tuple[str, str, str, int], list[dict[str, Any]]]) -> str:
    """Each request's own latency per kind of the mixed list, p50 / p99 ms (median over repeats)."""

    def row(records: list[dict[str, Any]], kinds: list[str]) -> list[str] | None:
        rs = [r for r in records if r.get("request_latency")]
        if not rs:
            return None
        cells = []
        for kind in kinds:
            p50, p99 = (value([{q: r["request_latency"].get(kind, {}).get(q)} for r in rs], q) for q in ("p50", "p99"))
            cells.append(f"{fmt(p50, '')} / {fmt(p99, '')}")
        return cells

    return _kinds_table(runs, row)


def mixed_slowest(runs: dict[tuple[str, str, str, int], list[dict[str, Any]]]) -> str:
    """Which kinds the slowest 1 % of requests are (at or over the p99 of all), as shares of them,
    counted over every repeat; runs without the count (older records) are left out."""

    def row(records: list[dict[str, Any]], kinds: list[str]) -> list[str] | None:
        rs = [r for r in records if "slowest" in r.get("request_latency", {}).get("all", {})]
        total = sum(r["request_latency"]["all"]["slowest"] for r in rs)
        if not total:
            return None
        counts = [sum(r["request_latency"].get(kind, {}).get("slowest", 0) for r in rs) for kind in kinds]
        return [f"{n / total:.0%}" for n in counts]

    return _kinds_table(runs, row)


def mixed_windows(runs: dict[tuple[str, str, str, int], list[dict[str, Any]]]) -> str:
    """Each request's p99 by the part of the run it ended in (median over repeats), and that part's
    share of the slowest 1 % (at or over the p99 of all, counted over every repeat); runs without
    the windows (older records) are left out."""
    spans: list[tuple[float, float]] = []
    for rs in runs.values():
        for r in rs:
            if len(r.get("request_windows") or []) > len(spans):
                spans = [(w["from"], w["to"]) for w in r["request_windows"]]

    def row(records: list[dict[str, Any]]) -> list[str] | None:
        rs = [r["request_windows"] for r in records if r.get("request_windows")]
        total = sum(w["slowest"] for ws in rs for w in ws)
        if not total:
            return None
        cells = []
        for k in range(len(spans)):
            p99s = [ws[k]["p99"] for ws in rs if k < len(ws) and ws[k]["n"]]
            slowest = sum(ws[k]["slowest"] for ws in rs if k < len(ws))
            cells.append(f"{fmt(statistics.median(p99s) if p99s else None, '')} ({slowest / total:.0%})")
        return cells

    return _mixed_table(runs, [f"{a:g}-{b:g} s" for a, b in spans], row)


def write_report(md: Path, jsonl: Path, tbl: str, passed: int, total: int, meta: dict[str, Any]) -> None:
    """The .md: how, where and on what the run was made, the targets table, and every run."""
    all_runs = summary.read_runs([jsonl]) if jsonl.exists() else []
    server_log = Path(meta.get("server_log") or jsonl.with_suffix(".server.log"))
    log_text = server_log.read_text(errors="replace") if server_log.exists() else ""
    tracebacks = log_text.count("Traceback")
    errors = sum(1 for line in log_text.splitlines() if " ERROR " in line)
    records = [r for rs in load_runs(jsonl).values() for r in rs]
    open_loops = mixed_open(load_runs(jsonl))
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
            f"iiifserver {v.get('iiifserver', '?')} (Python {v.get('python', '?')}; uvicorn {v.get('uvicorn', '?')}, "
            f"httptools {v.get('httptools', '?')}, uvloop {v.get('uvloop', '?')}; pyvips {v.get('pyvips', '?')}, "
            f"libvips {v.get('libvips', '?')}); iipimage-server {v.get('iipimage-server', '?')}, "
            f"lighttpd {v.get('lighttpd', '?')}, spawn-fcgi {v.get('spawn-fcgi', '?')}, "
            f"memcached {v.get('memcached', '?')}; wrk {v.get('wrk', '?')}."
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
        f"{plan['repeats']} repeat(s) (median shown; peak RSS: the maximum); servers restarted before every cold "
        "run; 2 iiifserver workers, 2 iipsrv FastCGI processes behind lighttpd. A started server is left to "
        "finish its start-up work first (`servers.settle`: under 5 % of a core for a second; iiifserver compares "
        "its catalogue with the Change Discovery log when it starts, about 8 s of CPU over these 2,255 files).",
        (
            f"- Identifiers: cold and unaligned runs over {plan['copies_big']} distinct files (real copies of the "
            "pyramid), each image's info.json asked before its tiles. Before each server's cold, unaligned and "
            "mixed run its image files are read once (`images.read_once`), for every server alike: this VM pages "
            "out file pages not read for about a minute, so a run would otherwise measure the virtual disk."
            if "copies_big" in plan
            else "- Identifiers: symlinks to one file per pyramid, fresh ones for every cold run (before issue 17)."
        ),
        "- Equal JPEG quality: output quality = the pyramid's stored quality (iipsrv `JPEG_QUALITY`, iiifserver "
        "`--jpeg-quality`). Pyramids: 12000x9000 JPEG Q90 RGB 4:4:4 and Q85 YCbCr 4:2:0 "
        "(`benchmarks/harness/images.py`), 40000x25000 and 4000x2500 Q85 for the size target.",
        *(
            [f"- Workloads: {', '.join(meta['only'])}; servers: {', '.join(meta.get('configs') or CONFIGS)}."]
            if meta.get("only") and tuple(meta["only"]) != WORKLOADS
            else []
        ),
        *(
            [f"- iiifserver checkout: `{meta['server_checkout']}`."]
            if meta.get("server_checkout") and Path(meta["server_checkout"]) != REPO
            else []
        ),
        "- Throughput is responses with status 2xx/3xx per second (`rps_ok`); CPU per tile is the server "
        "processes' CPU time over the run divided by the requests.",
        f"- Images and run dirs: `{meta.get('bench_root', '$BENCH_ROOT')}`. Raw runs: `{jsonl.name}` "
        "(one JSON line per run).",
        f"- iiifserver log during the run (`{server_log.name}`, not kept with the results): "
        + (f"{tracebacks} tracebacks, {errors} ERROR lines." if server_log.exists() else "not found."),
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
        *(
            [
                "## The mixed workload, side by side",
                "",
                "p50 and p99: each request's own latency (`tile_load.lua`, one connection per wrk thread). "
                "wrk's own percentiles are corrected for coordinated omission: every response slower than a "
                "connection's mean interval also counts as made-up samples at that interval below it, so a "
                "request of 400 ms counts about 50 times at c=8 and one of 20 ms once (docs/performance.md, "
                '"Latency: per request, and as wrk reports it").',
                "",
                mixed_summary(load_runs(jsonl)),
                "",
                "Each request's own latency by kind, p50 / p99 ms:",
                "",
                mixed_kinds(load_runs(jsonl)),
                "",
                "The slowest 1 % of requests (at or over the p99 of all), by kind:",
                "",
                mixed_slowest(load_runs(jsonl)),
                "",
                "Each request's p99 (ms) by the part of the run it ended in, and in brackets that part's "
                "share of the slowest 1 %: a start that fills caches and opens images shows here.",
                "",
                mixed_windows(load_runs(jsonl)),
                "",
            ]
            if any(r.get("mode") == "mixed" for r in records)
            else []
        ),
        *(
            [
                "## The mixed workload in an open loop",
                "",
                f"The same list sent as a Poisson stream at a fixed rate over {MIX_OPEN_CONC} connections, "
                "whatever the server does (`--open-rates`; `tile_load.lua` with `RATE_PER_THREAD`), each "
                "request timed from its scheduled moment to its response's end: the latency visitors see "
                "at that load. The closed loop above keeps every connection busy, so a saturated server "
                'only chooses which requests wait (docs/performance.md, "Closed and open loops").',
                "",
                open_loops,
                "",
            ]
            if open_loops
            else []
        ),
        *(
            [
                "## The mixed workload's list",
                "",
                '`benchmarks/harness/mix.py` (shares: docs/performance.md, "The mixed viewer-and-scholar '
                'workload"); a run replays it from the start for its duration, so its first part counts:',
                "",
                meta["mix"],
                "",
            ]
            if meta.get("mix")
            else []
        ),
        "## All runs",
        "",
        summary.table(all_runs) if all_runs else "(no runs)",
        "",
    ]
    md.write_text("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
