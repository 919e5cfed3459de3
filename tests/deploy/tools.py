"""The checkers the deploy tests run: pinned in pyproject's test extra, installed into .venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def tool(name: str) -> Path:
    """A command installed beside this Python (hadolint, check-jsonschema, kubectl, kubernetes-validate)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing from .venv: run scripts/install.sh --test"
    return path


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False)
