"""Process logging: one format, the server's level, libraries kept quiet.

Owns: logging configuration for the CLI and uvicorn's worker processes.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    # pyvips reports every libvips thread pool at INFO: noise at any server log level.
    logging.getLogger("pyvips").setLevel(max(logging.WARNING, logging.getLogger().level))
