"""Process logging: one format, the server's level, libraries kept quiet.

Owns: logging configuration for the CLI and uvicorn's worker processes: the ``text`` or
``json`` line format (``log_format``), and the access log's own handler. Access-log lines
(``iiifserver.access``, written by ``web.observer.AccessLog``) are complete as they come, time
included, so they are printed as they are: a JSON object per line in ``json`` mode.
"""

from __future__ import annotations

import json
import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "iiifserver.access"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message (and the trace)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = {"time": stamp, "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    root = logging.getLogger()
    if log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
    access.propagate = False  # its lines carry their own time and shape
    access.setLevel(logging.INFO)
    # pyvips reports every libvips thread pool at INFO: noise at any server log level.
    logging.getLogger("pyvips").setLevel(max(logging.WARNING, logging.getLogger().level))
