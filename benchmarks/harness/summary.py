"""Markdown table of benchmark runs (JSON lines of ``load.py``), one row per server, image, mode and concurrency.

    python -m benchmarks.harness.summary RUNS.jsonl [MORE.jsonl ...] [--since 2026-11-21T19:00] [--exclude-wrapped]

The repeats of a row (labels ``server/image/rN``) are shown side by side: req/s, p50 and p99
latency, server CPU (% of one core), server CPU ms per request, wrk's and everything else's CPU,
errors and the average response size. Owns the table's layout only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HEADER = (
    "| server | image | mode | c | req/s (each run) | p50 ms | p99 ms | server CPU % | CPU ms/req "
    "| wrk CPU % | other CPU % | errors | avg B |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def read_runs(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]


def key(run: dict[str, Any]) -> tuple[str, str, str, int]:
    """(server, image, mode, concurrency) of a run; its label is 'server/image/rN'."""
    server, image = [*str(run["label"]).split("/"), "", ""][:2]
    return server, image, str(run["mode"]), int(run["concurrency"])


def joined(values: Sequence[float], spec: str) -> str:
    return " / ".join(format(v, spec) for v in values)


def table(runs: Iterable[dict[str, Any]], since: str = "", exclude_wrapped: bool = False) -> str:
    rows: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        if r["time"] < since or (exclude_wrapped and r["mode"] == "cold" and r.get("wraps")):
            continue
        rows.setdefault(key(r), []).append(r)
    lines = [HEADER]
    for (server, image, mode, c), rs in rows.items():
        wrapped = " (wrapped)" if mode == "cold" and any(r.get("wraps") for r in rs) else ""
        lines.append(
            f"| {server} | {image} | {mode} | {c} | {joined([r['rps'] for r in rs], '.1f')} "
            f"| {joined([r['p50_ms'] for r in rs], '.1f')} | {joined([r['p99_ms'] for r in rs], '.1f')} "
            f"| {joined([r['server_cpu_pct'] for r in rs], '.0f')} "
            f"| {joined([r['server_cpu_ms_per_req'] or 0 for r in rs], '.2f')} "
            f"| {joined([r['wrk_cpu_pct'] for r in rs], '.0f')} | {joined([r['other_cpu_pct'] for r in rs], '.0f')} "
            f"| {sum(r['errors'] for r in rs)}{wrapped} | {rs[0]['avg_bytes']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--since", default="", help="only runs at or after this time (ISO, as in the 'time' field)")
    ap.add_argument("--exclude-wrapped", action="store_true", help="drop cold runs whose URL list ran out")
    a = ap.parse_args(argv)
    print(table(read_runs(a.results), a.since, a.exclude_wrapped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
