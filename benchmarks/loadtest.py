#!/usr/bin/env python3
"""Viewer-like load on any IIIF Image API server, with Locust: throughput and latency percentiles.

    python benchmarks/loadtest.py BASE_URL --ids ID [ID ...] [--users 8] [--spawn-rate 8] [--run-time 30s]
                                  [--mode cold|repeat] [--csv PREFIX] [--summary-json FILE]

BASE_URL is the IIIF prefix identifiers are appended to: ``http://127.0.0.1:8000/iiif/3`` for
iiifserver, ``http://127.0.0.1:8081/iiif`` for iipsrv, any Image API 2 or 3 server. Each user
reads info.json and replays the tile requests OpenSeadragon makes while a person pans and zooms
(``benchmarks/viewer_sessions.py``; the users are ``benchmarks/locustfile.py``):

  --mode cold    every tile URL at most once over all users (give many identifiers: aliases of
                 one file are fine; the summary says "exhausted" if they ran out)
  --mode repeat  each user walks its own session again and again (a warm server)

Locust runs headless in a subprocess, bounded by --run-time, and stops by itself. At the end this
prints requests, failures, req/s, tiles/s and p50/p90/p99 and writes a JSON summary
(--summary-json; default PREFIX_summary.json with --csv, else loadtest-summary.json);
--csv PREFIX also keeps Locust's own CSV files.

One Locust process uses one core. More load:

  --processes N                       N worker processes on this machine (-1: one per core)
  --master --expect-workers N         on one machine: waits for N workers, runs the test, writes
                                      the summary (all the options above go here)
  --worker --master-host HOST         on each load machine (as many as --expect-workers); the
                                      workers take their options from the master

Targets other than this machine (127.0.0.1, localhost, ::1) need --allow-remote: point load at
servers you run. Needs Locust (the project's optional extra ``bench``: pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def seconds(run_time: str) -> int:
    """Locust's time strings: 30, 30s, 5m, 1h30m, 1h2m3s."""
    if run_time.isdigit():
        return int(run_time)
    m = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", run_time.strip())
    if not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"bad run time {run_time!r} (e.g. 30s, 5m, 1h30m)")
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_url", nargs="?", help="IIIF base URL, e.g. http://127.0.0.1:8000/iiif/3 (not for --worker)")
    ap.add_argument("--ids", nargs="+", default=[], help="image identifiers")
    ap.add_argument("--users", "-u", type=int, default=8, help="concurrent users (connections)")
    ap.add_argument("--spawn-rate", "-r", type=float, default=0, help="users started per second (default: all at once)")
    ap.add_argument("--run-time", "-t", default="30s", help="how long (30s, 5m, ...)")
    ap.add_argument("--mode", choices=["cold", "repeat"], default="cold")
    ap.add_argument("--csv", metavar="PREFIX", help="Locust's CSV statistics PREFIX_stats.csv, ...")
    ap.add_argument("--summary-json", help="where the JSON summary goes")
    ap.add_argument("--viewport", default="1600x1000", help="viewer size WxH")
    ap.add_argument("--steps", type=int, default=16, help="pans and zooms per session")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size-style", choices=["auto", "w,", "w,h"], default="auto")
    ap.add_argument("--think", type=float, default=0.0, help="seconds between two steps of a session")
    ap.add_argument("--check-every", type=int, default=50, help="check the pixel width of every Nth tile")
    ap.add_argument("--processes", type=int, default=0, help="Locust worker processes on this machine")
    ap.add_argument("--master", action="store_true", help="distributed: be the master")
    ap.add_argument("--expect-workers", type=int, default=1, help="distributed: workers the master waits for")
    ap.add_argument("--master-bind-port", type=int, default=5557)
    ap.add_argument("--worker", action="store_true", help="distributed: be a worker of --master-host")
    ap.add_argument("--master-host", default="127.0.0.1")
    ap.add_argument("--master-port", type=int, default=5557)
    ap.add_argument("--allow-remote", action="store_true", help="allow a target other than this machine")
    ap.add_argument("--loglevel", default="WARNING", help="Locust's log level")
    args = ap.parse_args(argv)
    if args.master and args.worker:
        ap.error("--master or --worker, not both")
    if args.worker:
        return args
    if not args.base_url:
        ap.error("BASE_URL is required")
    if not args.ids:
        ap.error("--ids: give at least one image identifier")
    sp = urlsplit(args.base_url)
    if sp.scheme not in ("http", "https") or not sp.hostname:
        ap.error(f"not an http(s) URL: {args.base_url}")
    if sp.hostname not in LOOPBACK and not args.allow_remote:
        ap.error(f"{sp.hostname} is not this machine: add --allow-remote to load a server you run elsewhere")
    if args.users < 1:
        ap.error("--users must be at least 1")
    args.run_seconds = seconds(args.run_time)
    if args.run_seconds < 1:
        ap.error("--run-time must be at least 1 s")
    if not args.spawn_rate:
        args.spawn_rate = float(args.users)
    if not args.summary_json:
        args.summary_json = f"{args.csv}_summary.json" if args.csv else "loadtest-summary.json"
    return args


