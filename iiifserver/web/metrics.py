"""Prometheus metrics: the observer that counts every answered request, and ``/metrics``.

Owns: the metric names and labels operators rely on (listed in ``docs/operations.md``), the
request kinds (``kind_of``), counting on the request path, publishing the counts to
prometheus_client and the ``/metrics`` route. The only importer of ``prometheus_client``.
Must not know: IIIF beyond the shape of its URLs, how requests are answered, the image service
(it is handed functions that return cumulative figures).

Cost. A repeated tile costs the server about 25 microseconds of CPU, 7 to 9 of them in Python;
prometheus_client's own ``labels(...).inc()`` and ``observe()`` in multiprocess mode cost
microseconds each (a lock and an mmap write per value). So a request only adds to one cell of
plain lists here, by (kind, status, way), the kind of each path remembered (about half a
microsecond, ``benchmarks/protocol_cost.py``), and ``publish`` hands the cells to
prometheus_client once a second and before each scrape.

Multiprocess mode. ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
workers start; each worker's values live in files there and one scrape, answered by whichever
worker gets it, sums them all. Gauges are ``livesum`` (the files of a dead worker are dropped by
``mark_process_dead``, which the supervisor calls); counters of dead workers stay, so totals
never go down while the server runs. Without the variable (tests, ``iiifserver get``) the values
are this process's, in a registry of this ``Metrics`` alone.
"""

from __future__ import annotations

import bisect
import hmac
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iiifserver.web.observer import RequestInfo, Way, raw_path_of
from iiifserver.web.pages import VIEWERS

log = logging.getLogger(__name__)
# The ``_created`` series double every scrape and mean nothing in multiprocess mode.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

KINDS = ("tile", "info.json", "region", "manifest", "collection", "page", "other")
# Request durations: a memo replay takes tens of microseconds, a large render seconds.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RENDER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The cache figures ``Metrics`` reads (cumulative, per process) -> (metric, label).
CACHE_FIGURES = {
    "memory_hits": ("hits", "memory"),
    "memory_misses": ("misses", "memory"),
    "disk_hits": ("hits", "disk"),
    "disk_misses": ("misses", "disk"),
    "shared_hits": ("hits", "shared"),
    "shared_misses": ("misses", "shared"),
    "shared_facts_hits": ("hits", "shared_facts"),  # image facts (SourceInfo) from the shared tier
    "shared_facts_misses": ("misses", "shared_facts"),
    "passthrough": ("hits", "passthrough"),
}

# A tile as viewers ask for it: a pixel region (or full) scaled to a width (and height), no
# rotation; matched from the slash after the identifier (anchored there, it costs a third).
_TILE = re.compile(rb"(?:full|[0-9]+,[0-9]+,[0-9]+,[0-9]+)/[0-9]+,[0-9]*/0/")
_IMAGE_SLASHES = 7  # /iiif/3/{id}/{region}/{size}/{rotation}/{quality}.{format}
_PAGE_PREFIXES = (*(f"/{kind}/".encode() for kind in VIEWERS), b"/collections/")


MAX_KINDS_REMEMBERED = 65536  # raw path -> kind; cleared when full (a clear costs about a millisecond)
_CELL_LEN = len(DURATION_BUCKETS) + 2  # [duration sum, count per bucket..., count above the last]


def kind_of(raw_path: bytes, way: Way) -> str:
    """The request's kind label, from its raw path (cheap: no decoding, one regex for images)."""
    if way is Way.PROTOCOL_TILE:
        return "tile"
    if raw_path.startswith(b"/iiif/"):
        if raw_path.startswith(b"/iiif/presentation/"):
            if raw_path.endswith(b"/manifest"):
                return "manifest"
            return "collection" if raw_path.startswith(b"/iiif/presentation/3/collection") else "other"
        if raw_path.endswith(b"/info.json"):
            return "info.json"
        if raw_path.count(b"/") == _IMAGE_SLASHES:
            return "tile" if _TILE.match(raw_path, raw_path.find(b"/", 8) + 1) else "region"
        return "other"
    if raw_path == b"/" or raw_path.startswith(_PAGE_PREFIXES):
        return "page"
    return "other"


Figures = Callable[[], Mapping[str, int]]


