"""Locust load test: OpenSeadragon-like viewer sessions against any IIIF Image API 2 or 3 server.

Every simulated user is one viewer connection: it reads an image's info.json, then requests the
tiles ``viewer_sessions`` says OpenSeadragon would request while a person pans and zooms, one after
the other (a browser opens about six connections per viewer: count six users per person).

Modes (``--mode``):

``cold``
    All users of a process share one stream of steps over all ``--ids`` in which every tile URL
    occurs at most once (``viewer_sessions.ColdPlan``): what the server sees when many people open
    many different images, none of them cached. When every image is used up the users stop and
    the summary says ``"exhausted": true``: give more identifiers (aliases of one file are fine).
    In distributed runs every worker computes the same stream and takes its own share of the steps
    (worker index modulo ``--expect-workers``), so no URL is requested twice across machines.
``repeat``
    Each user walks its own session (image ``ids[n % len(ids)]``, seed from the user number) and
    walks it again when done: returning visitors, a warm server.

Run it with ``benchmarks/loadtest.py`` (headless, prints throughput and latency percentiles, writes
a JSON summary), or with Locust directly::

    locust -f benchmarks/locustfile.py --headless -H http://127.0.0.1:8000/iiif/3 \\
        -u 8 -r 8 -t 30s --ids painting --mode cold --summary-json summary.json

Distributed (the load of several machines or cores)::

    locust -f benchmarks/locustfile.py --master --headless --expect-workers 4 -H BASE -u 64 -r 64 -t 60s \\
        --ids a.tif b.tif --mode cold --summary-json summary.json
    locust -f benchmarks/locustfile.py --worker --master-host MASTER_IP     # on each load machine, x4

Requests are reported under two names: ``info.json`` and ``tile``. Tiles are checked: status 200,
a JPEG body, and (every ``--check-every``-th tile) the JPEG's pixel width against the URL's size.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import gevent
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
import viewer_sessions as vs  # the folder of this file (Locust arranges this too)

log = logging.getLogger("iiif-viewer")


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser  # (Locust's include_in_web_ui works on the parser, not on argument groups)
    group.add_argument(
        "--ids",
        nargs="+",
        default=[],
        include_in_web_ui=False,
        help="image identifiers (appended to the host, the IIIF base URL, percent-encoded)",
    )
    group.add_argument(
        "--mode",
        choices=["cold", "repeat"],
        default="cold",
        help="cold: every tile URL at most once over all users; repeat: users re-walk their sessions",
    )
    group.add_argument("--viewport", default="1600x1000", help="viewer size in pixels, WxH")
    group.add_argument("--steps", type=int, default=16, help="pans and zooms per session after opening")
    group.add_argument("--seed", type=int, default=1)
    group.add_argument(
        "--size-style",
        choices=["auto", "w,", "w,h"],
        default="auto",
        help="auto: w,h for Image API 3 (OpenSeadragon >= 4), w, for 2",
    )
    group.add_argument("--think", type=float, default=0.0, help="seconds between two steps of a session")
    group.add_argument(
        "--check-every", type=int, default=50, help="check the JPEG pixel width of every Nth tile (0: never)"
    )
    group.add_argument("--summary-json", default="", help="write the end-of-run summary here (master or single run)")


# ---------------------------------------------------------------- per-process shared state


class Shared:
    """State shared by the users of one Locust process."""

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        if not opts.ids:
            raise SystemExit("--ids: give at least one image identifier")
        w, _, h = str(opts.viewport).lower().partition("x")
        self.viewport = (int(w), int(h))
        self.mode: str = opts.mode
        self.ids: list[str] = list(opts.ids)
        self.steps: int = opts.steps
        self.seed: int = opts.seed
        self.size_style: vs.SizeStyle | None = None if opts.size_style == "auto" else opts.size_style
        self.think: float = opts.think
        self.check_every: int = opts.check_every
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            self.part, self.parts = max(runner.worker_index, 0), max(int(opts.expect_workers or 1), 1)
            if self.mode == "cold" and self.part >= self.parts:
                raise SystemExit(
                    f"worker index {self.part} >= --expect-workers {self.parts}: cold mode needs "
                    "the master's --expect-workers to be the number of workers"
                )
        else:
            self.part, self.parts = 0, 1
        self.plan = vs.ColdPlan(
            self.ids, self.viewport, self.seed, self.steps, self.size_style, "", self.part, self.parts
        )
        self.users = 0
        self.tiles = 0
        self.exhausted_reported = False

    def user_number(self) -> int:
        n = self.users * self.parts + self.part  # distinct over all workers
        self.users += 1
        return n


_shared: dict[int, Shared] = {}


def shared(environment: Environment) -> Shared:
    key = id(environment)
    if key not in _shared:
        _shared[key] = Shared(environment)
    return _shared[key]


# ---------------------------------------------------------------- checks


def jpeg_width(data: bytes) -> int | None:
    """Pixel width from a JPEG's SOF marker, or None if the body is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int(struct.unpack(">H", data[i + 7 : i + 9])[0])
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            i += 2 if marker != 0xFF else 1
            continue
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def expected_width(url: str) -> int | None:
    """The output width a tile URL asks for (``w,`` or ``w,h``), None for ``max``/``full``."""
    size = unquote(urlsplit(url).path).split("/")[-3]
    head = size.split(",")[0]
    return int(head) if head.isdigit() else None


