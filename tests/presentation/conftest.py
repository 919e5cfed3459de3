"""Fixtures for the presentation tests: small image trees, description folders, a schema validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.web.conftest import save_pyramid, solid

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "data" / "conformance" / "iiif_3_0.json"  # source and licence: its README.md


@pytest.fixture(scope="session")
def schema_validator() -> jsonschema.Draft7Validator:
    """The official Presentation 3.0 schema, with format checks (navDate must be a date-time)."""
    assert SCHEMA.is_file(), f"the Presentation 3.0 schema is missing: {SCHEMA}"
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
