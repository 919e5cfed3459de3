"""A listening socket per worker process (SO_REUSEPORT), bound in the worker, never in the parent."""

from __future__ import annotations

import os
import pickle
import socket

from iiifserver.serving import PerWorkerSocket, reuseport_socket


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