def locust_command(args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", args.loglevel]
    if args.worker:
        return [*cmd, "--worker", "--master-host", args.master_host, "--master-port", str(args.master_port)]
    cmd += [
        "--headless",
        "--only-summary",
        "-H",
        args.base_url.rstrip("/"),
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        args.run_time,
        "--stop-timeout",
        "0",
        "--ids",
        *args.ids,
        "--mode",
        args.mode,
        "--viewport",
        args.viewport,
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--size-style",
        args.size_style,
        "--think",
        str(args.think),
        "--check-every",
        str(args.check_every),
        "--summary-json",
        str(Path(args.summary_json).resolve()),
    ]
    if args.csv:
        cmd += ["--csv", args.csv]
    if args.master:
        cmd += [
            "--master",
            "--master-bind-port",
            str(args.master_bind_port),
            "--expect-workers",
            str(args.expect_workers),
            "--expect-workers-max-wait",
            "300",
        ]
    elif args.processes:
        cmd += ["--processes", str(args.processes)]
    return cmd


def run(cmd: list[str], timeout: float | None) -> int:
    """Run Locust in its own process group; on Ctrl-C, SIGTERM or timeout stop that group by its PID."""
    proc = subprocess.Popen(cmd, start_new_session=True)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait(timeout=timeout)
    except (KeyboardInterrupt, subprocess.TimeoutExpired) as e:
        why = "timed out" if isinstance(e, subprocess.TimeoutExpired) else "interrupted"
        print(f"loadtest: {why}, stopping Locust (PID {proc.pid})", file=sys.stderr)
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)  # the group Locust leads: Locust and its --processes workers
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)


def report(summary: dict[str, Any]) -> str:
    """A few human lines from the JSON summary."""
    lines = [
        f"{summary['host']}  mode {summary['mode']}  users {summary['users']}  {summary['duration_s']} s"
        + (f"  workers {summary['workers']}" if summary.get("workers") else "")
    ]
    lines.append(
        f"{'':10} {'requests':>9} {'failures':>8} {'per s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}"
        f" {'max ms':>8} {'avg B':>7}"
    )
    for key in ("total", "tile", "info"):
        e = summary.get(key)
        if not e:
            continue
        lines.append(
            f"{key:10} {e['requests']:>9} {e['failures']:>8} {e['per_s']:>9} {e['p50_ms']!s:>7} "
            f"{e['p90_ms']!s:>7} {e['p99_ms']!s:>7} {e['max_ms']!s:>8} {e['avg_bytes']:>7}"
        )
    for err in summary.get("errors", [])[:5]:
        lines.append(f"error: {err['occurrences']} x {err['name']}: {err['error']}")
    if summary.get("exhausted"):
        lines.append("cold: the identifiers' tiles ran out before the end (give more --ids)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("locust") is None:
        print("loadtest: Locust is not installed (pip install -e '.[bench]', or pip install locust)", file=sys.stderr)
        return 2
    cmd = locust_command(args)
    print("loadtest: " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    if args.worker:
        return run(cmd, None)  # a worker ends when its master does
    summary_path = Path(args.summary_json)
    summary_path.unlink(missing_ok=True)
    wait = args.run_seconds + 120 + (300 if args.master else 0)
    code = run(cmd, wait)
    if not summary_path.exists():
        print(f"loadtest: no summary written ({summary_path}); Locust exited with {code}", file=sys.stderr)
        return code or 2
    summary = json.loads(summary_path.read_text())
    print(report(summary))
    print(f"summary: {summary_path}")
    return 1 if summary["total"]["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
