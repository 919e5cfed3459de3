"""/health: the process answers; /ready: image root readable, cache writable (else degraded), no paths."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings
from tests.web.conftest import ImageRoot


def get(settings: Settings, path: str) -> tuple[int, dict[str, object]]:
    app = create_app(settings)
    status, _, body = asyncio.run(call(app, path))
    return status, (json.loads(body) if path == "/ready" else {"body": body.decode()})


def test_health_and_ready(image_root: ImageRoot, tmp_path: Path) -> None:
    settings = Settings(images=image_root.root, cache=tmp_path)
    assert get(settings, "/health") == (200, {"body": "ok\n"})
    status, body = get(settings, "/ready")
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"] == {"images": "ok", "cache": "ok", "workers": "1 of 1 up"}


def test_missing_image_root_is_not_ready_and_names_no_path(tmp_path: Path) -> None:
    missing = tmp_path / "gone-images"
    status, body = get(Settings(images=missing, cache=tmp_path), "/ready")
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["checks"]["images"] == "unreadable"  # type: ignore[index]
    assert str(tmp_path) not in json.dumps(body)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_is_degraded(image_root: ImageRoot, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        status, body = get(Settings(images=image_root.root, cache=cache), "/ready")
    finally:
        cache.chmod(0o700)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["degraded"] == ["cache"]


def test_cache_that_is_not_a_folder_is_degraded(image_root: ImageRoot, tmp_path: Path) -> None:
    # As unwritable as a read-only folder, even for root (the tests may run as root).
    cache = tmp_path / "cache-file"
    cache.write_text("not a folder")
    status, body = get(Settings(images=image_root.root, cache=cache, disk_cache_mb=0), "/ready")
    assert (status, body["status"]) == (200, "ready")  # no disk tier: the cache folder is not needed
    status, body = get(Settings(images=image_root.root, cache=cache, memory_cache_mb=0), "/ready")
    assert (status, body["status"], body["degraded"]) == (200, "degraded", ["cache"])
