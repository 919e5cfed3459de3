"""Soak benchmark: memory, descriptors and errors of iiifserver under a long mixed load, and tile
latency while large renders flood the server.

    python benchmarks/soak.py                   # 10 minutes of soak, then the flood phase
    python benchmarks/soak.py --minutes 3 --label short
    python benchmarks/soak.py --report benchmarks/results/FILE-soak.json   # rebuild the .md

1. Images (kept under ``$BENCH_ROOT/soak-images`` for later runs): the harness's 12000x9000 Q85
   pyramid and ``--copies`` real copies of it (distinct files: own inode, size and mtime), and a
   40-megapixel single-strip TIFF (deflate), the costliest source a default server accepts.
2. ``iiifserver serve --workers 2`` with default settings (``IIIFSERVER_ARGS`` adds arguments) on
   127.0.0.1 (``--port``), its caches empty.
3. Soak: one wrk at ``-c`` connections (32) for ``--minutes`` replays a mixed list: 70 % stored
   tiles (every tile of every pyramid, viewer order), 25 % unaligned regions (never a stored
   tile, mostly distinct, so they render), 5 % info.json. Every ``--sample`` seconds each worker's
   RSS and open file descriptors are read from ``/proc``.
4. Flood: tile latency of a quiet run (wrk, c=8, ``--flood-seconds``) against the same while a
   second wrk (c=8) floods full-size renders (``full/W,`` of the pyramids at distinct widths near
   the server's area limit, and tiles of the single-strip TIFF).

Targets: no 5xx; per worker, RSS growth over the second half of the soak under 10 %; descriptors
flat (second-half growth within max(8, 10 %)); tile p99 while flooded within 3x of quiet. Results:
``benchmarks/results/<date>-<host>-<cpu>-soak[-label].{json,md}``. Latencies are wrk's; on a
machine shared with other work they are noisy, the memory figures are not.

Bounded: every wrk has ``-d``, the URL lists have at most ``--max-lines`` lines; the server is
started and stopped by PID (also on error and Ctrl-C); loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import viewer_sessions as vs
from benchmarks.harness import images, load, servers
from benchmarks.harness.machine import cpu_model, slug

SOAK_LUA = Path(__file__).resolve().parent / "harness" / "soak_load.lua"
RESULTS = Path(__file__).resolve().parent / "results"
STRIP_NAME = "strip_40mp.tif"
STRIP_SIZE = (7296, 5472)  # 39.9 megapixels: under the default plain_max_pixels (40 M)
GROWTH_TARGET_PCT = 10.0
FLOOD_TARGET_RATIO = 3.0
SHARES = {"tile": 0.70, "region": 0.25, "info": 0.05}


# ---------------------------------------------------------------- pure parts


def mixed_urls(
    tiles: Sequence[str],
    regions: Sequence[str],
    infos: Sequence[str],
    total: int,
    rng: random.Random,
    shares: Mapping[str, float] = SHARES,
) -> list[str]:
    """``total`` paths drawn by ``shares``; each kind's list is walked in order (tiles and info
    cycling, regions used once each as long as they last, then cycling)."""
    kinds = [k for k in ("tile", "region", "info") if shares.get(k, 0) > 0]
    pools = {"tile": tiles, "region": regions, "info": infos}
    cursor = dict.fromkeys(kinds, 0)
    out: list[str] = []
    for kind in rng.choices(kinds, weights=[shares[k] for k in kinds], k=total):
        pool = pools[kind]
        out.append(pool[cursor[kind] % len(pool)])
        cursor[kind] += 1
    return out


def second_half(samples: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (time, value) samples from half the run's length on."""
    if not samples:
        return []
    half = samples[-1][0] / 2
    return [s for s in samples if s[0] >= half]


