"""s3:// image roots end to end, through the app, against a running SeaweedFS (no mocks).

The same pyramid is served from a folder and from an object: info.json, a passed-through stored
tile and a rendered region must be the same bytes or pixels. Then the faults: a missing object,
a replaced object (whole, and between a request's version check and its read), the store
stopped, a port nobody answers on, a listener that never answers, wrong credentials.
"""

from __future__ import annotations

import io
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import numpy as np
import pytest
from PIL import Image

from iiifserver.app import create_app
from iiifserver.config import Settings
from tests.object_storage import Partition, Place, new_place, put, use_store
from tests.seaweedfs_server import SECRET_KEY
from tests.web.conftest import Http, _gradient, save_pyramid, solid

CONFORMANCE_JP2 = Path(__file__).parents[1] / "data" / "conformance" / "67352ccc-d1b0-11e1-89ae-279075081939.jp2"


@pytest.fixture(scope="module")
def pyramids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s3-local")
    save_pyramid(_gradient(1100, 700), root / "sample.tif")
    save_pyramid(solid(600, 400, (220, 30, 30)), root / "red.tif")
    save_pyramid(solid(600, 400, (30, 30, 220)), root / "blue.tif")
    _gradient(320, 200).jpegsave(str(root / "photo.jpg"), Q=90)
    shutil.copy(CONFORMANCE_JP2, root / "validator.jp2")
    whole = (root / "sample.tif").read_bytes()
    (root / "cut.tif").write_bytes(whole[: len(whole) // 2])  # a truncated copy: damaged
    return root


def _app(portal: anyio.from_thread.BlockingPortal, tmp: Path, images: str | Path, **overrides: Any) -> Http:
    settings = Settings(
        images=Path(str(images)),
        cache=tmp / "cache",
        manifests=tmp / "manifests",
        block_cache=tmp / "blocks",
        disk_cache_mb=0,
        source_check_interval=0.0,
        tile_threads=2,
        heavy_threads=1,
    )
    return Http(create_app(replace(settings, **overrides)), portal)


@pytest.fixture
def bucket(seaweedfs: Any, monkeypatch: pytest.MonkeyPatch, pyramids: Path) -> Place:
    """The local pyramids uploaded under a fresh prefix."""
    use_store(monkeypatch, seaweedfs)
    place = new_place(seaweedfs)
    for path in pyramids.iterdir():
        put(seaweedfs, place.bucket, place.key(path.name), path.read_bytes())
    return place


def pixels(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_an_s3_root_serves_what_the_same_files_serve_from_a_folder(
    bucket: Place, pyramids: Path, portal: anyio.from_thread.BlockingPortal, tmp_path: Path
) -> None:
    s3 = _app(portal, tmp_path / "s3", bucket.url, admin_token="an-admin-token-for-tests")
    local = _app(portal, tmp_path / "local", pyramids)
    for path in (
        "/iiif/3/sample/info.json",
        "/iiif/3/sample/0,0,256,256/256,/0/default.jpg",  # a stored tile, passed through
        "/iiif/3/sample/1024,512,76,188/76,/0/default.jpg",  # an edge tile, cut
        "/iiif/3/sample/100,50,700,500/350,/0/default.png",  # rendered through the block cache
        "/iiif/3/sample/full/max/90/gray.jpg",
        "/iiif/3/photo.jpg/full/160,/0/default.jpg",  # a plain JPEG object
        "/iiif/2/sample/full/full/0/default.jpg",
        "/iiif/3/validator/info.json",  # JPEG 2000: copied whole into the block cache
        "/iiif/3/validator/100,100,400,300/200,/0/default.png",
    ):
        theirs, ours = local.get(path), s3.get(path)
        assert (ours.status_code, ours.headers["content-type"]) == (200, theirs.headers["content-type"]), path
        if path.endswith("info.json"):
            mine, other = ours.json(), theirs.json()
            assert {k: v for k, v in mine.items() if k != "id"} == {k: v for k, v in other.items() if k != "id"}
        elif "/256,/" in path or "/76,/" in path:
            assert ours.content == theirs.content, path  # passthrough: the stored bytes themselves
        else:
            assert np.array_equal(pixels(ours.content), pixels(theirs.content)), path
    stats = s3.get("/admin/stats", headers={"authorization": "Bearer an-admin-token-for-tests"}).json()
    assert stats["block_cache"]["fetched"] > 0  # the renders and directories read through it
    assert stats["block_cache"]["hits"] > 0


def test_several_roots_at_once_by_identifier_prefix(
    bucket: Place, pyramids: Path, portal: anyio.from_thread.BlockingPortal, tmp_path: Path
) -> None:
    http = _app(portal, tmp_path, pyramids, image_roots=f"museum-a={bucket.url}, other=s3://{bucket.bucket}/none")
    info = http.get("/iiif/3/museum-a%2Fred/info.json").json()
    assert info["width"] == 600
    assert info["id"].endswith("/iiif/3/museum-a%2Fred")
    assert http.get("/iiif/3/blue/info.json").status_code == 200  # the default root, a folder
    assert http.get("/iiif/3/museum-a%2Fred/full/8,/0/default.jpg").status_code == 200
    assert http.get("/iiif/3/other%2Fred/info.json").status_code == 404  # no such object there
    assert http.get("/iiif/3/museum-a%2F..%2Fscans%2Fred/info.json").status_code == 404


def test_a_missing_object_is_404_and_dotted_identifiers_are_refused(
    bucket: Place, portal: anyio.from_thread.BlockingPortal, tmp_path: Path
) -> None:
    http = _app(portal, tmp_path, bucket.url)
    assert http.get("/iiif/3/nothing-here/info.json").status_code == 404
    assert http.get("/iiif/3/..%2Fscans%2Fred/info.json").status_code == 404
    assert http.get("/iiif/3/red.tif/info.json").status_code == 200  # with its extension too
    # Within the identifier limit (1024 bytes), but with the prefix longer than any S3 key can be.
    assert http.get(f"/iiif/3/{'x' * 1010}/info.json").status_code == 404


def test_a_damaged_object_is_a_500_naming_the_identifier_and_not_cached(
    bucket: Place, portal: anyio.from_thread.BlockingPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    http = _app(portal, tmp_path, bucket.url, disk_cache_mb=64)
    with caplog.at_level(logging.ERROR, logger="iiifserver"):
        answers = [http.get("/iiif/3/cut/full/100,/0/default.jpg") for _ in range(2)]
    assert [answer.status_code for answer in answers] == [500, 500]
    assert "cut" in answers[0].text
    assert any("'cut'" in record.getMessage() for record in caplog.records)
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*") if "cut" in p.name)


def _red_and_blue_mean(body: bytes) -> tuple[int, int]:
    px = pixels(body)
    return int(px[..., 0].mean()), int(px[..., 2].mean())


def test_a_replaced_object_serves_new_pixels_and_no_stale_entry(
    bucket: Place, seaweedfs: Any, pyramids: Path, portal: anyio.from_thread.BlockingPortal, tmp_path: Path
) -> None:
    http = _app(portal, tmp_path, bucket.url, disk_cache_mb=64)
    tile, small = "/iiif/3/red/0,0,256,256/256,/0/default.jpg", "/iiif/3/red/full/100,/0/default.jpg"
    first_tile, first_small = http.get(tile), http.get(small)
    red, blue = _red_and_blue_mean(first_tile.content)
    assert red > 200
    assert blue < 60
    etag = first_tile.headers["etag"]
    put(seaweedfs, bucket.bucket, bucket.key("red.tif"), (pyramids / "blue.tif").read_bytes())
    for path, before in ((tile, first_tile), (small, first_small)):
        again = http.get(path)
        assert again.status_code == 200
        red, blue = _red_and_blue_mean(again.content)
        assert (red < 60, blue > 200) == (True, True), path
        assert again.headers["etag"] != before.headers["etag"]
    assert http.get(tile, headers={"if-none-match": etag}).status_code == 200  # the old ETag no longer matches


def test_an_object_replaced_after_its_version_was_checked_is_a_retryable_503_never_mixed_bytes(
    bucket: Place, seaweedfs: Any, pyramids: Path, portal: anyio.from_thread.BlockingPortal, tmp_path: Path
) -> None:
    # Versions trusted for a minute: the replacement is met by the reads themselves (If-Match).
    for n, path in enumerate(
        ("/iiif/3/red/256,0,256,256/256,/0/default.jpg", "/iiif/3/red/10,10,300,300/150,/0/default.png")
    ):
        put(seaweedfs, bucket.bucket, bucket.key("red.tif"), (pyramids / "red.tif").read_bytes())
        http = _app(portal, tmp_path / str(n), bucket.url, source_check_interval=60.0)
        assert http.get("/iiif/3/red/info.json").status_code == 200
        put(seaweedfs, bucket.bucket, bucket.key("red.tif"), (pyramids / "blue.tif").read_bytes())
        # The old version's blocks, read by the probe, would still render it whole and consistent:
        # gone, the render must read blocks of a version the store no longer has.
        shutil.rmtree(tmp_path / str(n) / "blocks")
        answer = http.get(path)  # a stored tile read, or a render's blocks: refused by the store (412)
        assert answer.status_code == 503, path
        assert int(answer.headers["retry-after"]) > 0
        answer = http.get(path)  # the identifier is checked again: the new object
        assert answer.status_code == 200
        red, blue = _red_and_blue_mean(answer.content)
        assert (red < 60, blue > 200) == (True, True), path


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback listener that accepts connections and never answers (a hung store)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()
        for conn in held:
            conn.close()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nobody listens there


@pytest.mark.parametrize("store", ["refused", "silent"])
def test_an_unreachable_or_silent_store_is_503_within_the_timeout(
    store: str,
    silent_port: int,
    monkeypatch: pytest.MonkeyPatch,
    seaweedfs: Any,
    portal: anyio.from_thread.BlockingPortal,
    tmp_path: Path,
) -> None:
    use_store(monkeypatch, seaweedfs)
    port = silent_port if store == "silent" else _dead_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    http = _app(portal, tmp_path, "s3://bucket-x/scans", storage_timeout=0.5)
    started = time.monotonic()
    answer = http.get("/iiif/3/red/info.json")
    took = time.monotonic() - started
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) > 0
    assert took < 3.0  # one attempt per HEAD within the timeout, not botocore's retries


def test_the_store_unreachable_is_503_never_cached_and_served_again_when_it_is_back(
    bucket: Place,
    seaweedfs: Any,
    monkeypatch: pytest.MonkeyPatch,
    portal: anyio.from_thread.BlockingPortal,
    tmp_path: Path,
) -> None:
    partition = Partition(seaweedfs.s3_port)
    partition.mend()
    monkeypatch.setenv("AWS_ENDPOINT_URL", partition.endpoint)
    try:
        http = _app(portal, tmp_path, bucket.url, storage_timeout=1.0, disk_cache_mb=64)
        path = "/iiif/3/sample/0,0,512,512/256,/0/default.jpg"
        assert http.get("/iiif/3/red/info.json").status_code == 200  # connections pooled, then cut
        partition.cut()
        for _ in range(2):  # the second is not a remembered error
            answer = http.get(path)
            assert answer.status_code == 503
            assert int(answer.headers["retry-after"]) > 0
        partition.mend()
        answer = http.get(path)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/jpeg"
    finally:
        partition.cut()


def test_wrong_credentials_are_a_503_and_the_secret_is_never_logged(
    bucket: Place,
    seaweedfs: Any,
    monkeypatch: pytest.MonkeyPatch,
    portal: anyio.from_thread.BlockingPortal,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-secret-that-must-not-appear"
    use_store(monkeypatch, seaweedfs, secret=wrong)
    http = _app(portal, tmp_path, bucket.url)
    with caplog.at_level(logging.DEBUG, logger="iiifserver"):
        answer = http.get("/iiif/3/red/info.json")
    assert answer.status_code == 503
    assert any("403" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert wrong not in record.getMessage()
        assert SECRET_KEY not in record.getMessage()
    assert wrong not in answer.text
