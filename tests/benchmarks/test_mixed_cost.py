"""benchmarks/mixed_cost.py: one in-process replay of a mixed list over tiny copies, the report."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pyvips

from benchmarks import mixed_cost
from benchmarks.harness import images as img
from benchmarks.harness import mix


def test_a_replay_reports_every_kind_of_the_list_and_all(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = images / "pyramid.tif"
    picture = pyvips.Image.xyz(1200, 900)[0].cast("uchar").bandjoin([128, 64]).copy(interpretation="srgb")
    picture.tiffsave(str(source), tile=True, pyramid=True, compression="jpeg", tile_width=256, tile_height=256)
    shutil.copyfile(source, images / "artwork_small_q85.tif")  # the warm-up image
    collection = []
    for i in range(4):
        shutil.copyfile(source, images / f"copy_{i}.tif")
        collection.append(mix.MixImage(f"copy_{i}.tif", mix.pyramid(1200, 900)))
    requests = mix.mixed_requests(collection, 400, seed=3)
    record = asyncio.run(mixed_cost._measure(images, tmp_path / "scratch", requests))
    kinds = {r.kind for r in requests}
    assert set(record) == kinds | {mixed_cost.ALL}
    assert sum(record[k]["requests"] for k in kinds) == record[mixed_cost.ALL]["requests"] == 400
    for kind in kinds:
        assert 0 <= record[kind]["sys_ms"] <= record[kind]["ms"], kind
    # the overall figure is the request-weighted mean of the kinds'
    weighted = sum(record[k]["ms"] * record[k]["requests"] for k in kinds) / 400
    assert abs(weighted - record[mixed_cost.ALL]["ms"]) < 1e-6
    assert record["download_max"]["ms"] > record["viewer"]["ms"]  # a full image costs more than a tile


def test_report_ratios_are_each_repeats_own_and_name_no_machine_paths() -> None:
    def run(ms: float) -> dict[str, dict[str, float]]:
        return {"viewer": {"requests": 10, "ms": ms, "sys_ms": 0.1}, "all": {"requests": 10, "ms": ms, "sys_ms": 0.1}}

    runs = {"baseline abc": [run(2.0), run(4.0), run(3.0)], "this tree (def)": [run(1.0), run(3.0), run(1.5)]}
    record = {
        "machine": {"date": "2026-12-07 01:00", "cpu": "Some CPU", "cpus": 2, "host": "h", "commit": "def"},
        "n": 10,
        "big": 1,
        "small": 2,
        "seed": "1",
        "repeats": 3,
        "variants": {label: mixed_cost._summary(found) for label, found in runs.items()},
        "runs": runs,
    }
    record["machine"]["command"] = "python -m benchmarks.mixed_cost --repeats 3"
    ratios = mixed_cost._ratios(record)
    assert ratios["viewer"] == 0.5  # median of 0.5, 0.75, 0.5: not 1.5 / 3.0
    record["ratios"] = ratios
    report = mixed_cost._report(record)
    assert "| viewer | 10 | 3.00 (2.00-4.00; sys 0.10) | 1.50 (1.00-3.00; sys 0.10) | 0.50 |" in report
    assert "Some CPU" in report
    assert "/tmp" not in report
    assert "/work" not in report


def test_read_once_reads_each_named_file_once_and_skips_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "a.tif").write_bytes(b"x" * 1000)
    (tmp_path / "b.tif").write_bytes(b"y" * 10)
    assert img.read_once(tmp_path, ["a.tif", "b.tif", "a.tif", "gone.tif"]) == 1010


def test_kind_latency_summary_names_the_kinds_of_the_slowest_one_percent() -> None:
    from benchmarks.harness import kind_latency

    latencies = {"viewer": [1.0] * 990, "download_max": [500.0] * 5, "region": [50.0] * 5}
    assert kind_latency.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    text = kind_latency.summary(latencies)
    assert "all: 1000 requests, p50 1.0 ms, p99 50.0 ms" in text
    assert "slowest 1 % by kind: {'download_max': 5, 'region': 5}" in text
