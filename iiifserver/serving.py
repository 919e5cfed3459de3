"""Running the worker processes: uvicorn's supervisor, with a listening socket per worker.

Owns: the sockets the workers accept on. uvicorn binds one socket in the parent and every
worker accepts from it; the event loop (libuv) accepts every connection waiting when it wakes,
so a client that opens a few keep-alive connections at once (a proxy's upstream pool, a load
generator) often lands entirely on one worker while the others idle. Here each worker binds
its own socket with ``SO_REUSEPORT`` and the kernel spreads new connections over them. That
leans on how uvicorn hands sockets to its workers (``web.uvicorn_contract`` checks it before
start-up; when it does not hold, the workers share one socket, as uvicorn does by default).
Must not know: the app, IIIF.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import uvicorn
from uvicorn.supervisors import Multiprocess

from iiifserver.web import uvicorn_contract


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other ``SO_REUSEPORT`` sockets may share."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class PerWorkerSocket(list[socket.socket]):
    """The "sockets" uvicorn hands to each worker: empty when pickled, and in the worker it
    binds that worker's own socket the first time uvicorn iterates it (never in the parent: a
    socket nobody accepts on would still get its share of connections)."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        super().__init__()
        self.host, self.port, self.backlog = host, port, backlog
        self.parent = os.getpid()

    def __iter__(self) -> Iterator[socket.socket]:
        if not list.__len__(self) and os.getpid() != self.parent:
            list.append(self, reuseport_socket(self.host, self.port, self.backlog))
        return list.__iter__(self)

    def __reduce__(self) -> tuple[type[PerWorkerSocket], tuple[str, int, int], dict[str, int]]:
        return PerWorkerSocket, (self.host, self.port, self.backlog), {"parent": self.parent}


def run(config: uvicorn.Config) -> None:
    """``uvicorn.run`` for an app given as an import string, with a socket per worker."""
    try:
        if config.workers <= 1:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                sys.exit(3)  # uvicorn's exit status for a failed start-up
            return
        if not uvicorn_contract.per_worker_sockets():
            Multiprocess(config, sockets=[config.bind_socket()]).run()  # what uvicorn.run does
            return
        # Fails here, in the parent, if the port is taken (by anything not sharing it).
        reuseport_socket(config.host, config.port, config.backlog).close()
        Multiprocess(config, sockets=PerWorkerSocket(config.host, config.port, config.backlog)).run()
    except KeyboardInterrupt:
        pass
