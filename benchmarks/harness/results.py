"""Where a benchmark's results go: the file stem and the .json/.md pair in ``benchmarks/results/``.

Owns: the naming ``<date>-<host>-<cpu>-<kind>[-quick|-<masters>]`` and writing both files.
Must not know: what was measured.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.harness.machine import cpu_model, slug


def stem(now: datetime, kind: str, *, quick: bool = False, variant: str = "") -> str:
    """``2026-12-06-vm-amd-epyc-<kind>``, then ``-quick`` for a smoke run or ``-<variant>``."""
    name = f"{now:%Y-%m-%d}-{slug(socket.gethostname())}-{slug(cpu_model())}-{kind}"
    if quick:
        return f"{name}-quick"
    return f"{name}-{variant}" if variant else name


def write(results: Path, name: str, record: dict[str, Any], report: str) -> None:
    """``<name>.json`` (the record) and ``<name>.md`` (the report) under ``results``; prints both."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (results / f"{name}.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"results: {results / name}.{{json,md}}")
