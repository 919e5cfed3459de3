"""Helpers of the object-storage tests: credentials in the environment, buckets, uploads.

Uploads go through boto3 directly (the test's own client, not the server's): what the server
reads is what any S3 client wrote.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.seaweedfs_server import ACCESS_KEY, SECRET_KEY, SeaweedFS

_counter = itertools.count()


def use_store(monkeypatch: pytest.MonkeyPatch, server: SeaweedFS, *, secret: str = SECRET_KEY) -> None:
    """The standard variables boto3 resolves, pointing at ``server``."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    # No profile of the machine running the tests may take part.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def s3_client(server: SeaweedFS) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


BUCKET = "iiif-tests"


@dataclass(frozen=True, slots=True)
class Place:
    """A fresh prefix of the tests' one bucket (SeaweedFS gives each bucket volumes of its own:
    one bucket per test would run out of them)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def new_place(server: SeaweedFS) -> Place:
    client = s3_client(server)
    try:
        client.head_bucket(Bucket=BUCKET)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=BUCKET)
    return Place(BUCKET, f"run-{next(_counter)}-{os.getpid()}/scans")


def put(server: SeaweedFS, bucket: str, key: str, body: bytes) -> None:
    s3_client(server).put_object(Bucket=bucket, Key=key, Body=body)


class Partition:
    """A loopback TCP forwarder to the store that can be cut and mended: the network between the
    server and its store going away and coming back (the store itself keeps running: restarting
    SeaweedFS takes its volumes some 20 s to register again). Not a mock: every byte is the store's.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mend(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break the open ones (pooled keep-alive connections too)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone would not)
            self._listener.close()
            self._listener = None
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
