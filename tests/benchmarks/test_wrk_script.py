"""The harness's wrk scripts run by wrk against a local server whose answers are known:
tile_load.lua gives each request's own latency, by kind, beside wrk's coordinated-omission-corrected
percentiles; soak_load.lua (which loads tile_load.lua) also counts responses by status class."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from benchmarks import soak
from benchmarks.harness import load
from tests.benchmarks.local_http import serving

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/install.sh --test)")

SLOW_S = 0.04


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    disable_nagle_algorithm = True  # headers and body go out at once (no delayed-ACK wait)

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(SLOW_S)
        body = b"ok"
        self.send_response(503 if self.path.startswith("/bad") else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    with serving(_Handler) as base:
        yield base


def test_each_request_is_timed_once_by_kind(origin: str) -> None:
    # every fifth line slow: each of the 4 connections (lines t, t+4, ...) gets both kinds
    paths = [f"/slow/{i}" if i % 5 == 0 else f"/fast/{i}" for i in range(400)]
    work = load.Workload("cold", [(p, None, None) for p in paths], from_file=True)
    kinds = ["slow" if p.startswith("/slow") else "fast" for p in paths]
    record = load.run(origin, work, concurrency=4, duration=2, check=0, kinds=kinds)
    got = record["request_latency"]
    assert got["slow"]["n"] > 10
    assert got["fast"]["n"] > 3 * got["slow"]["n"]
    # every completed request but the last of each connection is timed, and none twice
    assert record["requests"] - 4 <= got["all"]["n"] <= record["requests"] + 4
    assert SLOW_S * 1000 <= got["slow"]["p50"] < SLOW_S * 1000 + 30
    assert got["fast"]["p50"] < 15
    assert record["request_p99_ms"] == got["all"]["p99"] >= SLOW_S * 1000
    # wrk's own percentiles: made-up samples below every slow response pull its p50 up
    assert record["p50_ms"] > got["all"]["p50"]


def test_an_open_loop_sends_at_its_rate_and_times_from_the_schedule(origin: str) -> None:
    """``rate``: a Poisson stream whatever the server does; below what the server can answer
    each request costs its own time, above it the waits for the late ones count (a closed loop
    would report the 40 ms of each request and send fewer)."""
    paths = [f"/slow/{i}" if i % 5 == 0 else f"/fast/{i}" for i in range(400)]
    work = load.Workload("cold", [(p, None, None) for p in paths], from_file=True)
    kinds = ["slow" if p.startswith("/slow") else "fast" for p in paths]
    record = load.run(origin, work, concurrency=4, duration=3, check=0, kinds=kinds, rate=40)
    got = record["request_latency"]
    assert 60 <= record["requests"] <= 190  # 120 expected: a Poisson stream of 40/s for 3 s
    assert record["rate"] == 40
    assert record["request_windows"] == []
    assert got["fast"]["p50"] < 15
    assert SLOW_S * 1000 <= got["slow"]["p50"] < SLOW_S * 1000 + 30

    slow = load.Workload("cold", [(f"/slow/{i}", None, None) for i in range(400)], from_file=True)
    # one connection asked for 100/s of 40 ms requests: it answers 25/s, the schedule runs ahead
    record = load.run(origin, slow, concurrency=1, duration=2, check=0, kinds=["slow"] * 400, rate=100)
    assert record["requests"] <= 2 / SLOW_S + 2
    assert record["request_latency"]["all"]["p99"] > 10 * SLOW_S * 1000  # late by the queue behind it


def test_an_open_loop_needs_kinds_and_a_positive_rate(origin: str) -> None:
    work = load.Workload("cold", [("/fast/1", None, None)], from_file=True)
    with pytest.raises(ValueError, match="open-loop"):
        load.run(origin, work, concurrency=1, duration=1, check=0, rate=10)
    with pytest.raises(ValueError, match="open-loop"):
        load.run(origin, work, concurrency=1, duration=1, check=0, kinds=["x"], rate=0)


def test_without_kinds_one_wrk_thread_and_no_request_latency(origin: str) -> None:
    work = load.Workload("cold", [(f"/fast/{i}", None, None) for i in range(50)], from_file=True)
    record = load.run(origin, work, concurrency=2, duration=1, check=0)
    assert "request_latency" not in record
    assert record["requests"] > 0


def test_the_soak_script_counts_statuses_and_keeps_the_common_fields(origin: str) -> None:
    urls = [f"/bad/{i}" if i % 4 == 0 else f"/fast/{i}" for i in range(200)]
    got = soak.wrk(origin, urls, concurrency=2, seconds=1)
    assert got["status_5xx"] > 0
    assert got["status_2xx"] > 2 * got["status_5xx"]
    assert got["status_3xx"] == got["status_4xx"] == 0
    assert abs(got["status_2xx"] + got["status_5xx"] - got["requests"]) <= 2  # responses in flight at the end
    assert got["err_status"] == got["status_5xx"]  # wrk's own count of non-2xx/3xx agrees
    assert got["wraps"] > 0
    assert got["lat_p99_us"] > 0