def growth_pct(samples: Sequence[tuple[float, float]], window: int = 3) -> float:
    """Growth of a series over its second half, in %: the mean of the last ``window`` samples
    against the mean of the first ``window`` samples of the second half (averaged, so one sample
    caught mid-render does not decide it)."""
    tail = second_half(samples)
    if len(tail) < 2:
        return 0.0
    n = max(1, min(window, len(tail) // 2))
    start = sum(v for _, v in tail[:n]) / n
    end = sum(v for _, v in tail[-n:]) / n
    return 100.0 * (end - start) / start if start else 0.0


def fd_drift(samples: Sequence[tuple[float, float]]) -> int:
    """Open descriptors at the end less at the start of the second half."""
    tail = second_half(samples)
    return int(tail[-1][1] - tail[0][1]) if tail else 0


def fds_flat(samples: Sequence[tuple[float, float]]) -> bool:
    """No leak: the second half ends with at most max(8, 10 %) more descriptors than it began
    (fewer is fine: opened levels and idle connections are let go)."""
    tail = second_half(samples)
    if not tail:
        return True
    return fd_drift(samples) <= max(8, 0.1 * tail[0][1])


def per_worker(samples: Sequence[Mapping[str, Any]], field: str) -> dict[str, list[tuple[float, float]]]:
    """``{pid: [(t, value), ...]}`` from samples ``{"t": s, "workers": {pid: {"rss_mb", "fds"}}}``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for pid, w in s["workers"].items():
            out.setdefault(str(pid), []).append((float(s["t"]), float(w[field])))
    return out


def verdicts(result: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target the result has data for."""
    out: list[tuple[str, str, bool]] = []
    soak = result.get("soak")
    if soak:
        s5 = int(soak["wrk"].get("status_5xx", 0))
        out.append(("no 5xx in the soak", f"{s5} of {soak['wrk']['requests']}", s5 == 0))
        rss = per_worker(soak["samples"], "rss_mb")
        fds = per_worker(soak["samples"], "fds")
        for pid in sorted(rss):
            g = growth_pct(rss[pid])
            target = f"worker {pid}: RSS growth, second half < {GROWTH_TARGET_PCT:g} %"
            out.append((target, f"{g:+.1f} %", g < GROWTH_TARGET_PCT))
        for pid in sorted(fds):
            out.append((f"worker {pid}: open descriptors flat", f"drift {fd_drift(fds[pid]):+d}", fds_flat(fds[pid])))
    flood = result.get("flood")
    if flood:
        rounds = flood_rounds(flood)
        ratios = sorted(flood_ratio(r) for r in rounds)
        ratio = statistics.median(ratios)
        middle = min(rounds, key=lambda r: abs(flood_ratio(r) - ratio))
        quiet, loud = middle["quiet"]["lat_p99_us"], middle["flooded"]["lat_p99_us"]
        each = f"; rounds {', '.join(f'{r:.2f}x' for r in ratios)}" if len(rounds) > 1 else ""
        out.append(
            (
                f"tile p99 flooded <= {FLOOD_TARGET_RATIO:g}x quiet" + (" (median of rounds)" if each else ""),
                f"{loud / 1000:.1f} vs {quiet / 1000:.1f} ms ({ratio:.2f}x{each})",
                ratio <= FLOOD_TARGET_RATIO,
            )
        )
    return out


def flood_rounds(flood: dict[str, Any]) -> list[dict[str, Any]]:
    """The quiet/flooded pairs of a flood phase (results before rounds existed hold one)."""
    return flood.get("rounds") or [{name: flood[name] for name in ("quiet", "flooded", "flood")}]


def flood_ratio(one: dict[str, Any]) -> float:
    quiet, loud = one["quiet"]["lat_p99_us"], one["flooded"]["lat_p99_us"]
    return loud / quiet if quiet else float("inf")


def _curve(series: Sequence[tuple[float, float]], points: int = 12) -> str:
    if not series:
        return ""
    step = max(1, len(series) // points)
    picked = list(series[::step])
    if picked[-1] != series[-1]:
        picked.append(series[-1])
    return ", ".join(f"{t:.0f} s {v:.0f}" for t, v in picked)


def report_md(result: Mapping[str, Any]) -> str:
    """The results page: machine, what ran, the targets, memory and descriptors per worker over time."""
    lines = [
        f"# Soak: {result.get('date', '')}",
        "",
        f"- machine: {result.get('host', '')}, {result.get('cpu', '')}, {result.get('ncpu', '')} CPUs",
        f"- server: {result.get('server', '')}",
        f"- code: {result.get('code', '')}",
        f"- images: {result.get('images_desc', '')}",
    ]
    soak = result.get("soak")
    if soak:
        w = soak["wrk"]
        lines.append(
            f"- soak: {soak['seconds']:.0f} s at c={soak['concurrency']}, {w['requests']} requests "
            f"({w['requests'] / max(1e-9, w['duration_us'] / 1e6):.0f} req/s; 2xx {w.get('status_2xx', 0)}, "
            f"3xx {w.get('status_3xx', 0)}, 4xx {w.get('status_4xx', 0)}, 5xx {w.get('status_5xx', 0)}; socket "
            f"errors {w['err_connect'] + w['err_read'] + w['err_write'] + w['err_timeout']}; list wraps {w['wraps']}), "
            f"p50 {w['lat_p50_us'] / 1000:.1f} ms, p99 {w['lat_p99_us'] / 1000:.1f} ms"
        )
    flood = result.get("flood")
    if flood:
        rounds = flood_rounds(flood)
        got = sum(r["flood"]["requests"] for r in rounds)
        failed = sum(r["flood"].get("status_5xx", 0) for r in rounds)
        lines.append(
            f"- flood: {len(rounds)} round(s) of tiles at c={flood['concurrency']} for {flood['seconds']} s, "
            f"quiet then while a second wrk (c={flood['concurrency']}) requests {flood['flood_desc']}; the flood got "
            f"{got} responses (5xx {failed}); the verdict takes the median round's ratio"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'PASS' if ok else 'FAIL'} |" for t, m, ok in verdicts(result)]
    if soak:
        lines += ["", "## Memory and descriptors per worker", "", "| worker | RSS, MB over time | descriptors |"]
        lines += ["|---|---|---|"]
        rss, fds = per_worker(soak["samples"], "rss_mb"), per_worker(soak["samples"], "fds")
        for pid in sorted(rss):
            f = fds.get(pid, [])
            span = f"{min(v for _, v in f):.0f}-{max(v for _, v in f):.0f}" if f else ""
            lines.append(f"| {pid} | {_curve(rss[pid])} | {span} |")
    if flood:
        lines += ["", "## Tile latency, quiet and flooded", "", "| run | req/s | p50 ms | p99 ms | max ms |"]
        lines += ["|---|---|---|---|---|"]
        rounds = flood_rounds(flood)
        for number, one in enumerate(rounds, 1):
            for name in ("quiet", "flooded", "flood"):
                r = one[name]
                rps = r["requests"] / max(1e-9, r["duration_us"] / 1e6)
                run = f"{number}: {name}" if len(rounds) > 1 else name
                lines.append(
                    f"| {run} | {rps:.0f} | {r['lat_p50_us'] / 1000:.1f} | {r['lat_p99_us'] / 1000:.1f} | "
                    f"{r['lat_max_us'] / 1000:.1f} |"
                )
    lines += ["", "Latencies are wrk's (corrected for coordinated omission); memory is VmRSS from /proc.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- running


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler:
    """Every ``interval`` seconds, each worker's RSS and open descriptors, in a thread."""

    def __init__(self, workers: Callable[[], Sequence[int]], interval: float) -> None:
        self.workers = workers
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def _take(self) -> None:
        workers = {str(p): {"rss_mb": round(load.rss_bytes(p) / 2**20, 1), "fds": open_fds(p)} for p in self.workers()}
        self.samples.append({"t": round(time.monotonic() - self._t0, 1), "workers": workers})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def __enter__(self) -> Sampler:
        self._t0 = time.monotonic()
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()


def wrk(origin: str, urls: Sequence[str], concurrency: int, seconds: int, timeout: int = 30) -> dict[str, Any]:
    """One bounded wrk run replaying ``urls`` (soak_load.lua); its WRK_RESULT fields."""
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise RuntimeError("wrk not found (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", prefix="iiif-soak-", suffix=".txt", delete=False) as f:
        f.writelines(u + "\n" for u in urls)
    try:
        cmd = [wrk_bin, "-t", "1", "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", f"{timeout}s"]
        proc = subprocess.run(
            [*cmd, "-s", str(SOAK_LUA), origin],
            env=dict(os.environ, URLS_FILE=f.name, WRK_THREADS="1", TILE_LOAD_LUA=str(load.LUA)),
            capture_output=True,
            text=True,
            timeout=seconds + timeout + 30,
            check=False,
        )
    finally:
        os.unlink(f.name)
    return load.parse_wrk(proc.stdout + "\n" + proc.stderr)


def make_images(root: Path, copies: int) -> tuple[list[str], str]:
    """The pyramid and its copies (identifiers), and the single-strip TIFF; made once."""
    big = images.make(root, "big", 85)
    made = images.make_aliases(big, copies, copies=True)
    strip = root / STRIP_NAME
    if not strip.exists():
        import pyvips
        import tifffile

        w, h = STRIP_SIZE
        pixels = pyvips.Image.tiffload(str(big)).crop(0, 0, w, h).numpy()
        part = strip.with_name(strip.name + ".part")
        tifffile.imwrite(part, pixels, photometric="rgb", rowsperstrip=h, compression="zlib")
        os.replace(part, strip)
    return [big.name, *(p.name for p in made)], strip.name


def build_lists(
    ids: Sequence[str], strip: str, prefix: str, max_lines: int, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """(mixed soak list, tile list for the flood phase, flood list)."""
    rng = random.Random(seed)
    w, h = images.SIZES["big"]
    tiles = [u[0] for u in load.cold_urls(ids, w, h, prefix, rng)]
    info = {"width": w, "height": h, "tiles": [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8, 16, 32, 64]}]}
    n_regions = int(max_lines * SHARES["region"]) + 1
    per_id = n_regions // len(ids) + 1
    by_id = [
        [r.url for r in vs.unaligned_requests(info, per_id, seed=f"{seed}:{i}", image_url=prefix + vs.image_path(i))]
        for i in ids
    ]
    regions = [u for group in zip(*by_id, strict=True) for u in group]
    infos = [f"{prefix}{vs.image_path(i)}/info.json" for i in ids]
    mixed = mixed_urls(tiles, regions, infos, max_lines, rng)
    flood_tiles = list(tiles)
    rng.shuffle(flood_tiles)
    # Renders no cache can answer: the pyramids at many widths near the area limit (25 MP), and
    # random tiles of the strip image (each decodes the whole 40 MP strip).
    flood: list[str] = []
    sw, sh = STRIP_SIZE
    for n in range(2000):
        if n % 2:
            ident = ids[n // 2 % len(ids)]
            flood.append(f"{prefix}{vs.image_path(ident)}/full/{rng.randint(2500, 5700)},/0/default.jpg")
        else:
            x, y = rng.randrange(0, sw - 256), rng.randrange(0, sh - 256)
            flood.append(f"{prefix}{vs.image_path(strip)}/{x},{y},256,256/256,/0/default.jpg")
    return mixed, flood_tiles, flood


def code_version() -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "iiifserver"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (+ uncommitted changes under iiifserver/)" if dirty else "")


def write_results(result: Mapping[str, Any], out_dir: Path, label: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result['day']}-{slug(result['host'])}-{slug(result['cpu'])}-soak" + (f"-{label}" if label else "")
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    json_path.with_suffix(".md").write_text(report_md(result))
    return json_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS/descriptor samples")
    ap.add_argument("--flood-seconds", type=int, default=30, help="length of each flood-phase run; 0: no flood")
    ap.add_argument("--flood-rounds", type=int, default=3, help="quiet/flooded pairs; the verdict is their median")
    ap.add_argument("--no-soak", action="store_true", help="only the flood phase")
    ap.add_argument("--copies", type=int, default=4, help="copies of the pyramid besides itself (distinct files)")
    ap.add_argument("--max-lines", type=int, default=300_000, help="length of the soak's URL list")
    ap.add_argument("--port", type=int, default=8086)
    ap.add_argument("--images", type=Path, help="image folder (default $BENCH_ROOT/soak-images)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--label", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--report", type=Path, help="rebuild the .md of a result .json and exit")
    args = ap.parse_args(argv)

    if args.report:
        stored = json.loads(args.report.read_text())
        args.report.with_suffix(".md").write_text(report_md(stored))
        print(report_md(stored))
        return 0

    root = args.images or servers.bench_root() / "soak-images"
    t0 = time.monotonic()
    ids, strip = make_images(root, args.copies)
    print(f"images ready in {root} ({time.monotonic() - t0:.0f} s): {len(ids)} pyramids and {strip}", file=sys.stderr)
    extra = os.environ.get("IIIFSERVER_ARGS", "").split()
    server = servers.IiifServer(
        images=root, port=args.port, workers=2, args=extra, run_dir=servers.bench_root() / "run" / "soak"
    )
    prefix = urllib.parse.urlsplit(server.base).path.rstrip("/")
    mixed, flood_tiles, flood = build_lists(ids, strip, prefix, args.max_lines, args.seed)
    now = datetime.now()
    result: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "day": now.strftime("%Y-%m-%d"),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "ncpu": os.cpu_count(),
        "code": code_version(),
        "server": " ".join(["iiifserver serve --workers 2", *extra]),
        "images_desc": f"{len(ids)} distinct 12000x9000 Q85 pyramids (256-px JPEG tiles), a {STRIP_SIZE[0]}x"
        f"{STRIP_SIZE[1]} single-strip deflate TIFF",
        "command": " ".join(sys.argv),
    }

    def workers() -> list[int]:
        main_pid = servers.live(servers.read_pids(server.run_dir / "iiifserver.pid"))
        return servers.children(main_pid[0]) if main_pid else []

    origin = load.check_loopback(server.base)
    try:
        server.start()
        if not args.no_soak:
            seconds = max(1, round(args.minutes * 60))
            print(f"soak: {seconds} s at c={args.concurrency}, workers {workers()}", file=sys.stderr)
            with Sampler(workers, args.sample) as sampler:
                res = wrk(origin, mixed, args.concurrency, seconds)
            samples = sampler.samples
            result["soak"] = {"seconds": seconds, "concurrency": args.concurrency, "wrk": res, "samples": samples}
        if args.flood_seconds > 0:
            n = args.flood_seconds
            rounds = []
            for number in range(1, max(1, args.flood_rounds) + 1):
                print(f"flood phase, round {number}: 2 x {n} s", file=sys.stderr)
                quiet = wrk(origin, flood_tiles, 8, n)
                box: dict[str, Any] = {}
                flooder = threading.Thread(target=lambda box=box: box.update(wrk(origin, flood, 8, n + 4)))
                flooder.start()
                time.sleep(2)  # the flood is under way before the tiles are timed
                flooded = wrk(origin, flood_tiles[::-1], 8, n)
                flooder.join()
                rounds.append({"quiet": quiet, "flooded": flooded, "flood": box})
                time.sleep(3)  # the flood's last renders end before the next quiet run
            ratio = statistics.median(flood_ratio(r) for r in rounds)
            middle = min(rounds, key=lambda r: abs(flood_ratio(r) - ratio))
            result["flood"] = {
                "seconds": n,
                "concurrency": 8,
                **middle,  # the median round, where earlier readers look
                "rounds": rounds,
                "flood_desc": "full/W, of the pyramids (W 2500-5700) and random tiles of the single-strip TIFF",
            }
    finally:
        server.stop()
    path = write_results(result, args.results, args.label)
    print(report_md(result))
    print(f"results: {path} and {path.with_suffix('.md')}", file=sys.stderr)
    return 0 if all(ok for _, _, ok in verdicts(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
