"""A live iiifserver (the real CLI, uvicorn, worker processes) on the demo collection.

The server is started as a subprocess in its own session on a free 127.0.0.1 port and
stopped by its PID (SIGTERM to its process group, SIGKILL after 10 s).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "iiifserver" / "demo" / "assets"
VALIDATOR_ID = "67352ccc-d1b0-11e1-89ae-279075081939"


@dataclass(frozen=True)
class LiveServer:
    base: str  # http://127.0.0.1:PORT
    port: int
    images: Path
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    images: Path, cache: Path, *extra: str, log: Path, workers: int = 2
) -> tuple[subprocess.Popen[bytes], int]:
    """``iiifserver serve`` on a free port, its output in ``log``; returns once /health answers."""
    port = free_port()
    exe = Path(sys.executable).parent / "iiifserver"
    cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--images", str(images)]
    cmd += ["--cache", str(cache), "--workers", str(workers), "--log-level", "warning", *extra]
    with log.open("wb") as out:  # a file, not a pipe: a pipe nobody reads can stall the server
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"iiifserver exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("iiifserver did not answer /health within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the group id is its PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def live_server(demo_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("live-log") / "server.log"
    proc, port = start_server(demo_images, tmp_path_factory.mktemp("live-cache"), log=log)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", port, demo_images, proc.pid)
    finally:
        stop_server(proc)
