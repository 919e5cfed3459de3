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


def listeners(port: int) -> int:
    """Listening IPv4 TCP sockets on 127.0.0.1:``port`` (``/proc/net/tcp``): one per worker that
    is up. A dying worker's socket closes when the last of its threads has exited, which may be
    after its main thread shows as a zombie."""
    local = f"0100007F:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1] == local and row.split()[3] == "0A")


def answered(url: str) -> str:
    """One request on a new connection (urllib opens one per request): "ok" for a 200 with a
    JPEG, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            head = response.read(2)
            return "ok" if response.status == 200 and head == b"\xff\xd8" else f"{response.status} {head!r}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read()[:200]!r}"
    except OSError as exc:
        return repr(exc)


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
        assert wait_for(lambda: len(workers_of(proc.pid)) == 2 and listeners(port) == 2, 30)
        before = workers_of(proc.pid)
        assert {answered(url) for _ in range(10)} == {"ok"}
        victim = min(before)
        os.kill(victim, signal.SIGSEGV)  # what a segmentation fault in a decoder does to it
        assert wait_for(lambda: listeners(port) == 1, 10)
        # The dead worker's listening socket closed with it: every new connection now reaches the
        # live worker, which answers while the supervisor starts a replacement. (Connections the
        # kernel had queued on the dying worker's socket are reset: a client retries those.)
        survivor = before - {victim}
        during = [answered(url) for _ in range(20)]
        assert set(during) == {"ok"}, during
        assert survivor <= workers_of(proc.pid)
        assert wait_for(lambda: len(workers_of(proc.pid)) == 2, 60), "no replacement worker"
        replacement = workers_of(proc.pid) - before
        assert len(replacement) == 1
        # The replacement binds its own socket once its app is up; from then on the kernel gives
        # it about half of the new connections, and all of them are answered.
        assert wait_for(lambda: listeners(port) == 2, 60), "the replacement never listened"
        after = [answered(url) for _ in range(40)]
        assert set(after) == {"ok"}, after
        assert proc.poll() is None  # the server itself never stopped
    finally:
        stop_server(proc)
