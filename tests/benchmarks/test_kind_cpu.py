"""benchmarks/kind_cpu.py: the distinct URLs per kind, the replay and its checks against a live
local server, the per-kind CPU, the weighted mix, each repeat's own ratio and the report."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from PIL import Image

from benchmarks import kind_cpu
from benchmarks.harness import mix
from tests.benchmarks.local_http import serving


def _r(kind: str, path: str, size: tuple[int, int] | None = None) -> mix.MixedRequest:
    return mix.MixedRequest(kind, path, *(size or (None, None)))


def test_distinct_by_kind_takes_each_path_once_in_list_order() -> None:
    listed = [
        _r("info", "a/info.json"),
        _r("viewer", "a/info.json"),  # the same path under another kind: asked once only
        _r("thumb_box", "a/full/!200,200/0/default.jpg", (200, 150)),
        _r("thumb_box", "a/full/!200,200/0/default.jpg", (200, 150)),
        _r("thumb_box", "b/full/!200,200/0/default.jpg", (200, 150)),
        _r("thumb_box", "c/full/!200,200/0/default.jpg", (200, 150)),
        *(_r("download_max", f"{i}/full/max/0/default.jpg", (40, 30)) for i in range(9)),
    ]
    chosen = kind_cpu.distinct_by_kind(listed, 2)
    assert [r.path for r in chosen["info"]] == ["a/info.json"]
    assert chosen["viewer"] == []
    assert [r.path for r in chosen["thumb_box"]] == ["a/full/!200,200/0/default.jpg", "b/full/!200,200/0/default.jpg"]
    assert len(chosen["download_max"]) == 1  # a quarter of the count, at least one
    assert len(kind_cpu.distinct_by_kind(listed, 8)["download_max"]) == 2
    assert list(chosen) == list(kind_cpu.ORDER)
    with pytest.raises(ValueError, match="at least 1"):
        kind_cpu.distinct_by_kind(listed, 0)


def test_weighted_is_the_share_weighted_mean_and_needs_every_kind() -> None:
    costs = dict.fromkeys(mix.SHARES, 1.0) | {"region": 11.0}
    assert kind_cpu.weighted(costs) == pytest.approx(1.0 + 10.0 * mix.SHARES["region"] / sum(mix.SHARES.values()))
    assert kind_cpu.weighted({"region": 1.0}) is None


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(out, "JPEG")
    return out.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.bodies.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    _Handler.bodies = {
        "/iiif/a/info.json": (200, json.dumps({"width": 40, "height": 30}).encode()),
        "/iiif/a/full/!20,20/0/default.jpg": (200, _jpeg(20, 15)),
        "/iiif/b/full/!20,20/0/default.jpg": (200, _jpeg(21, 15)),  # one pixel wide of 20: within slack
        "/iiif/c/full/!20,20/0/default.jpg": (200, _jpeg(30, 15)),  # wrong size
        "/iiif/d/full/!20,20/0/default.jpg": (500, b"oops"),
    }
    with serving(_Handler) as base:
        yield base + "/iiif"


def test_replay_checks_every_answer(local_server: str) -> None:
    requests = [_r("info", "a/info.json")] + [
        _r("thumb_box", f"{x}/full/!20,20/0/default.jpg", (20, 15)) for x in "abcd"
    ]
    replayed = kind_cpu.replay(local_server, requests, concurrency=2)
    assert sum(replayed.problems.values()) == 5
    assert replayed.problems[None] == 3
    assert replayed.wrong == 2
    assert replayed.problems["got 30x15, want 20x15"] == 1
    assert replayed.problems["status 500"] == 1


def test_replay_goes_to_the_loopback_only() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
        kind_cpu.replay("http://example.org:80/iiif", [_r("info", "a/info.json")], 1)


def test_measure_kinds_charges_each_kind_the_cpu_spent_during_it(local_server: str) -> None:
    clock = iter([1.0, 1.5, 1.5, 3.5])  # before and after each of the two kinds
    chosen = {
        "info": [_r("info", "a/info.json")],
        "thumb_box": [_r("thumb_box", f"{x}/full/!20,20/0/default.jpg", (20, 15)) for x in "ab"],
        "region": [],
    }
    found = kind_cpu.measure_kinds(local_server, chosen, lambda: next(clock), concurrency=1)
    assert list(found) == ["info", "thumb_box"]  # a kind without requests is left out
    assert found["info"]["cpu_ms"] == pytest.approx(500.0)
    assert found["thumb_box"]["cpu_ms"] == pytest.approx(1000.0)  # 2 s over 2 requests
    assert found["thumb_box"]["wrong"] == 0
    assert found["info"]["wall_ms"] > 0


def _run(ms: float, region: float) -> dict[str, dict[str, float]]:
    return {k: {"requests": 10, "cpu_ms": region if k == "region" else ms, "wrong": 0} for k in mix.SHARES}


def test_ratios_are_each_repeats_own_and_the_report_names_the_cpu() -> None:
    runs = {
        "iiifserver": [_run(1.0, 4.0), _run(3.0, 12.0), _run(2.0, 8.0)],
        "iipsrv": [_run(2.0, 4.0), _run(3.0, 6.0), _run(6.0, 8.0)],
    }
    ratios = kind_cpu.ratios(runs, "iiifserver", "iipsrv")
    assert ratios["viewer"] == pytest.approx(2.0)  # median of 2, 1, 3: not 11/6 from the medians
    assert ratios["region"] == pytest.approx(1.0)  # 1.0, 0.5, 1.0
    assert "mix" in ratios
    summary = kind_cpu.summarise(runs)
    assert summary["iiifserver"]["region"]["median"] == 8.0
    assert summary["iiifserver"]["region"]["min"] == 4.0
    record = {
        "machine": {"date": "2026-12-07 09:00", "cpu": "Some CPU", "cpus": 2, "host": "h", "commit": "abc"},
        "count": 10,
        "concurrency": 2,
        "repeats": 3,
        "big": 1,
        "small": 2,
        "seed": "1",
        "summary": summary,
        "ratios": ratios,
    }
    record["machine"]["command"] = "python -m benchmarks.kind_cpu --count 10"
    text = kind_cpu.report(record)
    assert "CPU: Some CPU (2 cores)" in text
    assert "| region | 10 % | 8.00 (4.00-12.00) | 6.00 (4.00-8.00) | 1.00x |" in text
    assert "| mix | weighted |" in text
