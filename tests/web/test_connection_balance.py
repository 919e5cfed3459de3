"""Keep-alive connections evened out across worker processes (``web.connection_balance``): the
counts exchanged through the run folder, the budget of connections to close, and a real server
of two workers whose connections the kernel spread unevenly."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iiifserver.config import METRICS_DIR_ENV
from iiifserver.web import connection_balance
from iiifserver.web.connection_balance import Balance
from iiifserver.web.connection_guard import WAIT, ConnectionLimits, Guard


def _other(folder: Path, pid: int, count: int, age: float = 0.0) -> Path:
    """Another worker's count file, as its ``Balance.publish`` writes it."""
    path = folder / connection_balance.FOLDER / str(pid)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(f"{count:<12d}".encode())
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


@pytest.fixture
def live_pid() -> int:
    """A process that is alive for the test (the test runner's parent)."""
    return os.getppid()


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_fuller_worker_closes_its_excess(tmp_path: Path, live_pid: int) -> None:
    _other(tmp_path, live_pid, 23)
    balance = Balance(tmp_path)
    balance.refresh(41)
    # 9 over the share of 64 over two workers; half of the closed connections come back
    assert balance.budget == 2 * (41 - 32)
    assert [balance.take() for _ in range(19)] == [True] * 18 + [False]
    assert balance.closed == 18
    balance.refresh(33)  # recomputed, not added: the clients' new connections land anywhere
    assert balance.budget == 2 * (33 - 28)


def test_the_emptier_worker_and_near_even_counts_close_nothing(tmp_path: Path, live_pid: int) -> None:
    _other(tmp_path, live_pid, 41)
    balance = Balance(tmp_path)
    balance.refresh(23)
    assert balance.budget == 0
    assert not balance.take()
    _other(tmp_path, live_pid, 32)
    balance.refresh(33)  # one more: what an odd total leaves
    assert balance.budget == 0
    balance.refresh(34)
    assert balance.budget == 2  # two more than the other: one above the share of 33


def test_three_workers_share_the_total(tmp_path: Path, live_pid: int) -> None:
    _other(tmp_path, live_pid, 10)
    _other(tmp_path, 1, 10)  # init: alive, and a count like any other worker's
    balance = Balance(tmp_path)
    balance.refresh(16)
    assert balance.budget == 6  # 4 above the share of 12; a third of the closed come back


def test_counts_of_gone_stale_or_garbled_workers_are_not_believed(tmp_path: Path, live_pid: int, dead_pid: int) -> None:
    _other(tmp_path, dead_pid, 0)
    _other(tmp_path, live_pid, 0, age=connection_balance.STALE + 5)
    (tmp_path / connection_balance.FOLDER / "1").write_bytes(b"not a number")
    (tmp_path / connection_balance.FOLDER / "notes.txt").write_bytes(b"0")
    balance = Balance(tmp_path)
    assert balance.others() == []
    balance.refresh(40)
    assert balance.budget == 0  # alone: nothing to even out


def test_publishing_and_forgetting(tmp_path: Path, live_pid: int) -> None:
    balance = Balance(tmp_path)
    own = tmp_path / connection_balance.FOLDER / str(os.getpid())
    balance.publish(1234)
    assert own.read_bytes() == b"1234        "
    balance.publish(7)  # fixed width: no digit of the longer number left behind
    assert int(own.read_bytes()) == 7
    seen = Balance(tmp_path, pid=live_pid)  # another worker reads it
    assert seen.others() == [7]
    connection_balance.forget(tmp_path, os.getpid())  # the supervisor, when the worker has gone
    assert not own.exists()
    assert seen.others() == []
    seen.close()
    assert list((tmp_path / connection_balance.FOLDER).iterdir()) == []


class _Waiting:
    """What the sweep reads of a connection whose request the app is answering."""

    _phase = WAIT
    _open = 1

    def __init__(self, since: float) -> None:
        self._since = since


def _limits(balance: bool) -> ConnectionLimits:
    return ConnectionLimits(10.0, 30.0, 5.0, 8192, 32768, 100, balance)


