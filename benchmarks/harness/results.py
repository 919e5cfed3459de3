"""Where a benchmark's results go: the file stem and the .json/.md pair in ``benchmarks/results/``.

Owns: the naming ``<date>-<host>-<cpu>-<kind>[-quick|-<masters>]``, the fields every record
starts with (``machine``: date, host, CPU model, core count, command, commit) and writing both files.
Must not know: what was measured.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Mapping
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


def git_commit() -> str:
    """The short commit of this checkout ("unknown" outside git)."""
    here = Path(__file__).resolve().parent
    result = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def machine(now: datetime, command: str) -> dict[str, Any]:
    """The fields every record starts with: when, where (the CPU model: ratios differ by CPU), what ran."""
    return {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "command": command,
        "commit": git_commit(),
    }


def heading(title: str, machine: Mapping[str, Any]) -> list[str]:
    """A report's first lines: the title with the run's date, then the CPU, host and commit."""
    m = machine
    cpu = f"CPU: {m['cpu']} ({m['cpus']} cores), host {m['host']}, commit {m['commit']}."
    return [f"# {title} ({m['date']})", "", cpu]


def table_head(columns: list[str], text: int = 1) -> list[str]:
    """A markdown table's header and rule: the first ``text`` columns left-aligned, the rest figures."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * text + "---:|" * (len(columns) - text)]


def write(results: Path, name: str, record: dict[str, Any], report: str) -> str:
    """``<name>.json`` (the record) and ``<name>.md`` (the report) under ``results``; prints both.

    A result already there under ``name`` (another run of the same kind that day, which the docs
    may cite) is kept: this run's files are ``<name>-2``, ``-3``... The name used is returned.
    """
    results.mkdir(parents=True, exist_ok=True)
    chosen, number = name, 1
    while (results / f"{chosen}.json").exists() or (results / f"{chosen}.md").exists():
        number += 1
        chosen = f"{name}-{number}"
    (results / f"{chosen}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (results / f"{chosen}.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"results: {results / chosen}.{{json,md}}")
    return chosen
