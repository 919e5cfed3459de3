"""benchmarks/convert_cluster.py --quick: the three sides run, make the same pyramids, and the
results file holds every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "convert_cluster.py"
pytestmark = pytest.mark.slow  # a LocalCluster and three conversions of the batch


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--results", str(results), "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [json_file] = results.glob("*-convert-cluster-quick.json")
    record = json.loads(json_file.read_text(encoding="utf-8"))
    assert record["megapixels"] == pytest.approx(6.0)
    for side in ("pool", "cluster", "local"):
        assert record[f"{side}_mp_per_s"] > 0
    assert record["ratio"] == pytest.approx(record["cluster_mp_per_s"] / record["pool_mp_per_s"])
    assert record["round_trip_ms"] > 0
    assert record["cpu"]
    markdown = json_file.with_suffix(".md").read_text(encoding="utf-8")
    assert "Ratio cluster / pool" in markdown
    assert "Scheduler overhead per file" in markdown
    names = ["master-11-2000x1500.tif", "master-12-2000x1500.tif"]
    for side in ("pool", "cluster", "local"):
        assert sorted(p.name for p in (tmp_path / "work" / side).glob("*.tif")) == names