class Metrics:
    """The request observer that feeds the metrics, and their exposition.

    ``cache_figures()``: cumulative counts of this process named as in ``CACHE_FIGURES``, plus
    ``renders``; ``lane_figures()``: per lane, the jobs waiting (``name``) and running
    (``name:busy``). Both are read when the counts are published, never per request.
    """

    def __init__(
        self,
        cache_figures: Figures | None = None,
        lane_figures: Figures | None = None,
        multiprocess_dir: Path | None = None,
        institution_of: Callable[[bytes], str] | None = None,
    ) -> None:
        # ``institution_of``: raw path -> institution slug or "" (several institutions served):
        # requests are then also counted by institution, the slug remembered with the kind.
        self.institution_of = institution_of
        self.cache_figures = cache_figures
        self.lane_figures = lane_figures
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("iiifserver_requests", "Answered HTTP requests.", ["kind", "status", "way"], registry=r)
        self.duration = Histogram(
            "iiifserver_request_duration_seconds",
            "Seconds from a request's headers to its response handed to the kernel.",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter("iiifserver_cache_hits", "Response bodies found, by tier.", ["tier"], registry=r)
        self.cache_misses = Counter(
            "iiifserver_cache_misses", "Response bodies looked for and not found, by tier.", ["tier"], registry=r
        )
        self.renders = Counter("iiifserver_renders", "Images rendered by libvips (cache misses).", registry=r)
        self.renders_deferred = Counter(
            "iiifserver_renders_not_stored",
            "Renders not written to the disk tier when made: asked for fewer than disk_cache_admission times.",
            registry=r,
        )
        self.stored_tiles_not_kept = Counter(
            "iiifserver_stored_tiles_not_kept",
            "Whole stored tiles answered but not kept in the memory tier: their first ask lately.",
            registry=r,
        )
        self.render_seconds = Histogram(
            "iiifserver_render_duration_seconds",
            "Seconds one libvips render took, in its worker thread.",
            buckets=RENDER_BUCKETS,
            registry=r,
        )
        self.lane_waiting = Gauge(
            "iiifserver_lane_waiting",
            "Jobs waiting for a thread of a lane (the queue behind 503s).",
            ["lane"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.lane_busy = Gauge(
            "iiifserver_lane_busy", "Threads of a lane at work.", ["lane"], multiprocess_mode="livesum", registry=r
        )
        self.shared_up = Gauge(
            "iiifserver_shared_cache_up",
            "1 while the shared cache tier (Redis) answers, 0 while it is down (the highest of the live workers).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.institution_requests = Counter(
            "iiifserver_institution_requests",
            "Answered HTTP requests about one institution's images and documents (several institutions served).",
            ["institution", "kind", "status"],
            registry=r,
        )
        self.workers = Gauge("iiifserver_workers", "Worker processes serving.", multiprocess_mode="livesum", registry=r)
        self.workers.set(1)
        # Request path: (kind, status, way) -> a cell, [duration sum, count per bucket..., count
        # above the last]; publish hands the cells on and starts new ones.
        # With institutions the key has a fourth part, the institution ("" for none).
        self._cells: dict[tuple[Any, ...], list[float]] = {}
        self._kinds: dict[bytes, str] = {}  # raw path -> kind (bounded: MAX_KINDS_REMEMBERED)
        self._institutions: dict[bytes, str] = {}  # raw path -> institution, likewise
        self._renders: list[float] = []  # appended by worker threads (atomic), swapped on publish
        self._published: dict[str, int] = {}  # cumulative figures as last published
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()  # publish runs on the loop and, for a scrape, in a thread
        self._scrape_registry: CollectorRegistry | None = None
        if multiprocess_dir is not None:
            self._scrape_registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._scrape_registry, path=str(multiprocess_dir)
            )

    # -- the request path --------------------------------------------------------------------

    def answered(self, request: RequestInfo, status: int, bytes_sent: int, way: Way) -> None:
        # The kind of a path once: classifying it (``kind_of``) costs as much as the rest of this
        # call, and viewers ask for the same tiles again and again. Done here, a path at a time,
        # not when publishing: classifying a second's worth of cold tiles at once paused the
        # loop for tens of milliseconds (the tile p99 of the flood benchmark showed it).
        scope = request.scope
        raw_path = scope.get("raw_path") or raw_path_of(scope)
        kind = self._kinds.get(raw_path)
        if kind is None:
            kinds = self._kinds
            if len(kinds) >= MAX_KINDS_REMEMBERED:
                kinds.clear()
            kind = kinds[raw_path] = kind_of(raw_path, way)
        if self.institution_of is None:
            key: tuple[Any, ...] = (kind, status, way)
        else:  # one more lookup, of the path's institution, remembered as its kind is
            institution = self._institutions.get(raw_path)
            if institution is None:
                institution = self._institution(raw_path)
            key = (kind, status, way, institution)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [0.0] * _CELL_LEN
        duration = request.duration
        cell[0] += duration
        cell[1 + bisect.bisect_left(DURATION_BUCKETS, duration)] += 1

    def _institution(self, raw_path: bytes) -> str:
        assert self.institution_of is not None
        if len(self._institutions) >= MAX_KINDS_REMEMBERED:
            self._institutions.clear()
        institution = self._institutions[raw_path] = self.institution_of(raw_path)
        return institution

    def institutions_changed(self) -> None:
        """The institutions were reloaded: paths are attributed afresh."""
        self._institutions = {}

    def rendered(self, seconds: float) -> None:
        """A render took ``seconds`` (called from its worker thread)."""
        self._renders.append(seconds)

    # -- publishing --------------------------------------------------------------------------

    def publish(self) -> None:
        """Hand what was counted since the last call to prometheus_client (its files, in
        multiprocess mode). Once a second and before a scrape; on the event loop."""
        with self._lock:
            cells, self._cells = self._cells, {}
            by_kind: dict[str, list[float]] = {}
            for key, cell in cells.items():
                child = self._children.get(key)
                if child is None:
                    kind, status, way = key[:3]
                    child = self._children[key] = self.requests.labels(kind, str(status), way.value)
                count = int(sum(cell) - cell[0])
                child.inc(count)
                if len(key) == 4 and key[3]:  # (kind, status, way, institution)
                    self.institution_requests.labels(key[3], key[0], str(key[1])).inc(count)
                sums = by_kind.get(key[0])
                if sums is None:
                    by_kind[key[0]] = list(cell)
                else:
                    for index, value in enumerate(cell):
                        sums[index] += value
            for kind, sums in by_kind.items():
                _add_observations(self.duration.labels(kind), DURATION_BUCKETS, sums)
            renders, self._renders = self._renders, []
            if renders:
                sums = [0.0] * (len(RENDER_BUCKETS) + 2)
                for seconds in renders:
                    sums[0] += seconds
                    sums[1 + bisect.bisect_left(RENDER_BUCKETS, seconds)] += 1
                _add_observations(self.render_seconds, RENDER_BUCKETS, sums)
            if self.cache_figures is not None:
                self._publish_cache(self.cache_figures())
            if self.lane_figures is not None:
                for name, value in self.lane_figures().items():
                    lane, _, busy = name.partition(":")
                    (self.lane_busy if busy else self.lane_waiting).labels(lane).set(value)

    def _publish_cache(self, figures: Mapping[str, int]) -> None:
        for name, value in figures.items():
            if name == "shared_up":  # a state, not a count
                self.shared_up.set(value)
                continue
            delta = value - self._published.get(name, 0)
            if delta <= 0:
                continue  # unchanged, or a counter that was reset (a cleared tier): nothing to add
            self._published[name] = value
            if name == "renders":
                self.renders.inc(delta)
            elif name == "renders_deferred":
                self.renders_deferred.inc(delta)
            elif name == "stored_tiles_not_kept":
                self.stored_tiles_not_kept.inc(delta)
            elif name in CACHE_FIGURES:
                which, tier = CACHE_FIGURES[name]
                (self.cache_hits if which == "hits" else self.cache_misses).labels(tier).inc(delta)

    def exposition(self) -> bytes:
        """The text format of every worker's metrics (this process's alone outside ``serve``)."""
        self.publish()
        return prometheus_client.generate_latest(self._scrape_registry or self.registry)

    def close(self) -> None:
        """Publish the last counts; this worker no longer counts as serving."""
        self.publish()
        self.workers.set(0)
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    # -- the route ---------------------------------------------------------------------------

    def routes(self, token: str, run_io: Callable[[Callable[[], bytes]], Awaitable[bytes]]) -> list[Route]:
        """``GET /metrics``; behind ``Authorization: Bearer <token>`` when ``token`` is set."""

        async def metrics(request: Request) -> Response:
            if token:
                scheme, _, value = request.headers.get("authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                    return JSONResponse(
                        {"error": "a valid 'Authorization: Bearer <metrics_token>' header is required"},
                        status_code=401,
                        headers={"cache-control": "no-store", "www-authenticate": 'Bearer realm="iiifserver-metrics"'},
                    )
            self.publish()  # on the loop: the counts of this process are the loop's
            body = await run_io(self._collect)  # reads every worker's files
            return Response(
                body, media_type=prometheus_client.CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"}
            )

        return [Route("/metrics", metrics, methods=["GET"])]

    def _collect(self) -> bytes:
        return prometheus_client.generate_latest(self._scrape_registry or self.registry)


def _add_observations(histogram: Any, bounds: tuple[float, ...], sums: list[float]) -> None:
    """Add many observations at once: ``sums`` = [sum, count per bucket..., count above the last].

    prometheus_client has no public call for it; its histograms keep a value per bucket
    (``_buckets``, not cumulative) and ``_sum``. When those are not there (another version), one
    ``observe`` per observation at its bucket's bound: slower, same buckets, sum approximate.
    """
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if buckets is not None and total is not None and len(buckets) == len(bounds) + 1:
        total.inc(sums[0])
        for index, n in enumerate(sums[1:]):
            if n:
                buckets[index].inc(n)
        return
    for index, n in enumerate(sums[1:]):
        value = bounds[index] if index < len(bounds) else bounds[-1] * 2
        for _ in range(int(n)):
            histogram.observe(value)


def mark_process_dead(pid: int, directory: Path) -> None:
    """Drop a worker's live gauges (its counters stay: totals never go down). For the supervisor."""
    prometheus_multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def prepare_directory(directory: Path) -> None:
    """An empty folder for this run's metric files (``serve``, before any worker starts)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
