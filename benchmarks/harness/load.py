"""Deep-zoom load generator: the tile URLs OpenSeadragon requests, replayed by wrk for a bounded time.

    python -m benchmarks.harness.load http://127.0.0.1:8083/iiif/3 --ids a_00.tif a_01.tif \\
        --width 12000 --height 9000 --mode cold -c 8 -d 20 --pid 1234 --json-out runs.jsonl

BASE is the prefix an identifier is appended to (``/iiif`` for iipsrv, ``/iiif/3`` for
iiifserver); only loopback targets are accepted. Modes:

- ``cold``: every tile of every level of every identifier, once. Per identifier: its info.json
  (a viewer reads it before any tile), the opening view
  (every level that fits the 1600x1000 screen, coarsest first), then random views at levels chosen
  in proportion to the tiles they have left, each view's coarser parent tiles first and its own
  tiles centre-out; the views of the identifiers interleaved, as many people opening many images.
  ``wraps`` > 0 in the result means the list ran out and restarted: give more identifiers.
- ``hot``: 64 tiles (``--hot-set``) of a few middle-level views of the first identifier, shuffled
  and repeated, after one warm-up pass.
- ``info``: the identifiers' info.json, shuffled and repeated.
- ``--urls-file``: your own list (one path per line, absolute or relative to BASE, optionally TAB
  expected width TAB expected height): cold plays it once in order, hot shuffles and repeats it.

Tile URLs follow OpenSeadragon's IIIFTileSource: 256-px tiles, scale factors 1, 2, 4, ... to the
one-tile level, edge tiles ``ceil(region / scale)`` wide, sizes ``w,`` (or ``w,h``: ``--size-style``).

One result per run (printed, and appended as a JSON line with ``--json-out``): req/s (``rps``, and
``rps_ok``: 2xx/3xx only), p50/p90/p99/max latency (wrk's), errors by kind, bytes, the CPU split
(the server PIDs' CPU, wrk's, and the rest of the machine's, in % of one core; server CPU ms per
request), the servers' peak summed RSS, and a check of sample responses (status 200 and, where
the size is known, the JPEG's pixel size).

Owns URL generation, the wrk invocation and its output, and the measurements around it; knows no
server (it is given a base URL and a way to list the server's PIDs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import viewer_sessions as vs

LUA = Path(__file__).resolve().with_name("tile_load.lua")
SCREEN = (1600, 1000)
URL = tuple[str, int | None, int | None]  # path, expected width and height (None: not checked)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- URLs


def pyramid(width: int, height: int, tile: int = 256) -> vs.ImageInfo:
    return vs.ImageInfo(width, height, tile, tile, vs.default_scale_factors(width, height, tile, tile), version=3)


def tile_url(info: vs.ImageInfo, prefix: str, ident: str, scale: int, col: int, row: int, style: str) -> URL:
    t = vs.tile(info, scale, col, row, "w," if style == "w," else "w,h", image_url=prefix + vs.image_path(ident))
    return t.url, t.size[0], t.size[1]


def view_order(
    info: vs.ImageInfo, rng: random.Random, screen: tuple[int, int] = SCREEN
) -> list[list[tuple[int, int, int]]]:
    """One identifier's tiles as viewer steps: lists of (scale, col, row), every tile exactly once."""
    left = {s: {(c, r) for c in range(info.grid(s)[0]) for r in range(info.grid(s)[1])} for s in info.scales}
    steps: list[list[tuple[int, int, int]]] = []
    opening = []
    for s in sorted(info.scales, reverse=True):  # the opening view: coarsest level first
        lw, lh = info.level_size(s)
        if lw <= screen[0] and lh <= screen[1]:
            opening += [(s, c, r) for c, r in sorted(left[s])]
            left[s].clear()
    if opening:
        steps.append(opening)
    cols, rows = screen[0] // info.tile_width + 1, screen[1] // info.tile_height + 1
    while any(left.values()):
        scales = [s for s in info.scales if left[s]]
        s = rng.choices(scales, weights=[len(left[s]) for s in scales])[0]
        cx, cy = rng.choice(sorted(left[s]))
        x0, y0 = cx - cols // 2, cy - rows // 2
        step = []
        if 2 * s in left:  # the coarser tiles under the view arrive first
            parents = sorted(
                (c, r) for c in range(x0 // 2, (x0 + cols) // 2 + 1) for r in range(y0 // 2, (y0 + rows) // 2 + 1)
            )
            for c, r in parents:
                if (c, r) in left[2 * s]:
                    left[2 * s].discard((c, r))
                    step.append((2 * s, c, r))
        view = [(c, r) for c in range(x0, x0 + cols) for r in range(y0, y0 + rows) if (c, r) in left[s]]
        view.sort(key=lambda t: ((t[0] - cx) ** 2 + (t[1] - cy) ** 2, t))
        for c, r in view:
            left[s].discard((c, r))
            step.append((s, c, r))
        steps.append(step)
    return steps


def cold_urls(
    ids: Sequence[str],
    width: int,
    height: int,
    prefix: str,
    rng: random.Random,
    style: str = "w,",
    info_first: bool = False,
) -> list[URL]:
    """Every tile of every identifier once, the identifiers' viewer steps interleaved at random;
    with ``info_first``, each identifier's info.json just before its first tile, as a viewer asks."""
    info = pyramid(width, height)
    steps = {ident: view_order(info, rng) for ident in ids}
    nxt = dict.fromkeys(ids, 0)
    live = list(ids)
    out: list[URL] = []
    while live:
        ident = rng.choice(live)
        if info_first and nxt[ident] == 0:
            out.append((f"{prefix}{vs.image_path(ident)}/info.json", None, None))
        out += [tile_url(info, prefix, ident, s, c, r, style) for s, c, r in steps[ident][nxt[ident]]]
        nxt[ident] += 1
        if nxt[ident] == len(steps[ident]):
            live.remove(ident)
    return out


def hot_set(
    ident: str, width: int, height: int, prefix: str, rng: random.Random, n: int, style: str = "w,"
) -> list[URL]:
    """n distinct tiles of one identifier: views at the middle levels first (what many viewers share)."""
    info = pyramid(width, height)
    scales = info.scales
    middle = scales[len(scales) // 2]
    chosen: list[tuple[int, int, int]] = []
    steps = view_order(info, rng)
    for step in steps[1:]:
        if all(middle // 2 <= s <= middle * 2 for s, _, _ in step):
            chosen += step
        if len(chosen) >= n:
            break
    chosen += [t for step in steps for t in step if t not in chosen][: max(0, n - len(chosen))]
    return [tile_url(info, prefix, ident, s, c, r, style) for s, c, r in chosen[:n]]


def repeated(urls: Sequence[URL], rng: random.Random, total: int = 50_000) -> list[URL]:
    """urls shuffled again for each pass, about total entries in all."""
    out: list[URL] = []
    for _ in range(max(1, total // max(1, len(urls)))):
        batch = list(urls)
        rng.shuffle(batch)
        out += batch
    return out


def info_urls(ids: Sequence[str], prefix: str, rng: random.Random) -> list[URL]:
    return repeated([(f"{prefix}{vs.image_path(i)}/info.json", None, None) for i in ids], rng, 20_000)


def parse_url_list(text: str, prefix: str) -> list[URL]:
    """Lines 'path[TAB width TAB height]'; '#' comments and blank lines skipped; relative paths get prefix."""
    out: list[URL] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        path = parts[0].strip()
        if not path.startswith("/"):
            path = f"{prefix}/{path}"
        sized = len(parts) >= 3 and parts[1].strip() and parts[2].strip()
        out.append((path, int(parts[1]) if sized else None, int(parts[2]) if sized else None))
    return out


# ---------------------------------------------------------------- wrk output


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The WRK_RESULT line of tile_load.lua's done() as a dict; ValueError if there is none."""
    for line in stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            parsed = json.loads(line.removeprefix("WRK_RESULT "))
            if not isinstance(parsed, dict):
                break
            return parsed
    raise ValueError("wrk printed no WRK_RESULT line:\n" + stdout[-2000:])


def read_latencies(path: Path, threads: int) -> list[tuple[int, float]]:
    """``tile_load.lua``'s per-request latencies: (line of the URL list, ms) for each timed request.

    Thread ``t`` of ``threads`` sent lines ``t, t + threads, ...``; its cursor counts them from 1.
    """
    out: list[tuple[int, float]] = []
    for line in path.read_text().splitlines():
        thread, cursor, micros = (int(x) for x in line.split())
        out.append(((cursor - 1) * threads + thread, micros / 1000))
    return out


def request_percentiles(timed: Sequence[tuple[int, float]], kinds: Sequence[str]) -> dict[str, dict[str, float]]:
    """p50, p90, p99 and max (ms) and the count of each request's own latency, over all (``all``)
    and per kind (``kinds[line]``); nearest rank below, as ``quantile`` says. ``slowest``: how many
    of the group's requests took at least the p99 of all: which kinds the slowest 1 % are."""
    groups: dict[str, list[float]] = {"all": []}
    for line, ms in timed:
        groups["all"].append(ms)
        groups.setdefault(kinds[line % len(kinds)], []).append(ms)
    cut = quantile(groups["all"], 0.99) if groups["all"] else 0.0
    return {
        name: {
            "n": len(values),
            **{f"p{q}": round(quantile(values, q / 100), 2) for q in (50, 90, 99)},
            "max": round(max(values), 2),
            "slowest": sum(ms >= cut for ms in values),
        }
        for name, values in groups.items()
        if values
    }


def window_percentiles(
    timed: Sequence[tuple[int, float]], threads: int, duration: float, window: float = 5.0
) -> list[dict[str, float]]:
    """Each request's own latency by when it ended: for each ``window`` seconds of the run, how many
    requests ended then (``n``), their p99, and how many took at least the p99 of all
    (``slowest``): whether the slowest 1 % come from one part of the run (a start, while caches
    and opened images fill) or from all of it.

    A request ends at the sum of its thread's latencies up to it (``tile_load.lua`` times from one
    ``request()`` to the next, and a thread sends its next request at once); a thread's untimed
    requests count nothing. Requests ending after ``duration`` count in the last window.
    """
    if not timed or threads < 1 or duration <= 0 or window <= 0:
        return []
    by_thread: dict[int, list[tuple[int, float]]] = {}
    for line, ms in timed:
        by_thread.setdefault(line % threads, []).append((line, ms))
    last = max(0, math.ceil(duration / window) - 1)
    buckets: list[list[float]] = [[] for _ in range(last + 1)]
    for rows in by_thread.values():
        clock = 0.0
        for _, ms in sorted(rows):  # a thread's lines in the order it sent them
            clock += ms
            buckets[min(last, int(clock / 1000 / window))].append(ms)
    cut = quantile([ms for _, ms in timed], 0.99)
    return [
        {
            "from": k * window,
            "to": min(duration, (k + 1) * window),
            "n": len(values),
            "p99": round(quantile(values, 0.99), 2) if values else 0.0,
            "slowest": sum(ms >= cut for ms in values),
        }
        for k, values in enumerate(buckets)
    ]


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by rank (nearest rank below)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- measurements


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def machine_ticks() -> tuple[int, int]:
    """(all, idle) ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values[:8]), values[3] + values[4]


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class PeakRss:
    """Samples the summed RSS of the server PIDs twice a second in a thread; keeps the peak."""

    pids: Callable[[], Sequence[int]]
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        def sample() -> None:
            while True:
                self.peak = max(self.peak, sum(rss_bytes(p) for p in self.pids()))
                if self._stop.wait(0.5):
                    return

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


# ---------------------------------------------------------------- checks


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first SOF marker, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            at += 1
            continue
        marker = data[at + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker == 0xFF:
            at += 1  # fill byte
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            at += 2  # markers without a length
        else:
            at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return None


def check_response(
    path: str, status: int, body: bytes, width: int | None, height: int | None, slack: int
) -> str | None:
    """What is wrong with one response, or None. Width within slack, height within 1 (servers round)."""
    if status != 200:
        return f"status {status}"
    if path.endswith("info.json"):
        try:
            doc = json.loads(body)
        except ValueError:
            return "info.json is not JSON"
        return None if isinstance(doc, dict) and doc.get("width") else "info.json without width"
    size = jpeg_size(body)
    if size is None:
        return "not a JPEG" if path.endswith((".jpg", ".jpeg")) else None
    if width is not None and height is not None and (abs(size[0] - width) > slack or abs(size[1] - height) > 1):
        return f"got {size[0]}x{size[1]}, want {width}x{height}"
    return None


def check_sample(
    origin: str, urls: Sequence[URL], n: int, rng: random.Random, slack: int = 0
) -> tuple[int, list[list[str]]]:
    """Fetch n of urls again; (how many were checked, [[path, problem], ...])."""
    bad = []
    sample = rng.sample(list(urls), min(n, len(urls)))
    for path, width, height in sample:
        try:
            with urllib.request.urlopen(origin + path, timeout=60) as response:
                problem = check_response(path, response.status, response.read(), width, height, slack)
        except urllib.error.HTTPError as exc:
            problem = f"status {exc.code}"
        except OSError as exc:
            problem = repr(exc)
        if problem:
            bad.append([path, problem])
    return len(sample), bad


# ---------------------------------------------------------------- a run


@dataclass
class Workload:
    """What to replay: the URL list and, for hot runs, the warm-up set."""

    mode: str
    urls: list[URL]
    warm: list[URL] = field(default_factory=list)
    ids: int = 0
    width: int | None = None
    height: int | None = None
    size_style: str = "w,"
    from_file: bool = False


def make_workload(
    base: str,
    mode: str,
    ids: Sequence[str] = (),
    width: int | None = None,
    height: int | None = None,
    *,
    urls_file: Path | None = None,
    size_style: str = "w,",
    hot_n: int = 64,
    seed: int = 1,
) -> Workload:
    rng = random.Random(seed)
    prefix = urllib.parse.urlsplit(base).path.rstrip("/")
    if urls_file is not None:
        listed = parse_url_list(urls_file.read_text(), prefix)
        if not listed:
            raise ValueError(f"no URLs in {urls_file}")
        if mode == "hot":
            return Workload(mode, repeated(listed, rng), list(dict.fromkeys(listed)), len(ids), from_file=True)
        return Workload(mode, listed, ids=len(ids), from_file=True)
    if not ids:
        raise ValueError("no identifiers")
    if mode == "info":
        return Workload(mode, info_urls(ids, prefix, rng), ids=len(ids), width=width, height=height)
    if width is None or height is None:
        width, height = fetch_size(base, ids[0])
    if mode == "cold":  # as viewers open images: info.json, then the tiles
        urls = cold_urls(ids, width, height, prefix, rng, size_style, info_first=True)
        return Workload(mode, urls, [], len(ids), width, height, size_style)
    hot = hot_set(ids[0], width, height, prefix, rng, hot_n, size_style)
    return Workload(mode, repeated(hot, rng), hot, len(ids), width, height, size_style)


def fetch_size(base: str, ident: str) -> tuple[int, int]:
    with urllib.request.urlopen(f"{base.rstrip('/')}{vs.image_path(ident)}/info.json", timeout=30) as response:
        info = json.loads(response.read())
    return int(info["width"]), int(info["height"])


def check_loopback(base: str) -> str:
    """The origin (scheme://host:port) of base; ValueError unless it is on this machine."""
    parts = urllib.parse.urlsplit(base)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"only loopback targets are allowed, not {parts.hostname}")
    return f"{parts.scheme}://{parts.netloc}"


def result_record(
    wrk: dict[str, Any],
    work: Workload,
    *,
    label: str,
    concurrency: int,
    base: str,
    pids: Sequence[int],
    server_s: float,
    wrk_s: float,
    wall_s: float,
    busy_pct: float,
    ncpu: int,
    peak_rss: int,
) -> dict[str, Any]:
    """One JSON line: wrk's figures and the measurements around them (the fields summary.py reads)."""
    dur = wrk["duration_us"] / 1e6 or 1e-9
    n = wrk["requests"]
    errors = sum(wrk[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    return {
        "label": label,
        "mode": work.mode,
        "concurrency": concurrency,
        "duration_s": round(dur, 2),
        "base": base,
        "ids": work.ids,
        "size_style": work.size_style,
        "urls_file": work.from_file,
        "width": work.width,
        "height": work.height,
        "requests": n,
        "rps": round(n / dur, 1),
        "rps_ok": round((n - wrk["err_status"]) / dur, 1),
        "p50_ms": wrk["lat_p50_us"] / 1000,
        "p90_ms": wrk["lat_p90_us"] / 1000,
        "p99_ms": wrk["lat_p99_us"] / 1000,
        "max_ms": wrk["lat_max_us"] / 1000,
        "mean_ms": round(wrk["lat_mean_us"] / 1000, 2),
        "errors": errors,
        "err_detail": {k: v for k, v in wrk.items() if k.startswith("err_")},
        "bytes": wrk["bytes"],
        "MBps": round(wrk["bytes"] / dur / 1e6, 2),
        "avg_bytes": round(wrk["bytes"] / n) if n else 0,
        "unique_urls": len({u[0] for u in work.urls}),
        "list_len": len(work.urls),
        "wraps": wrk["wraps"],
        "server_pids": list(pids),
        "server_cpu_pct": round(100 * server_s / wall_s, 1),
        "wrk_cpu_pct": round(100 * wrk_s / wall_s, 1),
        "machine_busy_pct": round(busy_pct, 1),
        "ncpu": ncpu,
        # everything else on the machine (other processes, the kernel), in % of one core
        "other_cpu_pct": round(busy_pct * ncpu - 100 * (server_s + wrk_s) / wall_s, 1),
        "server_cpu_ms_per_req": round(1000 * server_s / n, 2) if n else None,
        # the same in microseconds, precise enough for memo hits (tens of microseconds each)
        "server_cpu_us_per_req": round(1e6 * server_s / n, 1) if n else None,
        "server_peak_rss_mb": round(peak_rss / 2**20),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(
    base: str,
    work: Workload,
    *,
    concurrency: int = 8,
    duration: int = 20,
    pids: Callable[[], Sequence[int]] = lambda: (),
    label: str = "",
    check: int = 20,
    timeout: int = 30,
    seed: int = 1,
    kinds: Sequence[str] | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """One bounded wrk run of work against base; the result record (see result_record).

    ``kinds`` (one label per line of ``work.urls``): also time each request on its own (one
    connection per wrk thread, ``tile_load.lua``) and add ``request_latency``: its percentiles
    over all requests and per label (``request_percentiles``), and by 5-second window of the run
    (``request_windows``, ``window_percentiles``).

    ``rate`` (requests/s, with ``kinds``): an open loop instead. The ``concurrency`` connections
    send a Poisson stream of that rate whatever the server does, and each request is timed from
    its scheduled moment (``tile_load.lua``): the latency visitors see at that load, where a closed
    loop measures how a saturated server shares its waiting. No windows (a request's end is not
    the sum of its thread's latencies then).
    """
    if rate is not None and (kinds is None or rate <= 0):
        raise ValueError("an open-loop run needs kinds and a positive rate")
    origin = check_loopback(base)
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise RuntimeError("wrk not found (apt-get install wrk)")
    for path, _, _ in work.warm:  # hot: every URL of the set once before the clock starts
        try:
            with urllib.request.urlopen(origin + path, timeout=60) as response:
                response.read()
        except OSError:
            pass
    threads = concurrency if kinds is not None else 1
    with tempfile.NamedTemporaryFile("w", prefix="iiif-load-", suffix=".txt", delete=False) as f:
        if threads == 1:  # else each thread reads its own share, NAME.t, below; NAME is their stem
            f.writelines(u[0] + "\n" for u in work.urls)
    env = dict(os.environ, URLS_FILE=f.name, WRK_THREADS=str(threads))
    parts = [Path(f"{f.name}.{t}") for t in range(threads)] if threads > 1 else []
    for t, part in enumerate(parts):
        part.write_text("".join(u[0] + "\n" for u in work.urls[t::threads]))
    if parts:
        env["URLS_SPLIT"] = "1"
    if kinds is not None:
        env["LATENCIES_FILE"] = f"{f.name}.latencies"
    env.pop("RATE_PER_THREAD", None)
    if rate is not None:
        env["RATE_PER_THREAD"] = f"{rate / threads:.6f}"
    try:
        server_pids = sorted(set(pids()))
        before = {p: cpu_ticks(p) for p in server_pids}
        m_before = machine_ticks()
        ru_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        with PeakRss(pids) as rss:
            proc = subprocess.run(
                [
                    wrk_bin,
                    "-t",
                    str(threads),
                    "-c",
                    str(concurrency),
                    "-d",
                    f"{duration}s",
                    "--timeout",
                    f"{timeout}s",
                    "-s",
                    str(LUA),
                    origin,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=duration + timeout + 30,
                check=False,
            )
        wall = time.monotonic() - t0
        ru_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        m_after = machine_ticks()
        after = {p: cpu_ticks(p) for p in server_pids}
        timed = read_latencies(Path(f"{f.name}.latencies"), threads) if kinds is not None else []
    finally:
        os.unlink(f.name)
        for part in [*parts, Path(f"{f.name}.latencies")]:
            part.unlink(missing_ok=True)
    wrk = parse_wrk(proc.stdout + "\n" + proc.stderr)
    server_s = (
        sum((after[p] or 0) - (before[p] or 0) for p in server_pids if before[p] is not None and after[p] is not None)
        / CLK_TCK
    )
    wrk_s = (ru_after.ru_utime - ru_before.ru_utime) + (ru_after.ru_stime - ru_before.ru_stime)
    total, idle = m_after[0] - m_before[0], m_after[1] - m_before[1]
    record = result_record(
        wrk,
        work,
        label=label,
        concurrency=concurrency,
        base=base,
        pids=server_pids,
        server_s=server_s,
        wrk_s=wrk_s,
        wall_s=wall,
        busy_pct=100.0 * (total - idle) / total if total else 0.0,
        ncpu=os.cpu_count() or 1,
        peak_rss=rss.peak,
    )
    if kinds is not None:
        record["request_latency"] = request_percentiles(timed, kinds)
        record["request_windows"] = window_percentiles(timed, threads, duration) if rate is None else []
        if rate is not None:
            record["rate"] = rate
        overall = record["request_latency"].get("all", {})
        record.update(request_p50_ms=overall.get("p50"), request_p99_ms=overall.get("p99"))
    if check:
        sent = work.urls[: max(1, wrk["requests"])]
        n, bad = check_sample(origin, sent, check, random.Random(seed), slack=1 if work.from_file else 0)
        record.update(checked=n, check_failures=len(bad))
        if bad:
            record["check_examples"] = bad[:3]
    return record


def describe(r: dict[str, Any]) -> str:
    """One human line per run."""
    return (
        f"{r['label']:>24} {r['mode']:>4} c={r['concurrency']:<3} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
        f"p99 {r['p99_ms']:7.1f} ms  err {r['errors']}  {r['avg_bytes']} B/req  cpu: server {r['server_cpu_pct']}% "
        f"wrk {r['wrk_cpu_pct']}% other {r['other_cpu_pct']}%  rss {r['server_peak_rss_mb']} MB  wraps {r['wraps']}"
        + (f"  check {r['checked'] - r['check_failures']}/{r['checked']} ok" if "checked" in r else "")
    )


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="IIIF prefix, e.g. http://127.0.0.1:8083/iiif/3")
    ap.add_argument("--ids", nargs="+", default=[], help="identifiers (all of one image size)")
    ap.add_argument("--width", type=int, help="image width (default: from info.json)")
    ap.add_argument("--height", type=int, help="image height (default: from info.json)")
    ap.add_argument("--urls-file", type=Path, help="replay these paths instead of generated tile URLs")
    ap.add_argument("--mode", choices=["cold", "hot", "info"], default="cold")
    ap.add_argument("--size-style", choices=["w,", "w,h"], default="w,")
    ap.add_argument("--hot-set", type=int, default=64)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("-d", "--duration", type=int, default=20, help="seconds (the run is bounded)")
    ap.add_argument("--pid", type=int, action="append", default=[], help="a server PID for the CPU split (repeatable)")
    ap.add_argument("--check", type=int, default=20, help="re-fetch and verify N sample URLs after the run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--label", default="")
    ap.add_argument("--json-out", type=Path, help="append the result as a JSON line")
    ap.add_argument("--dump-urls", type=Path, help="write the URL list here and exit")
    args = ap.parse_args(list(argv) if argv is not None else None)
    check_loopback(args.base)
    work = make_workload(
        args.base,
        args.mode,
        args.ids,
        args.width,
        args.height,
        urls_file=args.urls_file,
        size_style=args.size_style,
        hot_n=args.hot_set,
        seed=args.seed,
    )
    if args.dump_urls:
        args.dump_urls.write_text("".join(u[0] + "\n" for u in work.urls))
        print(f"{len(work.urls)} URLs -> {args.dump_urls}")
        return 0
    pids = args.pid
    record = run(
        args.base,
        work,
        concurrency=args.concurrency,
        duration=args.duration,
        pids=lambda: pids,
        label=args.label,
        check=args.check,
        seed=args.seed,
    )
    print(describe(record))
    if args.json_out:
        append_jsonl(args.json_out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
