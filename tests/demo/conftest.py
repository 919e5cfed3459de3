"""Test configuration for the demo image builder."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; registering here keeps tests/demo self-contained
    # under --strict-markers.
    config.addinivalue_line("markers", "slow: builds large images or runs long (still part of the full suite)")
