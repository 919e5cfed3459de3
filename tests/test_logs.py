"""Logging: the server's level applies, pyvips' per-thread-pool INFO lines do not."""

from __future__ import annotations

import logging

import pytest

from iiifserver.logs import configure_logging


@pytest.mark.parametrize(("level", "pyvips_level"), [("info", logging.WARNING), ("debug", logging.WARNING)])
def test_pyvips_is_quiet(level: str, pyvips_level: int) -> None:
    root = logging.getLogger()
    saved = root.level, logging.getLogger("pyvips").level
    try:
        root.setLevel(logging.NOTSET)
        configure_logging(level)
        assert logging.getLogger("pyvips").getEffectiveLevel() >= pyvips_level
        assert not logging.getLogger("pyvips").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved[0])
        logging.getLogger("pyvips").setLevel(saved[1])
