"""Docs are tested: every setting, flag, environment variable and command is in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from iiifserver.cli import main
from iiifserver.config import Settings, env_name, fields

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [f.name for f in fields()])
def test_setting_documented(name: str) -> None:
    row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"setting {name} has no row in the README's settings table"
    assert f"`--{name.replace('_', '-')}" in row
    assert f"`{env_name(name)}`" in row
    default = getattr(Settings(), name)
    shown = {True: "true", False: "false"}.get(default, str(default)) if isinstance(default, bool) else str(default)
    assert f"`{shown}`" in row or (shown == "" and "empty" in row), f"default of {name} not shown as {shown!r}"


def _commands(group: click.Group, prefix: str = "iiifserver") -> list[str]:
    out = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out.extend(_commands(command, path))
        else:
            out.append(path)
    return out


@pytest.mark.parametrize("command", _commands(main))
def test_command_documented(command: str) -> None:
    assert f"`{command}" in README, f"{command} is not in the README's commands table"


def test_two_commands_exist_and_are_named() -> None:
    root = Path(__file__).resolve().parents[1]
    for script in ("scripts/serve-demo.sh", "scripts/test.sh"):
        assert script in README
        assert (root / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "scripts/test.sh" in (root / ".ci" / "run").read_text()