def test_the_guard_publishes_on_its_sweep_and_when_the_last_connection_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_pid: int
) -> None:
    import asyncio

    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(connection_balance, "_balances", {})
    loop = asyncio.new_event_loop()
    try:
        assert Guard(_limits(False), loop).balance is None  # off: nothing written
        assert not (tmp_path / connection_balance.FOLDER).exists()
        guard = Guard(_limits(True), loop)
        assert guard.balance is not None
        assert Guard(_limits(True), loop).balance is guard.balance  # one per process and run
        _other(tmp_path, live_pid, 1)
        connections = [_Waiting(guard.now) for _ in range(4)]
        guard.connections.update(connections)  # type: ignore[arg-type]
        guard.sweep()
        if guard._timer is not None:
            guard._timer.cancel()
        own = tmp_path / connection_balance.FOLDER / str(os.getpid())
        assert int(own.read_bytes()) == 4
        assert guard.balance.budget == 2 * (4 - 3)  # share of 5 over two: 3
        for connection in connections:
            guard.leave(connection)  # type: ignore[arg-type]
        assert int(own.read_bytes()) == 0
        guard.balance.close()
    finally:
        loop.close()
    monkeypatch.delenv(METRICS_DIR_ENV)
    loop = asyncio.new_event_loop()
    try:
        assert Guard(_limits(True), loop).balance is None  # no run folder (tests, tools)
    finally:
        loop.close()


# -- a real server ------------------------------------------------------------------------------


def _sockets(port: int, state: str) -> set[str]:
    """Socket inodes (as /proc/PID/fd links name them) bound to local ``port`` in TCP ``state``
    (``01`` established, ``0A`` listening)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
                    found.add(f"socket:[{fields[9]}]")
    return found


def _held(pid: int, sockets: set[str]) -> int:
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            held += os.readlink(f"/proc/{pid}/fd/{fd}") in sockets
    return held


def _established(pids: list[int], port: int) -> dict[int, int]:
    """Established server-side connections on ``port`` held by each of ``pids``."""
    sockets = _sockets(port, "01")
    return {pid: _held(pid, sockets) for pid in pids}


def _workers(server: subprocess.Popen[bytes], port: int) -> list[int]:
    """The server's worker processes: its children that listen on ``port`` (each its own socket)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.pid)], capture_output=True, text=True, check=True)
    listening = _sockets(port, "0A")
    return [int(pid) for pid in out.stdout.split() if _held(int(pid), listening)]


class _Client:
    """A keep-alive client connection that opens a new one when the server says it will close."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.closes = 0
        self.connection = self._open()

    def _open(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.connect()
        return connection

    def get(self, path: str) -> None:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        assert response.status == 200
        if response.getheader("connection", "").lower() == "close":
            self.closes += 1
            self.connection.close()
            self.connection = self._open()


def _spread(pids: list[int], port: int) -> list[int]:
    return sorted(_established(pids, port).values())


@pytest.mark.e2e
@pytest.mark.parametrize("balanced", [True, False])
def test_a_real_server_evens_out_its_connections(tmp_path: Path, balanced: bool) -> None:
    """Two workers, 40 keep-alive connections opened until the kernel has spread them at least 4
    apart; a few seconds of requests later they are at most 1 apart, no request failed, and only
    ``connection: close`` answers moved them. Without balancing the spread stays."""
    from tests.e2e.conftest import start_server, stop_server

    images = Path(__file__).parents[1] / "data" / "conformance"
    flag = "--balance-connections" if balanced else "--no-balance-connections"
    server, port = start_server(images, tmp_path / "cache", flag, log=tmp_path / "server.log", workers=2)
    clients: list[_Client] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_workers(server, port)) < 2:
            time.sleep(0.1)
        pids = _workers(server, port)
        assert len(pids) == 2
        clients = [_Client(port) for _ in range(40)]
        for _ in range(200):  # reopen a few until the kernel's placement is uneven
            time.sleep(0.05)
            spread = _spread(pids, port)
            if sum(spread) == 40 and spread[1] - spread[0] >= 4:
                break
            for client in clients[:4]:
                client.connection.close()
                client.connection = client._open()
        before = _spread(pids, port)
        assert before[1] - before[0] >= 4, before
        path = "/iiif/3/" + next(images.glob("*.png")).name + "/info.json"
        end = time.monotonic() + 10
        after = before
        while time.monotonic() < end:  # requests, a second at a time, until even (balanced)
            second = time.monotonic() + 1
            while time.monotonic() < second:
                for client in clients:
                    client.get(path)
            after = _spread(pids, port)
            if (balanced and after[1] - after[0] <= 1) or (not balanced and time.monotonic() > end - 7):
                break
        closes = sum(client.closes for client in clients)
        assert sum(after) == 40, after
        if balanced:
            assert after[1] - after[0] <= 1, (before, after)
            assert closes >= (before[1] - before[0]) // 2
        else:
            assert after == before
            assert closes == 0
    finally:
        for client in clients:
            client.connection.close()
        stop_server(server)
