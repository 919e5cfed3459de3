"""The ``iiifserver`` command group, which every command module adds its commands to.

Owns: the group itself and ``--version``: a module of its own so that command modules can import
it without importing each other.
"""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="iiifserver")
def main() -> None:
    """iiifserver: IIIF Image API 3.0/2.1 and Presentation API 3.0 server for pyramidal TIFFs."""
