"""The pure parts of benchmarks/soak.py: the mixed URL list, growth and descriptor checks, the
targets and the report. No server is started here."""

from __future__ import annotations

import random
from typing import Any

import pytest

from benchmarks import soak
from benchmarks.harness import load


def _samples(rss: list[float], fds: list[int], pid: str = "101", step: float = 5.0) -> list[dict[str, Any]]:
    pairs = enumerate(zip(rss, fds, strict=True))
    return [{"t": i * step, "workers": {pid: {"rss_mb": r, "fds": f}}} for i, (r, f) in pairs]


def _wrk(**overrides: int) -> dict[str, int]:
    base = {
        "requests": 1000,
        "duration_us": 10_000_000,
        "bytes": 10**6,
        "err_connect": 0,
        "err_read": 0,
        "err_write": 0,
        "err_status": 0,
        "err_timeout": 0,
        "lat_mean_us": 2000,
        "lat_max_us": 50_000,
        "lat_p50_us": 1500,
        "lat_p90_us": 3000,
        "lat_p99_us": 10_000,
        "wraps": 0,
        "status_2xx": 1000,
        "status_3xx": 0,
        "status_4xx": 0,
        "status_5xx": 0,
    }
    return base | overrides


def test_mixed_urls_follow_the_shares_and_use_each_region_once() -> None:
    tiles = [f"/t{i}" for i in range(50)]
    regions = [f"/r{i}" for i in range(10_000)]
    infos = ["/i0", "/i1"]
    out = soak.mixed_urls(tiles, regions, infos, 20_000, random.Random(3))
    assert len(out) == 20_000
    counts = {k: sum(u.startswith(f"/{k}") for u in out) / len(out) for k in "tri"}
    assert counts["t"] == pytest.approx(0.70, abs=0.02)
    assert counts["r"] == pytest.approx(0.25, abs=0.02)
    assert counts["i"] == pytest.approx(0.05, abs=0.01)
    used = [u for u in out if u.startswith("/r")]
    assert len(set(used)) == len(used)  # fewer than 10,000 drawn: every region renders
    assert out == soak.mixed_urls(tiles, regions, infos, 20_000, random.Random(3))  # deterministic


def test_growth_is_measured_over_the_second_half() -> None:
    # Fast growth at first (caches filling), flat later: passes.
    warmup = [(t * 5.0, 100.0 + 40 * t) for t in range(10)] + [(50.0 + t * 5.0, 500.0) for t in range(10)]
    assert soak.growth_pct(warmup) == pytest.approx(0.0)
    # Steady growth: 400 -> 600 over the second half; the ends averaged over three samples each.
    steady = [(t * 5.0, 200.0 + 20 * t) for t in range(21)]
    assert soak.growth_pct(steady) == pytest.approx(100 * (580 - 420) / 420)
    assert soak.growth_pct([]) == 0.0
    assert soak.growth_pct([(0.0, 10.0)]) == 0.0


def test_descriptor_drift() -> None:
    flat = [(t * 5.0, 40.0 + (t % 3)) for t in range(20)]
    assert soak.fds_flat(flat)
    leaking = [(t * 5.0, 40.0 + 5 * t) for t in range(20)]
    assert soak.fd_drift(leaking) == 45
    assert not soak.fds_flat(leaking)
    closing = [(t * 5.0, 120.0 - 4 * t) for t in range(20)]  # levels and connections let go
    assert soak.fd_drift(closing) == -36
    assert soak.fds_flat(closing)


def test_verdicts_and_report() -> None:
    result = {
        "date": "2026-12-06 16:00",
        "host": "box",
        "cpu": "Some CPU",
        "ncpu": 2,
        "code": "abc123",
        "server": "iiifserver serve --workers 2",
        "images_desc": "5 pyramids",
        "soak": {
            "seconds": 100,
            "concurrency": 32,
            "wrk": _wrk(status_5xx=3, status_2xx=997),
            "samples": _samples([100, 300, 400, 400, 401, 400, 402, 401, 400, 401], [30] * 10, pid="101"),
        },
        "flood": {
            "seconds": 30,
            "concurrency": 8,
            "quiet": _wrk(lat_p99_us=10_000),
            "flooded": _wrk(lat_p99_us=45_000),
            "flood": _wrk(requests=50),
            "flood_desc": "big renders",
        },
    }
    # A second worker that grows without end.
    for sample, rss in zip(result["soak"]["samples"], range(100, 1100, 100), strict=True):  # type: ignore[index]
        sample["workers"]["102"] = {"rss_mb": rss, "fds": 30}
    verdict = {t: (m, ok) for t, m, ok in soak.verdicts(result)}
    assert verdict["no 5xx in the soak"] == ("3 of 1000", False)
    assert verdict["worker 101: RSS growth, second half < 10 %"][1]
    assert not verdict["worker 102: RSS growth, second half < 10 %"][1]
    assert verdict["worker 101: open descriptors flat"][1]
    assert verdict["tile p99 flooded <= 3x quiet"] == ("45.0 vs 10.0 ms (4.50x)", False)
    md = soak.report_md(result)
    assert "| no 5xx in the soak | 3 of 1000 | FAIL |" in md
    assert "| worker 101: open descriptors flat | drift +0 | PASS |" in md
    assert "Some CPU" in md
    assert "| flooded |" in md


def test_parse_wrk_reads_the_soak_fields() -> None:
    # The soak script itself runs against a server in test_wrk_script.py.
    assert load.parse_wrk('noise\nWRK_RESULT {"requests":3,"status_5xx":1}\n') == {"requests": 3, "status_5xx": 1}


def test_result_file_names(tmp_path: Any) -> None:
    result = {"day": "2026-12-06", "host": "Box.local", "cpu": "Intel(R) Xeon(R) Processor", "date": "", "ncpu": 2}
    path = soak.write_results(result, tmp_path, "short")
    assert path.name == "2026-12-06-box-local-intel-xeon-processor-soak-short.json"
    assert path.with_suffix(".md").read_text().startswith("# Soak")


def test_flood_verdict_is_the_median_round() -> None:
    rounds = [
        {"quiet": _wrk(lat_p99_us=q), "flooded": _wrk(lat_p99_us=f), "flood": _wrk(requests=20)}
        for q, f in ((2000, 9000), (2000, 5000), (2500, 5000))  # 4.5x, 2.5x, 2.0x
    ]
    result = {"flood": {"seconds": 20, "concurrency": 8, **rounds[1], "rounds": rounds, "flood_desc": "renders"}}
    [(target, measured, ok)] = soak.verdicts(result)
    assert target == "tile p99 flooded <= 3x quiet (median of rounds)"
    assert measured == "5.0 vs 2.0 ms (2.50x; rounds 2.00x, 2.50x, 4.50x)"
    assert ok
    md = soak.report_md({**result, "date": "d", "host": "h", "cpu": "c", "ncpu": 2, "code": "x", "server": "s",
                         "images_desc": "i"})  # fmt: skip
    assert "3 round(s)" in md
    assert "the flood got 60 responses" in md
    assert "| 3: flooded | 100 | 1.5 | 5.0 | 50.0 |" in md