# ---------------------------------------------------------------- the user


class Viewer(FastHttpUser):
    """One viewer connection replaying viewer_sessions steps as fast as the server answers."""

    concurrency = 1  # one connection per user: the user is sequential

    def on_start(self) -> None:
        self.shared = shared(self.environment)
        self.number = self.shared.user_number()
        self.session: vs.Session | None = None
        self.identifier = self.shared.ids[self.number % len(self.shared.ids)]

    def fetch_info(self, identifier: str) -> vs.ImageInfo | None:
        with self.client.get(vs.image_path(identifier) + "/info.json", name="info.json", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return None
            try:
                info = vs.ImageInfo.from_json(json.loads(resp.content or b""))
            except (ValueError, KeyError, TypeError) as e:
                resp.failure(f"bad info.json: {e!r}")
                return None
            resp.success()
            return info

    def fetch_tile(self, url: str) -> None:
        sh = self.shared
        sh.tiles += 1
        with self.client.get(url, name="tile", catch_response=True) as resp:
            body = resp.content or b""
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
            elif body[:2] != b"\xff\xd8":
                resp.failure("not a JPEG")
            elif sh.check_every and sh.tiles % sh.check_every == 0:
                want, got = expected_width(url), jpeg_width(body)
                if want is not None and got != want:
                    resp.failure(f"JPEG {got} px wide, URL asks for {want}")
                else:
                    resp.success()
            else:
                resp.success()

    @task
    def view(self) -> None:
        if self.shared.mode == "cold":
            self.cold_step()
        else:
            self.walk_session()

    def cold_step(self) -> None:
        sh = self.shared
        fetched = ""
        while True:
            step = sh.plan.next_step()
            if isinstance(step, vs.NeedInfo):
                info = self.fetch_info(step.identifier)
                if info is None:
                    gevent.sleep(1.0)
                    return
                sh.plan.add_info(step.identifier, info)
                fetched = step.identifier
                continue
            break
        if step is None:
            if not sh.exhausted_reported:
                sh.exhausted_reported = True
                log.warning("cold: every identifier's tiles were used; users stop (give more --ids)")
                runner = self.environment.runner
                if isinstance(runner, WorkerRunner):
                    runner.send_message("iiif_cold_exhausted", {"part": sh.part})
                else:
                    _exhausted.add(sh.part)
            raise StopUser()
        if step.opens and step.identifier != fetched:
            self.fetch_info(step.identifier)  # a viewer opening an image reads its info.json
        for url in step.urls:
            self.fetch_tile(url)
        if sh.think:
            gevent.sleep(sh.think)

    def walk_session(self) -> None:
        sh = self.shared
        info = self.fetch_info(self.identifier)  # every walk opens the image again
        if info is None:
            gevent.sleep(1.0)
            return
        if self.session is None:
            self.session = vs.session(
                info, sh.viewport, f"{sh.seed}.{self.number}", sh.steps, sh.size_style, vs.image_path(self.identifier)
            )
        for step in self.session.steps:
            for url in step.urls:
                self.fetch_tile(url)
            if sh.think:
                gevent.sleep(sh.think)


# ---------------------------------------------------------------- summary

_exhausted: set[int] = set()
_times: dict[str, float] = {}


class Histogram:
    """Response times in logarithmic buckets 1 % wide from 1 microsecond: percentiles to 1 %.

    Locust's own percentiles round to whole milliseconds, too coarse for a server answering in
    0.3 ms. Workers send their buckets to the master with every stats report."""

    STEP = math.log(1.01)

    def __init__(self) -> None:
        self.buckets: dict[str, dict[int, int]] = {}

    def add(self, name: str, ms: float) -> None:
        b = int(math.log(max(ms, 0.001) / 0.001) / self.STEP)
        for key in (name, "total"):
            d = self.buckets.setdefault(key, {})
            d[b] = d.get(b, 0) + 1

    def merge(self, other: dict[str, dict[Any, int]]) -> None:
        for name, d in other.items():
            mine = self.buckets.setdefault(name, {})
            for b, n in d.items():
                mine[int(b)] = mine.get(int(b), 0) + n

    def percentile(self, name: str, q: float) -> float | None:
        d = self.buckets.get(name)
        if not d:
            return None
        total = sum(d.values())
        seen = 0
        for b in sorted(d):
            seen += d[b]
            if seen >= q * total:
                return round(0.001 * math.exp((b + 0.5) * self.STEP), 3)
        return None


_hist = Histogram()


@events.request.add_listener
def _on_request(name: str, response_time: float, **_: Any) -> None:
    _hist.add(name, response_time)


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["iiif_hist"] = {name: {str(b): n for b, n in d.items()} for name, d in _hist.buckets.items()}
    _hist.buckets = {}


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    _hist.merge(data.get("iiif_hist") or {})


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("iiif_cold_exhausted", lambda msg, **kw: _exhausted.add(msg.data["part"]))


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    _times.setdefault("start", time.time())
    if isinstance(environment.runner, MasterRunner):
        _times["workers"] = max(_times.get("workers", 0), len(environment.runner.clients))


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    _times["stop"] = time.time()


def _entry(e: Any, duration: float, name: str) -> dict[str, Any]:
    n = e.num_requests
    return {
        "requests": n,
        "failures": e.num_failures,
        "per_s": round(n / duration, 1) if duration > 0 else 0.0,
        "p50_ms": _hist.percentile(name, 0.5),
        "p90_ms": _hist.percentile(name, 0.9),
        "p99_ms": _hist.percentile(name, 0.99),
        "p999_ms": _hist.percentile(name, 0.999),
        "max_ms": round(e.max_response_time, 1) if n else None,
        "avg_ms": round(e.avg_response_time, 2) if n else None,
        "bytes": e.total_content_length,
        "avg_bytes": round(e.avg_content_length) if n else 0,
    }


def summary(environment: Environment) -> dict[str, Any]:
    """Throughput and latency percentiles of the run (all requests, tiles, info.json)."""
    import locust

    stats = environment.stats
    opts = environment.parsed_options
    start = _times.get("start") or stats.start_time
    stop = _times.get("stop") or stats.last_request_timestamp or time.time()
    if _exhausted and stats.last_request_timestamp:
        stop = min(stop, stats.last_request_timestamp)  # the rate while there was work
    duration = max(stop - start, 1e-9)
    runner = environment.runner
    out: dict[str, Any] = {
        "tool": "benchmarks/locustfile.py",
        "locust": locust.__version__,
        "host": environment.host,
        "mode": opts.mode,
        "ids": len(opts.ids),
        "users": opts.num_users,
        "spawn_rate": opts.spawn_rate,
        "run_time": opts.run_time,
        "viewport": opts.viewport,
        "steps": opts.steps,
        "seed": opts.seed,
        "size_style": opts.size_style,
        "think_s": opts.think,
        "workers": int(_times.get("workers", 0)) if isinstance(runner, MasterRunner) else 0,
        "duration_s": round(duration, 2),
        "total": _entry(stats.total, duration, "total"),
        "tile": _entry(stats.entries[("tile", "GET")], duration, "tile") if ("tile", "GET") in stats.entries else None,
        "info": _entry(stats.entries[("info.json", "GET")], duration, "info.json")
        if ("info.json", "GET") in stats.entries
        else None,
        "errors": [
            {"name": e.name, "error": str(e.error), "occurrences": e.occurrences} for e in stats.errors.values()
        ],
        "exhausted": bool(_exhausted),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return out


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    opts = environment.parsed_options
    s = summary(environment)
    t = s["tile"] or s["total"]
    print(
        f"\nIIIF viewer load ({s['mode']}, {s['users']} users, {s['duration_s']} s): "
        f"{s['total']['per_s']} req/s, tiles {t['per_s']}/s, p50 {t['p50_ms']} ms, p90 {t['p90_ms']} ms, "
        f"p99 {t['p99_ms']} ms, failures {s['total']['failures']}"
        + ("  [cold URLs exhausted]" if s["exhausted"] else ""),
        flush=True,
    )
    if opts.summary_json:
        path = Path(opts.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(s, indent=2) + "\n")
