"""benchmarks/jp2.py: the URL lists and the result table (the runs themselves are benchmarks)."""

from __future__ import annotations

from typing import Any

from benchmarks import jp2 as bench
from benchmarks.harness import load


def test_region_urls_are_unaligned_boxes_inside_the_image_with_their_output_size() -> None:
    names = ["lossy_t256_c0.jp2", "lossy_t256_c1.jp2"]
    urls = load.parse_url_list(bench.region_urls(names, 200, seed=1), "/iiif/3")
    assert len(urls) == 200
    aligned = 0
    for k, (path, width, height) in enumerate(urls):
        assert path.startswith(f"/iiif/3/{names[k % 2]}/")  # spread over the copies
        x, y, w, h = (int(v) for v in path.split("/")[4].split(","))
        assert x >= 0
        assert y >= 0
        assert x + w <= bench.W
        assert y + h <= bench.H
        out_w = int(path.split("/")[5].rstrip(","))
        assert width == out_w
        assert out_w in (-(-w // 2), -(-w // 4))
        assert height is not None
        assert abs(height - h * out_w / w) <= 1
        aligned += x % 256 == 0 and y % 256 == 0
    assert aligned < 5


def _record(server: str, rps: float) -> dict[str, Any]:
    return {
        "server": server,
        "file": "lossy_t256",
        "workload": "tiles",
        "rps_ok": rps,
        "p50_ms": 10.0,
        "p99_ms": 40.0,
        "server_cpu_ms_per_req": 5.0,
        "errors": 0,
        "check_failures": 0,
        "wraps": 0,
    }


def test_table_gives_the_ratio_to_iipsrv() -> None:
    text = bench.table([_record("iipsrv", 100.0), _record("iiifserver", 150.0)])
    row = text.splitlines()[2]
    assert row.startswith("| lossy_t256 | tiles | 100.0 | 150.0 | 1.50x |")
    assert row.endswith("| 0 / 0 |")  # the list never wrapped: every request was cold
