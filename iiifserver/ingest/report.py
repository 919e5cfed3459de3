"""Outcomes of a conversion run and the summary printed at its end.

Owns: what became of each master (converted, skipped as up to date, failed and why), the
totals, the throughput (megapixels of converted masters per second of the run) and the
summary's wording. Must not know: pyvips, how files are converted or scheduled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class Status(enum.Enum):
    CONVERTED = "converted"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str  # the master as the user knows it (relative path)
    status: Status
    output: Path | None = None
    megapixels: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    outcomes: tuple[Outcome, ...]
    seconds: float
    interrupted: bool = False

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status is Status.FAILED)

    @property
    def megapixels(self) -> float:
        return sum(o.megapixels for o in self.outcomes if o.status is Status.CONVERTED)

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def failure_line(outcome: Outcome) -> str:
    return f"failed: {outcome.name}: {outcome.reason}"


def summary_lines(summary: Summary) -> list[str]:
    """The summary: one totals line, then one line per failed master."""
    head = (
        f"converted {summary.count(Status.CONVERTED)}, skipped {summary.count(Status.SKIPPED)} (up to date), "
        f"failed {summary.count(Status.FAILED)} in {summary.seconds:.1f} s: "
        f"{summary.megapixels:.1f} MP at {summary.megapixels_per_second:.1f} MP/s"
    )
    lines = [("interrupted: " if summary.interrupted else "") + head]
    lines.extend(failure_line(o) for o in summary.failed)
    return lines
