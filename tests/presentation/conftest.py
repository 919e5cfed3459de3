"""Fixtures for the presentation tests: small image trees, description folders, a schema validator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import jsonschema
import pytest

from iiifserver.app import create_app
from iiifserver.config import Settings
from tests.web.conftest import Http, save_pyramid, solid

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "conformance" / "iiif_3_0.json"


@pytest.fixture(scope="session")
def schema_validator() -> jsonschema.Draft7Validator:
    """The official Presentation 3.0 schema, with format checks (navDate must be a date-time)."""
    assert SCHEMA.is_file(), f"the Presentation 3.0 schema is missing: {SCHEMA} (../shared/conformance)"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def schema_errors(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(document)]


def make_image(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (200, 40, 40)) -> Path:
    save_pyramid(solid(width, height, rgb), path, tile=128)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


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
