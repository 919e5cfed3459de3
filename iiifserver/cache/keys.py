"""Cache keys: one injective digest per (identifier, source version, canonical request, render settings).

Owns: the key and ETag value of a rendered response, and the per-identifier directory digest.
Must not know: what the parts mean (the caller builds the canonical request and the render tag),
where entries are stored.
"""

from __future__ import annotations

import hashlib

KEY_HEX_CHARS = 40  # 160 bits: collision-free for any cache size, short enough for file names and ETags
IDENTIFIER_DIGEST_HEX_CHARS = 32


def _encode(part: str) -> bytes:
    # surrogatepass makes the encoding total and still injective (a lone surrogate cannot collide
    # with a valid code point); for ordinary strings it is plain UTF-8, the identifier's exact bytes.
    return part.encode("utf-8", "surrogatepass")


def _framed(*parts: str) -> bytes:
    encoded = [_encode(part) for part in parts]
    return b"".join(len(data).to_bytes(4, "big") + data for data in encoded)


def cache_key(identifier: str, version_token: str, canonical: str, render_tag: str) -> str:
    """SHA-256 over the length-prefixed parts, as 40 lowercase hex characters.

    Length prefixes make the encoding injective: ``("a_b", "c")`` and ``("a", "b_c")`` hash different
    byte strings. The construction is byte-for-byte the one ``image/service.py`` used, so existing
    keys (and the ETags derived from them) do not change.
    """
    return hashlib.sha256(_framed(identifier, version_token, canonical, render_tag)).hexdigest()[:KEY_HEX_CHARS]


class KeyHasher:
    """``cache_key`` for one identifier and version: those parts are hashed once, and each key
    then costs a copy of that state and the rest (a cold tile's key is computed per request)."""

    __slots__ = ("_prefix",)

    def __init__(self, identifier: str, version_token: str) -> None:
        self._prefix = hashlib.sha256(_framed(identifier, version_token))

    def key(self, canonical: str, render_tag: str) -> str:
        digest = self._prefix.copy()
        digest.update(_framed(canonical, render_tag))
        return digest.hexdigest()[:KEY_HEX_CHARS]


def identifier_digest(identifier: str) -> str:
    """Hex digest naming the identifier's directory on disk (case-safe, path-safe, fixed length)."""
    return hashlib.sha256(_encode(identifier)).hexdigest()[:IDENTIFIER_DIGEST_HEX_CHARS]
