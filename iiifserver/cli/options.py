"""The options commands share: settings as flags, ``--config FILE``, ``--setting NAME=VALUE``.

Owns: turning ``Settings`` fields into ``serve`` flags (one flag per field, generated, so a new
setting is a new flag with no extra code); the ``--config`` / ``--setting`` pair every other
command that needs settings takes, so their ``--help`` shows their own options rather than forty
server flags; loading the settings with their errors as usage errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from iiifserver import config
from iiifserver.config import Settings, SettingsError, load_settings


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One CLI flag per setting; unset flags leave the lower layers (TOML, env) in force."""
    for f in reversed(config.fields()):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        help_text = f"{config.field_help(f)} [default: {f.default}; env {config.env_name(f.name)}]"
        if kind == "bool":
            fn = click.option(f"{flag}/--no-{f.name.replace('_', '-')}", f.name, default=None, help=help_text)(fn)
        else:
            click_type = {"int": int, "float": float, "Path": click.Path(path_type=Path)}.get(kind, str)
            fn = click.option(flag, f.name, type=click_type, default=None, help=help_text)(fn)
    return config_option(fn)


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML file of settings (or env IIIFSERVER_CONFIG).",
    )(fn)


def setting_pairs(ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` texts -> overrides, each value converted as its environment variable would be."""
    names = [f.name for f in config.fields()]
    overrides: dict[str, Any] = {}
    for pair in pairs:
        raw_name, equals, value = pair.partition("=")
        name = raw_name.strip().replace("-", "_")  # max-width and max_width alike
        if not equals or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", ctx, param)
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else " (`iiifserver settings` lists them)"
            raise click.BadParameter(f"unknown setting {raw_name.strip()!r}{hint}", ctx, param)
        try:
            overrides[name] = config.coerce_setting(name, value, name)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return overrides


def setting_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` and ``--setting NAME=VALUE``: defaults < file < environment < these."""
    fn = click.option(
        "--setting",
        "-s",
        "overrides",
        multiple=True,
        metavar="NAME=VALUE",
        callback=setting_pairs,
        help="Set one setting (repeatable), e.g. -s images=scans -s max_width=4000; "
        "names and values as in the TOML file. Wins over --config and IIIFSERVER_* variables.",
    )(fn)
    return config_option(fn)


def load(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config_file, overrides=overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def check_institutions(settings: Settings) -> None:
    """Wrong [institutions.*] tables stop the start here, with their message, not in each worker."""
    if not settings.institutions_file:
        return
    from iiifserver.institutions import InstitutionError, load_institutions

    try:
        load_institutions(Path(settings.institutions_file))
    except InstitutionError as exc:
        raise click.UsageError(str(exc)) from None
