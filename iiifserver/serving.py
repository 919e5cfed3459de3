"""Running the worker processes: uvicorn's supervisor, with a listening socket per worker.

Owns: the sockets the workers accept on. uvicorn binds one socket in the parent and every
worker accepts from it; the event loop (libuv) accepts every connection waiting when it wakes,
so a client that opens a few keep-alive connections at once (a proxy's upstream pool, a load
generator) often lands entirely on one worker while the others idle. Here each worker binds
its own socket with ``SO_REUSEPORT`` and the kernel spreads new connections over them. That
leans on how uvicorn hands sockets to its workers (``web.uvicorn_contract`` checks it before
start-up; when it does not hold, the workers share one socket, as uvicorn does by default).
``SO_REUSEPORT`` would also let a second server start on the same port and silently take half
the traffic: ``check_port_free`` refuses to start when anything listens there already.
Also owns: telling the caller when a worker process has gone (``on_worker_exit``: the metrics
drop its live gauges). SIGHUP is uvicorn's: each worker is replaced by a new one, started and
ready before the old one is stopped; the new workers read the settings ``serve`` resolved at
start (a changed configuration file needs a restart of ``serve``).
Must not know: the app, IIIF.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator

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


class PortInUse(OSError):
    """Something already listens on the address ``serve`` was asked to listen on."""


def check_port_free(host: str, port: int) -> None:
    """Raise ``PortInUse`` if a socket listens on ``host:port``: a plain bind (``SO_REUSEADDR``
    only, which on Linux passes a port in TIME_WAIT but not a listening one) is refused."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    exc.errno, f"{host}:{port} is already in use (another iiifserver or other program listens there)"
                ) from None
            raise


class Supervisor(Multiprocess):
    """uvicorn's supervisor, telling ``on_worker_exit`` of every worker process that has gone
    (died and replaced, retired by SIGHUP or SIGTTOU, or stopped at shutdown)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], on_worker_exit: Callable[[int], None]):
        super().__init__(config, sockets)
        self.on_worker_exit = on_worker_exit
        self._known: set[int] = set()

    def _reap(self, *, all_gone: bool = False) -> None:
        current = set() if all_gone else {process.pid for process in self.processes if process.pid is not None}
        for pid in self._known - current:
            try:
                self.on_worker_exit(pid)
            except Exception as exc:  # bookkeeping only: never stops the supervisor
                print(f"iiifserver: worker {pid} exit bookkeeping failed: {exc!r}", file=sys.stderr)
        self._known = current

    def init_processes(self) -> None:
        super().init_processes()
        self._reap()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._reap()

    def handle_signals(self) -> None:
        super().handle_signals()
        self._reap()

    def join_all(self) -> None:
        super().join_all()
        self._reap(all_gone=True)


def run(config: uvicorn.Config, on_worker_exit: Callable[[int], None] | None = None) -> None:
    """``uvicorn.run`` for an app given as an import string, with a socket per worker;
    ``on_worker_exit(pid)`` when a worker process has gone (several workers only)."""

    def supervisor(sockets: list[socket.socket]) -> Multiprocess:
        if on_worker_exit is None:
            return Multiprocess(config, sockets=sockets)
        return Supervisor(config, sockets, on_worker_exit)

    try:
        if config.workers <= 1:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                sys.exit(3)  # uvicorn's exit status for a failed start-up
            return
        if not uvicorn_contract.per_worker_sockets():
            supervisor([config.bind_socket()]).run()  # what uvicorn.run does
            return
        # Fails here, in the parent, if the port is taken (by anything not sharing it).
        reuseport_socket(config.host, config.port, config.backlog).close()
        supervisor(PerWorkerSocket(config.host, config.port, config.backlog)).run()
    except KeyboardInterrupt:
        pass
