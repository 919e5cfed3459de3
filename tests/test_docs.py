"""The docs site: generated reference in step with the code, every setting, command and module shown, strict build.

The settings reference, the CLI reference and the module map are cog blocks filled by
``docs/gen/reference.py``; ``cog --check`` fails when a setting, flag, command or module changed
without ``cog -r`` (the command is in docs/development.md).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cogapp import Cog

from iiifserver.cli import main
from iiifserver.config import Settings, env_name, fields

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
GEN = DOCS / "gen"
COG_FILES = sorted([*DOCS.glob("*.md"), *(DOCS / "reference").glob("*.md")])
SETTINGS_DOC = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
CLI_DOC = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
ARCHITECTURE_DOC = (DOCS / "architecture.md").read_text(encoding="utf-8")
REGENERATE = ".venv/bin/cog -r -I docs/gen docs/*.md docs/reference/*.md"


def _cog_check(files: list[Path]) -> tuple[int, str]:
    cog = Cog()
    out = io.StringIO()
    cog.set_output(stdout=out, stderr=out)
    status = cog.main(["cog", "--check", "--diff", "-I", str(GEN), *(str(f) for f in files)])
    return status, out.getvalue()


def test_generated_reference_is_up_to_date() -> None:
    status, output = _cog_check(COG_FILES)
    assert status == 0, f"generated docs are stale: run {REGENERATE}\n{output}"


def test_pages_with_generated_parts_are_checked() -> None:
    marked = {f.name for f in COG_FILES if "[[[cog" in f.read_text(encoding="utf-8")}
    assert {"settings.md", "cli.md", "architecture.md"} <= marked


def test_stale_generated_part_fails_the_check(tmp_path: Path) -> None:
    stale = tmp_path / "settings.md"
    text = SETTINGS_DOC.replace("| `port` | int | `8000` |", "| `port` | int | `8080` |")
    assert text != SETTINGS_DOC
    stale.write_text(text, encoding="utf-8")
    status, output = _cog_check([stale])
    assert status != 0
    assert "8080" in output


@pytest.mark.parametrize("name", [f.name for f in fields()])
def test_setting_documented(name: str) -> None:
    row = next((line for line in SETTINGS_DOC.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"setting {name} has no row in docs/reference/settings.md"
    assert f"`--{name.replace('_', '-')}`" in row
    assert f"`{env_name(name)}`" in row
    default = getattr(Settings(), name)
    shown = ("true" if default else "false") if isinstance(default, bool) else str(default)
    assert f"`{shown}`" in row or (shown == "" and "empty" in row), f"default of {name} not shown as {shown!r}"


def _command_paths(group: click.Group, prefix: str = "iiifserver") -> list[str]:
    out = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        out.append(path)
        if isinstance(command, click.Group):
            out.extend(_command_paths(command, path))
    return out


@pytest.mark.parametrize("command", _command_paths(main))
def test_command_documented(command: str) -> None:
    assert f"### `{command}`" in CLI_DOC, f"{command} has no section in docs/reference/cli.md"


@pytest.mark.parametrize("option", ["--out", "--quality", "--memory-budget-mb", "--object", "--schema", "--force"])
def test_command_options_documented(option: str) -> None:
    assert f"`{option}`" in CLI_DOC


def _modules() -> list[str]:
    package = REPO / "iiifserver"
    return [
        p.relative_to(REPO).as_posix()
        for p in sorted(package.rglob("*.py"))
        if p.name != "__init__.py" or p.read_text(encoding="utf-8").strip()
    ]


@pytest.mark.parametrize("module", _modules())
def test_module_in_module_map(module: str) -> None:
    assert f"| `{module}` |" in ARCHITECTURE_DOC, f"{module} is not in the module map of docs/architecture.md"


def test_module_map_gives_what_each_module_owns() -> None:
    rows = [line for line in ARCHITECTURE_DOC.splitlines() if re.match(r"\| `iiifserver/.+\.py` \|", line)]
    assert len(rows) == len(_modules())
    config_row = next(line for line in rows if line.startswith("| `iiifserver/config.py` |"))
    assert "every setting's name, type, default and help text" in config_row


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """Offline and strict: a broken link, anchor, nav entry or unknown page fails the build."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's end-of-life banner on every build
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "settings" / "index.html").is_file()
    page = (tmp_path / "site" / "architecture" / "index.html").read_text(encoding="utf-8")
    assert "iiifserver/config.py" in page  # the generated module map made it into the site
