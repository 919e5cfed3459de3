"""A worker process that dies (attack case G03: a crash inside libvips, libtiff or libjpeg ends
the process that ran it) takes only itself down: the other worker keeps answering, and the
supervisor starts a new worker in its place, which then answers its share of new connections."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import VALIDATOR_ID, start_server, stop_server

pytestmark = pytest.mark.e2e

THUMBNAIL = f"/iiif/3/{VALIDATOR_ID}/full/!100,100/0/default.jpg"


def workers_of(parent: int) -> set[int]:
    """The live (not zombie) worker processes ``parent`` spawned (not multiprocessing's
    resource tracker, its other child)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"spawn_main" in command:
            found.add(int(entry))
    return found


def answered(url: str) -> bool:
    """One request on a new connection (urllib opens one per request): a 200 with a JPEG."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200 and response.read(2) == b"\xff\xd8"
    except (OSError, urllib.error.HTTPError):
        return False


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_crashed_worker_is_replaced_and_the_other_keeps_serving(demo_images: Path, tmp_path: Path) -> None:
    proc, port = start_server(demo_images, tmp_path / "cache", log=tmp_path / "server.log", workers=2)
    url = f"http://127.0.0.1:{port}{THUMBNAIL}"
    try:
        assert wait_for(lambda: len(workers_of(proc.pid)) == 2, 30)
        before = workers_of(proc.pid)
        assert all(answered(url) for _ in range(10))
        victim = min(before)
        os.kill(victim, signal.SIGSEGV)  # what a segmentation fault in a decoder does to it
        assert wait_for(lambda: victim not in workers_of(proc.pid), 10)
        # The dead worker's listening socket closed with it: every new connection now reaches the
        # live worker, which answers while the supervisor starts a replacement.
        survivor = before - {victim}
        during = [answered(url) for _ in range(20)]
        assert all(during), during
        assert survivor <= workers_of(proc.pid)
        assert wait_for(lambda: len(workers_of(proc.pid)) == 2, 60), "no replacement worker"
        replacement = workers_of(proc.pid) - before
        assert len(replacement) == 1
        # The replacement binds its own socket once its app is up; from then on the kernel gives
        # it about half of the new connections, and all of them are answered.
        time.sleep(3)
        after = [answered(url) for _ in range(40)]
        assert all(after), after
        assert proc.poll() is None  # the server itself never stopped
    finally:
        stop_server(proc)
