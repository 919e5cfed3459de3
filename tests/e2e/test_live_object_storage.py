"""The real ``iiifserver serve`` (uvicorn, two worker processes) on an s3:// root in a running SeaweedFS.

Checks what the in-process tests cannot: the URL survives the command line and the settings
hand-over to the worker processes, each worker makes its own client from the environment, and
the workers share one block cache folder.
"""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import start_server, stop_server
from tests.object_storage import new_place, put, use_store
from tests.web.conftest import _gradient, save_pyramid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["content-type"], response.read()


def test_serve_from_an_s3_root_with_two_workers(
    seaweedfs: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_store(monkeypatch, seaweedfs)  # inherited by the server process
    place = new_place(seaweedfs)
    save_pyramid(_gradient(900, 600), tmp_path / "scan.tif")
    put(seaweedfs, place.bucket, place.key("book/scan.tif"), (tmp_path / "scan.tif").read_bytes())
    (tmp_path / "unused").mkdir()
    blocks = tmp_path / "blocks"
    proc, port = start_server(
        tmp_path / "unused",
        tmp_path / "cache",
        "--images",  # the last --images wins: the URL exactly as an operator types it
        place.url,
        "--block-cache",
        str(blocks),
        log=tmp_path / "server.log",
    )
    try:
        base = f"http://127.0.0.1:{port}/iiif/3/book%2Fscan"
        status, kind, body = fetch(f"{base}/info.json")
        info = json.loads(body)
        assert (status, info["width"], info["height"]) == (200, 900, 600)
        for _ in range(4):  # several connections: both workers are likely to answer some
            status, kind, body = fetch(f"{base}/256,256,256,256/256,/0/default.jpg")
            assert (status, kind) == (200, "image/jpeg")
        status, kind, body = fetch(f"{base}/33,44,500,300/250,/0/default.png")
        assert (status, kind) == (200, "image/png")
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (250, 150)
        assert fetch(f"http://127.0.0.1:{port}/ready")[0] == 200
        assert any(blocks.rglob("*-*"))  # the renders read through the block cache
    finally:
        stop_server(proc)
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "iiiftestsecret" not in log
