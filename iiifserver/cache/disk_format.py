"""The bytes of one disk-tier entry file: a header bound to the entry's key, the media type, the body.

Owns: the entry file format (``MAGIC``, ``FORMAT_VERSION``, ``HEADER``), encoding an entry's
header, and deciding whether a file's bytes are a complete, intact entry of a given key.
Must not know: files, folders and their names, sizes and eviction; where the bytes come from.

Why every check on every read: writes are not fsynced, so what a crash leaves (a short file, zeros
after a rename whose data never reached the disk) must read as a miss, never be served.
"""

from __future__ import annotations

import logging
import struct
import zlib

from iiifserver.cache.entry import Entry

log = logging.getLogger(__name__)

MAGIC = b"IIIFtile"
FORMAT_VERSION = 2
# magic, format version, media type length, reserved, the entry's key (20 bytes: its 40 hex digits),
# CRC-32 of the body, body length; then the media type (ASCII) and the body. The file size must
# equal header + media type + body exactly.
HEADER = struct.Struct(">8sBBH20sIQ")


def header(entry: Entry, key: str) -> bytes:
    """What precedes ``entry.body`` in the file of ``key``: the header and the media type."""
    media = entry.media_type.encode("ascii")
    if len(media) > 255:
        raise ValueError("media type longer than 255 bytes")
    body = entry.body
    return HEADER.pack(MAGIC, FORMAT_VERSION, len(media), 0, bytes.fromhex(key), zlib.crc32(body), len(body)) + media


def entry_in(data: bytes, identifier: str, key: str) -> Entry | None:
    """The entry in ``data``, or None if it is not a complete, intact entry of ``key`` (E03, E17)."""
    if len(data) < HEADER.size:
        return None
    magic, version, media_length, _reserved, stored_key, crc, body_length = HEADER.unpack_from(data)
    start = HEADER.size + media_length
    if magic != MAGIC or version != FORMAT_VERSION or len(data) != start + body_length:
        return None
    if stored_key != bytes.fromhex(key):
        # Intact, but another key's entry: a file moved or copied under this name. Serving it would
        # answer one request with another's image. (The caller removes the file.)
        log.warning("disk cache entry %s holds the entry of key %s; removed", key, stored_key.hex())
        return None
    body = data[start:]
    if zlib.crc32(body) != crc:
        return None
    try:
        media_type = data[HEADER.size : start].decode("ascii")
    except UnicodeDecodeError:
        return None
    return Entry(body, media_type, identifier)
