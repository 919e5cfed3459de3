"""The names in the disk tier's tree: which file or folder is what (drawn in ``disk.py``'s docstring).

Owns: the layout version folder, the shard and identifier folder names and where an identifier's
entries live, the entry names (their keys), the temp-file suffix and the names of the tree's
bookkeeping files; walking the identifier folders.
Must not know: what the files hold (the entry format, the byte estimate, the generation).

Why a module of its own: the store (``disk.py``) and the size keeper (``disk_eviction.py``) walk
the same tree, so the names each recognises come from one place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from iiifserver.cache.disk_files import is_dir, scandir
from iiifserver.cache.keys import identifier_digest

LAYOUT = "v2"

KEY = re.compile(r"[0-9a-f]{40}")  # an entry's file name: its key
SHARD = re.compile(r"[0-9a-f]{2}")
IDENTIFIER_DIR = re.compile(r"[0-9a-f]{32}")
TEMP_SUFFIX = ".tmp"
GENERATION = ".purge-generation"
USAGE = ".usage"
EVICT_LOCK = ".evict.lock"
GENERATION_LOCK = ".generation.lock"
TRASH = ".trash"


def is_entry_name(name: str) -> bool:
    return KEY.fullmatch(name) is not None


def identifier_dir(base: str, identifier: str) -> str:
    digest = identifier_digest(identifier)
    return os.path.join(base, digest[:2], digest)


def identifier_dirs(base: str) -> Iterator[str]:
    """Every identifier folder under ``base``; anything else in the tree is passed over."""
    for shard in scandir(base):
        if SHARD.fullmatch(shard.name) and is_dir(shard):
            for directory in scandir(shard.path):
                if IDENTIFIER_DIR.fullmatch(directory.name) and is_dir(directory):
                    yield directory.path
