"""A listening socket per worker process (SO_REUSEPORT), bound in the worker, never in the parent."""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import pytest

from iiifserver.serving import PerWorkerSocket, PortInUse, check_port_free, reuseport_socket


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_reuseport_sockets_share_a_port() -> None:
    port = _free_port()
    first = reuseport_socket("127.0.0.1", port)
    second = reuseport_socket("127.0.0.1", port)
    try:
        assert first.getsockname() == second.getsockname() == ("127.0.0.1", port)
        assert first.get_inheritable()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the kernel hands it to one of them
    finally:
        first.close()
        second.close()


def test_the_parent_never_binds_and_a_worker_binds_once() -> None:
    port = _free_port()
    sockets = PerWorkerSocket("127.0.0.1", port, 16)
    assert list(sockets) == []  # in the parent: nothing, so no socket without an acceptor
    copy = pickle.loads(pickle.dumps(sockets))
    assert (copy.host, copy.port, copy.backlog, copy.parent) == ("127.0.0.1", port, 16, os.getpid())
    assert list.__len__(copy) == 0
    copy.parent = -1  # as seen from a worker process (another pid)
    try:
        bound = list(copy)
        assert len(bound) == 1
        assert bound[0].getsockname() == ("127.0.0.1", port)
        assert list(copy) == bound  # iterated again by uvicorn (log, shutdown): the same socket
    finally:
        for sock in list.__iter__(copy):
            sock.close()


def test_a_second_server_on_a_port_in_use_fails_clearly(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.e2e.conftest import start_server, stop_server

    images = Path(__file__).parent / "data"
    proc, port = start_server(images, tmp_path / "cache", log=tmp_path / "first.log", workers=2)
    try:
        exe = Path(sys.executable).parent / "iiifserver"
        cmd = [str(exe), "serve", "--port", str(port), "--images", str(images), "--cache", str(tmp_path / "c2")]
        second = subprocess.run([*cmd, "--workers", "2"], capture_output=True, timeout=60, check=False)
        assert second.returncode != 0
        assert b"already in use" in second.stderr
        assert proc.poll() is None  # the first one serves on
    finally:
        stop_server(proc)


def test_check_port_free() -> None:
    port = _free_port()
    check_port_free("127.0.0.1", port)  # nothing there
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(PortInUse, match="already in use"):
            check_port_free("127.0.0.1", port)


def test_settings_command_masks_secrets() -> None:
    from click.testing import CliRunner

    from iiifserver.cli import main

    token = "s3cret-admin-token-value"
    result = CliRunner().invoke(main, ["settings", "-s", f"admin_token={token}", "-s", "metrics_token="])
    assert result.exit_code == 0, result.output
    assert token not in result.output
    assert 'admin_token = "********"' in result.output
    assert 'metrics_token = ""' in result.output  # unset: nothing to hide
