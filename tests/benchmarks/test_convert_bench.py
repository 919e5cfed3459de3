"""benchmarks/convert_bench.py --quick: both sides run and the results file holds both figures.

Skipped without the ``vips`` command-line tool (Debian libvips-tools; ``scripts/install.sh --test``
installs it when run as root).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "convert_bench.py"


@pytest.mark.skipif(shutil.which("vips") is None, reason="the vips command-line tool is not installed")
def test_quick_run_writes_both_figures(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--results", str(results), "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [json_file] = results.glob("*-convert-quick.json")
    record = json.loads(json_file.read_text(encoding="utf-8"))
    assert record["megapixels"] == pytest.approx(3.0)
    assert record["iiifserver_mp_per_s"] > 0
    assert record["vips_mp_per_s"] > 0
    assert record["ratio"] == pytest.approx(record["iiifserver_mp_per_s"] / record["vips_mp_per_s"])
    markdown = json_file.with_suffix(".md").read_text(encoding="utf-8")
    assert "| iiifserver convert |" in markdown
    assert "| vips tiffsave |" in markdown
    assert "Ratio iiifserver / vips" in done.stdout
    # both sides wrote a pyramid of each master
    assert sorted(p.name for p in (tmp_path / "work" / "ours").glob("*.tif")) == ["master-11-2000x1500.tif"]
    assert sorted(p.name for p in (tmp_path / "work" / "vips").glob("*.tif")) == ["master-11-2000x1500.tif"]
