"""Generated parts of the docs: the settings reference, the CLI reference and the module map.

Owns: turning ``iiifserver.config``'s field list, the click group ``iiifserver.cli.main`` and the
docstrings of ``iiifserver/`` into Markdown. cog runs these functions from the blocks in the
docs (``cog -r -I docs/gen docs/*.md docs/reference/*.md``) and ``tests/test_docs.py`` runs
``cog --check``, so a setting, flag or module the docs do not show fails the tests.
Must not know: how the site is built (mkdocs reads only the Markdown this writes).
Output must not depend on the machine (core count, terminal width, paths): the check runs anywhere.
"""

from __future__ import annotations

import ast
import enum
import inspect
import re
from pathlib import Path
from typing import Any

import click

from iiifserver import config
from iiifserver.cli import main

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "iiifserver"
SETTINGS_PAGE = "settings.md"


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else "empty"


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_name(f: Any) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _serve_flags() -> dict[str, str]:
    """Setting name -> the flag(s) ``iiifserver serve`` takes for it, as the CLI declares them."""
    serve = main.commands["serve"]
    flags: dict[str, str] = {}
    for param in serve.params:
        if isinstance(param, click.Option) and param.name:
            flags[param.name] = " / ".join(param.opts + param.secondary_opts)
    return flags


def settings_table() -> str:
    """Every ``Settings`` field: TOML key, type, default, environment variable, serve flag, help."""
    flags = _serve_flags()
    lines = [
        "| setting (TOML key) | type | default | environment | `serve` flag | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for f in config.fields():
        flag = flags.get(f.name)
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{f.name}`",
                    _type_name(f),
                    _code(_default_text(f.default)),
                    f"`{config.env_name(f.name)}`",
                    " / ".join(f"`{part}`" for part in flag.split(" / ")) if flag else "none",
                    _cell(config.field_help(f)),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[click.Command, click.Context]]:
    out: list[tuple[click.Command, click.Context]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        sub = click.Context(command, info_name=name, parent=ctx)
        out.append((command, sub))
        if isinstance(command, click.Group):
            out.extend(_commands(command, sub))
    return out


def command_paths() -> list[str]:
    """``iiifserver serve``, ``iiifserver cache purge``…: every command, groups included."""
    root = click.Context(main, info_name="iiifserver")
    return [sub.command_path for _command, sub in _commands(main, root)]


def _param_type(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    if isinstance(kind, click.Choice):
        return "\\|".join(str(c) for c in kind.choices)
    if isinstance(kind, click.IntRange):
        low = "" if kind.min is None else str(kind.min)
        high = "" if kind.max is None else str(kind.max)
        return f"integer {low}–{high}" if high else f"integer ≥ {low}"
    return kind.name


def _param_default(param: click.Parameter) -> str:
    default = param.default
    # click 8.3+ marks "no default" with an enum sentinel (UNSET) rather than None.
    if isinstance(default, enum.Enum) and default.name == "UNSET":
        return ""
    if default is None or callable(default) or (isinstance(param, click.Option) and param.is_flag and not default):
        return ""
    if isinstance(default, tuple | list) and not default:
        return ""
    return f"`{_default_text(default)}`"


def _is_setting_flag(param: click.Parameter, setting_names: set[str]) -> bool:
    return isinstance(param, click.Option) and param.name in setting_names


def cli_reference() -> str:
    """Every command: its usage, help and options (settings flags summarised once per command)."""
    root = click.Context(main, info_name="iiifserver")
    setting_names = {f.name for f in config.fields()}
    out: list[str] = []
    for command, ctx in [(main, root), *_commands(main, root)]:
        out.append(f"### `{ctx.command_path}`\n")
        usage = " ".join(command.collect_usage_pieces(ctx))
        out.append(f"```\n{ctx.command_path} {usage}\n```\n")
        if command.help:
            out.append(inspect.cleandoc(command.help).replace("\b\n", "") + "\n")
        params = [p for p in command.get_params(ctx) if "--help" not in p.opts]
        own = [p for p in params if not _is_setting_flag(p, setting_names)]
        settings_flags = [p for p in params if _is_setting_flag(p, setting_names)]
        if own:
            out.append("| argument or option | type | default | meaning |")
            out.append("|---|---|---|---|")
            for param in own:
                if isinstance(param, click.Argument):
                    name = f"`{param.make_metavar(ctx)}`"
                    meaning = "required" if param.required else "optional"
                    if param.nargs == -1:
                        meaning += ", any number"
                else:
                    assert isinstance(param, click.Option)
                    name = " / ".join(f"`{opt}`" for opt in param.opts + param.secondary_opts)
                    meaning = _cell(param.help or "")
                out.append(f"| {name} | {_param_type(param)} | {_param_default(param)} | {meaning} |")
            out.append("")
        if settings_flags:
            every = len(settings_flags) == len(setting_names)
            what = "One flag per setting" if every else f"{len(settings_flags)} settings flags"
            out.append(
                f"{what} (`--host`, `--max-area`, `--no-tile-passthrough`…), as listed in the "
                f"[settings reference]({SETTINGS_PAGE}); unset flags leave the TOML file and the environment "
                "in force.\n"
            )
    return "\n".join(out)


def _docstring(path: Path) -> str | None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return ast.get_docstring(tree)


def _markdown(text: str) -> str:
    return _cell(text.replace("``", "`"))


def _owns(doc: str) -> str:
    flat = " ".join(doc.split())
    match = re.search(r"Owns:\s*(.+?\.)(?=\s+[A-Z]|\s*$)", flat)
    return match.group(1) if match else ""


def module_map() -> str:
    """Every module of the package: its first docstring line and its "Owns:" sentence."""
    lines = ["| module | what it is | owns |", "|---|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = _docstring(path)
        if doc is None and path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
            continue  # an empty package marker: nothing to say
        module = path.relative_to(REPO).as_posix()
        first = doc.strip().splitlines()[0] if doc else "(no docstring)"
        lines.append(f"| `{module}` | {_markdown(first)} | {_markdown(_owns(doc or ''))} |")
    return "\n".join(lines) + "\n"
