"""End to end: benchmarks/loadtest.py (Locust) against a real `iiifserver serve` for a few seconds.

The server runs from this environment's `iiifserver` script (the project's .venv) on a free
127.0.0.1 port, in its own session, on a small generated pyramid and 12 aliases of it, and is
stopped by its PID. Skipped when Locust is not installed (the optional extra `bench`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOADTEST = REPO / "benchmarks" / "loadtest.py"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                       reason="Locust is not installed: it comes with the optional extra 'bench' "
                              "(pip install -e '.[bench]')"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _iiifserver() -> Path:
    here = Path(sys.executable).parent / "iiifserver"
    return here if here.exists() else REPO / ".venv" / "bin" / "iiifserver"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str], Path]]:
    import pyvips

    images = tmp_path_factory.mktemp("loadtest-images")
    image = pyvips.Image.perlin(2500, 1800, cell_size=96, uchar=True).colourspace("srgb")
    image.tiffsave(str(images / "pic.tif"), tile=True, pyramid=True, compression="jpeg", Q=85,
                   tile_width=256, tile_height=256)
    ids = []
    for i in range(12):
        (images / f"pic_{i:02d}.tif").symlink_to("pic.tif")
        ids.append(f"pic_{i:02d}.tif")
    port = _free_port()
    log = tmp_path_factory.mktemp("loadtest-server") / "server.log"
    cmd = [str(_iiifserver()), "serve", "--host", "127.0.0.1", "--port", str(port), "--images", str(images),
           "--cache", str(tmp_path_factory.mktemp("loadtest-cache")), "--workers", "2", "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"iiifserver exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("iiifserver did not answer /health within 60 s")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/iiif/3", ids, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the group id is its PID
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.mark.parametrize("mode", ["cold", "repeat"])
def test_loadtest_runs_against_iiifserver(server: tuple[str, list[str], Path], tmp_path: Path, mode: str) -> None:
    base, ids, log = server
    summary_path = tmp_path / "summary.json"
    cmd = [sys.executable, str(LOADTEST), base, "--ids", *ids, "--users", "4", "--spawn-rate", "4",
           "--run-time", "5s", "--mode", mode, "--csv", str(tmp_path / "run"), "--summary-json", str(summary_path),
           "--check-every", "5"]
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
