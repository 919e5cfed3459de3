"""benchmarks/region_cost.py: it renders the same requests both ways, compares their pixels and
writes its table and record."""

from __future__ import annotations

import json
from pathlib import Path

import pyvips

from benchmarks import region_cost


def test_writes_both_ways_and_their_difference(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    picture = pyvips.Image.xyz(1500, 1100).extract_band(0).cast("uchar").bandjoin([128, 64])
    picture.tiffsave(
        str(images / region_cost.IMAGE), tile=True, tile_width=256, tile_height=256, pyramid=True,
        compression="jpeg", Q=85,
    )  # fmt: skip
    (images / "artwork_big_q85_00.tif").symlink_to(images / region_cost.IMAGE)  # an alias: another image
    results = tmp_path / "results"
    assert (
        region_cost.main(["--images", str(images), "--requests", "6", "--repeats", "1", "--results", str(results)]) == 0
    )
    [record_file] = results.glob("*-region-cost.json")
    record = json.loads(record_file.read_text())
    assert record["cpu"]
    assert set(record["lists"]) == {"unaligned", "thumbnails", "thumbnails of many images"}
    assert record["lists"]["thumbnails of many images"]["requests"] == 2
    for figures in record["lists"].values():
        assert figures["median_cpu_ms_before"] > 0
        assert figures["median_cpu_ms_after"] > 0
        # Two resamplings of one picture, each encoded at the default quality (85): a request's
        # mean difference stays near a level (1.04 on this gradient's worst thumbnail), the mean
        # of them well under one.
        assert figures["mean_abs_diff_max"] < 1.25
        assert figures["mean_abs_diff_mean"] < 0.5
    report = record_file.with_suffix(".md").read_text()
    assert "| unaligned | 6 |" in report
    assert str(tmp_path) not in report
