"""The cached value: an encoded response body and what is needed to serve it again.

Owns: the ``Entry`` value shared by all tiers.
Must not know: how a tier stores it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    media_type: str  # ASCII, at most 255 bytes (the disk header stores its length in one byte)
    identifier: str  # lets the memory tier purge by identifier without an index
