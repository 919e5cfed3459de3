"""The real server over real sockets: what only a live uvicorn shows (raw request lines,
worker processes, concurrency, every demo image)."""

from __future__ import annotations

import io
import json
import os
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import VALIDATOR_ID, LiveServer

pytestmark = pytest.mark.e2e


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def raw_request(port: int, request_line: str) -> tuple[int, bytes]:
    """Send a request line byte for byte (like curl --path-as-is): no client normalisation."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def demo_identifiers(images: Path) -> list[str]:
    return sorted(p.stem for p in images.glob("*.tif"))


def test_every_demo_image_serves_info_and_a_tile(live_server: LiveServer) -> None:
    ids = demo_identifiers(live_server.images)
    assert VALIDATOR_ID in ids
    assert len(ids) >= 5
    for identifier in ids:
        status, headers, body = fetch(f"{live_server.base}/iiif/3/{identifier}/info.json")
        assert status == 200, identifier
        info = json.loads(body)
        assert info["id"] == f"{live_server.base}/iiif/3/{identifier}"
        tile = info["tiles"][0]
        status, headers, body = fetch(
            f"{live_server.base}/iiif/3/{identifier}/0,0,{tile['width']},{tile['height']}/max/0/default.jpg"
        )
        assert status == 200, identifier
        assert headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(body)) as img:
            assert img.size == (min(tile["width"], info["width"]), min(tile["height"], info["height"]))


@pytest.mark.parametrize(
    "path",
    [
        "/iiif/3/../../etc/passwd/full/max/0/default.jpg",  # A02: dot segments sent verbatim
        "/iiif/3/..%2F..%2Fetc%2Fpasswd/info.json",  # A01
        "/iiif/3/%2Fetc%2Fpasswd/info.json",  # A04
        "/iiif/3/a%00b/info.json",  # A10
    ],
)
def test_traversal_over_a_real_socket(live_server: LiveServer, path: str) -> None:
    status, body = raw_request(live_server.port, f"GET {path} HTTP/1.1")
    assert status in (400, 404)
    assert b"root:" not in body  # the file's content never leaks
    assert str(live_server.images).encode() not in body


def test_concurrent_tiles_from_two_workers(live_server: LiveServer) -> None:
    urls = [
        f"{live_server.base}/iiif/3/painting/{x * 512},{y * 512},512,512/256,/0/default.jpg"
        for x in range(4)
        for y in range(4)
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(fetch, urls))
    assert [status for status, _, _ in results] == [200] * len(urls)
    for _, _, body in results:
        with Image.open(io.BytesIO(body)) as img:
            assert img.size == (256, 256)


def test_cors_on_options_and_errors(live_server: LiveServer) -> None:
    request = urllib.request.Request(f"{live_server.base}/iiif/3/painting/info.json", method="OPTIONS")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
        assert response.headers["access-control-allow-origin"] == "*"
    status, headers, _ = fetch(f"{live_server.base}/iiif/3/painting/full/max/0/default.xyz")
    assert status == 400
    assert headers["access-control-allow-origin"] == "*"


def test_base_uri_redirect_is_absolute(live_server: LiveServer) -> None:
    status, _ = raw_request(live_server.port, "GET /iiif/3/painting HTTP/1.1")
    assert status == 303
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /iiif/3/painting HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % live_server.port
        )
        head = sock.recv(65536).decode("latin-1")
    assert f"location: {live_server.base}/iiif/3/painting/info.json" in head.lower()


def test_responses_on_one_keep_alive_connection_are_framed_exactly(live_server: LiveServer) -> None:
    # Heads are held and sent with their bodies (web/http_protocol.py): on one connection, every
    # kind of response (body, HEAD, 304, redirect, error, streamed file) must arrive whole.
    import http.client

    tile = "/iiif/3/painting/0,0,512,512/256,/0/default.jpg"
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    try:
        connection.request("GET", tile)
        first = connection.getresponse()
        body = first.read()
        etag = first.getheader("etag")
        assert first.status == 200
        assert len(body) == int(first.getheader("content-length") or -1)
        assert Image.open(io.BytesIO(body)).size == (256, 256)
        steps: list[tuple[str, str, dict[str, str], int, int | None]] = [
            ("HEAD", tile, {}, 200, 0),
            ("GET", tile, {"If-None-Match": etag or ""}, 304, 0),
            ("GET", "/iiif/3/painting", {}, 303, None),
            ("GET", "/iiif/3/painting/full/max/0/default.xyz", {}, 400, None),
            ("GET", "/viewers/openseadragon/openseadragon.min.js", {}, 200, None),
            ("GET", "/iiif/3/painting/info.json", {}, 200, None),
            ("GET", tile, {}, 200, len(body)),
        ]
        for method, path, headers, status, size in steps:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            data = response.read()
            assert response.status == status, (method, path)
            if size is not None:
                assert len(data) == size, (method, path)
            length = response.getheader("content-length")
            if length is not None and method != "HEAD":
                assert len(data) == int(length), (method, path)
    finally:
        connection.close()


def _sockets(pid: int, port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets on local ``port`` in ``state`` (01 established, 0A listening)
    that process ``pid`` holds (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                found.add(fields[9])
    return found


def test_each_worker_accepts_on_a_socket_of_its_own(live_server: LiveServer) -> None:
    # iiifserver/serving.py: with one shared socket, a burst of keep-alive connections landed on
    # whichever worker woke first; with SO_REUSEPORT the kernel spreads them.
    children = Path(f"/proc/{live_server.pid}/task/{live_server.pid}/children").read_text().split()
    workers = [int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    if len(workers) < 2:
        pytest.skip("one worker process (one core)")
    listening = [_sockets(pid, live_server.port, "0A") for pid in workers]
    assert all(len(inodes) == 1 for inodes in listening), listening
    assert len(set.union(*listening)) == len(workers)  # distinct sockets, not one shared
    assert not _sockets(live_server.pid, live_server.port, "0A")  # none left in the parent
    connections = [socket.create_connection(("127.0.0.1", live_server.port), timeout=10) for _ in range(16)]
    try:
        for sock in connections:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for sock in connections:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        per_worker = [len(_sockets(pid, live_server.port, "01")) for pid in workers]
        assert sum(per_worker) == 16
        assert min(per_worker) >= 1, per_worker  # all 16 on one of two sockets: odds 1 in 32768
    finally:
        for sock in connections:
            sock.close()


def test_cold_tiles_over_a_real_socket_are_the_full_answer(
    demo_images: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Our protocol answers cold stored tiles itself (``ImageEndpoint.answer_in_protocol``):
    byte for byte, header for header, what the app's full path answers in process."""
    import asyncio
    import http.client

    from iiifserver.app import create_app
    from iiifserver.asgi_call import call
    from iiifserver.config import Settings
    from tests.e2e.conftest import start_server, stop_server

    token = "e2e-admin-token-0123456789"
    cache = tmp_path_factory.mktemp("at-once-cache")
    log = tmp_path_factory.mktemp("at-once-log") / "server.log"
    # The image stays trusted throughout (by default it is re-checked every second, and a
    # request after its trust ran out goes the full way to check it).
    extra = ("--admin-token", token, "--source-check-interval", "3600")
    proc, port = start_server(demo_images, cache, *extra, log=log, workers=1)
    reference_cache = tmp_path_factory.mktemp("reference-cache")
    settings = Settings(images=demo_images, cache=reference_cache, source_check_interval=3600)
    reference = create_app(settings)

    async def reference_answer(path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        # Each answer on a loop of its own, so nothing of it may outlive the loop: a source
        # re-check or disk write left pending there would hang the next request that joins it.
        try:
            return await call(reference, path, headers=[("host", f"127.0.0.1:{port}")])
        finally:
            await reference.state.image_service.drain()

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/iiif/3/painting/info.json")
        info = json.loads(connection.getresponse().read())
        width, height = info["width"], info["height"]
        paths = [
            f"/iiif/3/painting/{x},{y},{min(512, width - x)},{min(512, height - y)}/"
            f"{-(-min(512, width - x) // 2)},/0/default.jpg"
            for y in range(0, height, 512)
            for x in range(0, width, 512)
        ]
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            got = {k.lower(): v for k, v in response.getheaders() if k.lower() not in ("date", "server")}
            status, headers, expected = asyncio.run(reference_answer(path))
            assert (response.status, body) == (status, expected), path
            assert got == dict(headers), path
        connection.request("GET", "/admin/stats", headers={"Authorization": f"Bearer {token}"})
        stats = json.loads(connection.getresponse().read())
        # info.json opened the image, so every tile whose bytes were in the page cache was
        # answered in the protocol; one that was not (a busy machine) went the full way, read in a thread.
        assert stats["fast_path"]["tiles_in_protocol"] >= 0.9 * len(paths)
        assert stats["service"]["renders"] == 0
    finally:
        connection.close()
        stop_server(proc)
