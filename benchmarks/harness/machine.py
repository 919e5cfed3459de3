"""The machine a benchmark ran on, as every result file names it.

Owns: the CPU model (results are only comparable on the same one) and the slug that puts it and
the host name into result file names. Knows nothing of servers or load.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def slug(text: str, empty: str = "x") -> str:
    """``text`` as a file-name part: lower case, ``(R)``/``(TM)`` dropped, at most 48 characters."""
    text = re.sub(r"\((r|tm|c)\)", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or empty
