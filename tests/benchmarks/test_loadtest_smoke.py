"""End to end: benchmarks/loadtest.py (Locust) against a real `iiifserver serve` for a few seconds.

The server runs from this environment's `iiifserver` script (the project's .venv) on a free
127.0.0.1 port, in its own session, on a small generated pyramid and 12 aliases of it, and is
stopped by its PID. Skipped when Locust is not installed (the optional extra `bench`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
LOADTEST = REPO / "benchmarks" / "loadtest.py"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None,
        reason="Locust is not installed: it comes with the optional extra 'bench' (pip install -e '.[bench]')",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str], Path]]:
    import pyvips

    images = tmp_path_factory.mktemp("loadtest-images")
    image = pyvips.Image.perlin(2500, 1800, cell_size=96, uchar=True).colourspace("srgb")
    image.tiffsave(
        str(images / "pic.tif"), tile=True, pyramid=True, compression="jpeg", Q=85, tile_width=256, tile_height=256
    )
    ids = []
    for i in range(12):
        (images / f"pic_{i:02d}.tif").symlink_to("pic.tif")
        ids.append(f"pic_{i:02d}.tif")
    log = tmp_path_factory.mktemp("loadtest-server") / "server.log"
    proc, port = start_server(images, tmp_path_factory.mktemp("loadtest-cache"), log=log)
    try:
        yield f"http://127.0.0.1:{port}/iiif/3", ids, log
    finally:
        stop_server(proc)


@pytest.mark.parametrize("mode", ["cold", "repeat"])
def test_loadtest_runs_against_iiifserver(server: tuple[str, list[str], Path], tmp_path: Path, mode: str) -> None:
    base, ids, log = server
    summary_path = tmp_path / "summary.json"
    cmd = [
        sys.executable,
        str(LOADTEST),
        base,
        "--ids",
        *ids,
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        "5s",
        "--mode",
        mode,
        "--csv",
        str(tmp_path / "run"),
        "--summary-json",
        str(summary_path),
        "--check-every",
        "5",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert summary_path.exists(), output
    summary = json.loads(summary_path.read_text())
    assert summary["mode"] == mode
    assert summary["users"] == 4
    assert summary["total"]["requests"] > 0, output
    assert summary["total"]["failures"] == 0, summary["errors"]
    assert summary["tile"]["requests"] > 0
    assert summary["info"]["requests"] >= 1
    assert summary["tile"]["p50_ms"] is not None
    assert summary["tile"]["p99_ms"] >= summary["tile"]["p50_ms"]
    assert summary["tile"]["avg_bytes"] > 0
    assert "tiles" in result.stdout
    assert "p99" in output
    assert (tmp_path / "run_stats.csv").exists()
    assert "Traceback" not in log.read_text(errors="replace")
