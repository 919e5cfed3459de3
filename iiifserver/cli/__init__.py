"""The ``iiifserver`` command line: one module per group of commands, all added to ``root.main``.

Owns: assembling the command group (importing a command module adds its commands). Commands do
their work through the same modules the server uses.
"""

from iiifserver.cli import admin, convert, manifests, serve, verify
from iiifserver.cli.root import main
from iiifserver.cli.serve import server_config

__all__ = ["admin", "convert", "main", "manifests", "serve", "server_config", "verify"]
