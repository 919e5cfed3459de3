"""``users add`` (login users of restricted images) and ``cache purge`` (the disk tile cache).

Owns: prompting for a password (never taken as a flag), and purging by identifier, with or
without its file extension.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import click

from iiifserver.cli.options import load, setting_options
from iiifserver.cli.root import main


@main.group()
def users() -> None:
    """Login users of restricted images (the file named by auth_users_file; docs/access.md)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--file",
    "users_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The users file (default: auth_users_file of the settings).",
)
@setting_options
def users_add(name: str, users_file: Path | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Add user NAME (or set a new password): prompts for the password and writes its scrypt hash."""
    from iiifserver.web.auth_users import add_user

    if users_file is None:
        configured = load(config_file, overrides).auth_users_file
        if not configured:
            raise click.UsageError("no users file: pass --file or set auth_users_file")
        users_file = Path(configured)
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        add_user(users_file, name, password)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"user {name!r} written to {users_file}")


@main.group()
def cache() -> None:
    """The disk tile cache."""


@cache.command("purge")
@click.argument("identifier", required=False)
@setting_options
def cache_purge(identifier: str | None, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Remove IDENTIFIER's cached tiles (all tiles without one) from the disk cache.

    Running servers sharing the cache folder drop their memory tiers within a second.
    """
    settings = load(config_file, overrides)
    from iiifserver.cache.disk import DiskCache
    from iiifserver.image.sources import cache_names

    if not settings.cache.is_dir():
        click.echo(f"no cache folder {settings.cache}: nothing to purge", err=True)
        return
    disk = DiskCache(settings.cache, max(1, settings.disk_cache_mb) * 1024 * 1024)
    if identifier is None:
        removed = disk.purge(None)
    else:
        # Entries are filed by file name; an identifier may name its file with or without extension.
        name = unicodedata.normalize("NFC", identifier)
        removed = sum(disk.purge(candidate) for candidate in cache_names(name))
    what = f"for {identifier!r}" if identifier is not None else "in all"
    click.echo(f"purged {removed} cached tiles {what} ({settings.cache})")
