"""The disk tier's entry file format: a file is an entry of its key, whole and intact, or nothing."""

from __future__ import annotations

import logging
import struct
import zlib

import pytest

from iiifserver.cache import disk_format
from iiifserver.cache.disk_format import FORMAT_VERSION, HEADER, MAGIC, entry_in, header
from iiifserver.cache.entry import Entry
from tests.cache.disk_helpers import DAMAGES, Damage, entry, file_size, key


def file_of(e: Entry, k: str) -> bytes:
    return header(e, k) + e.body


def test_round_trip() -> None:
    stored = Entry(bytes(range(256)) * 8, "image/webp", "img")
    data = file_of(stored, key(7))
    assert len(data) == file_size(stored)
    assert entry_in(data, "img", key(7)) == stored


def test_the_header_holds_the_key_crc_and_lengths() -> None:
    e = entry(2_000)
    prefix = header(e, key(0xABC))
    assert prefix[HEADER.size :] == b"image/jpeg"
    magic, version, media_length, reserved, stored_key, crc, body_length = HEADER.unpack_from(prefix)
    assert (magic, version, media_length, reserved) == (MAGIC, FORMAT_VERSION, 10, 0)
    assert stored_key.hex() == key(0xABC)
    assert (crc, body_length) == (zlib.crc32(e.body), 2_000)


def test_the_identifier_is_the_callers_not_the_files() -> None:
    data = file_of(entry(500, identifier="first"), key(1))
    assert entry_in(data, "second", key(1)) == entry(500, identifier="second")


def test_a_media_type_longer_than_its_length_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        header(Entry(b"body", "x" * 256, "img"), key(1))
    assert len(header(Entry(b"body", "x" * 255, "img"), key(1))) == HEADER.size + 255


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_is_no_entry(damage: Damage) -> None:
    data = file_of(entry(2_000), key(1))
    assert entry_in(data, "img", key(1)) is not None
    assert entry_in(damage(data), "img", key(1)) is None


def test_a_file_one_byte_short_of_its_header_is_no_entry() -> None:
    data = file_of(Entry(b"", "", "img"), key(1))
    assert len(data) == HEADER.size
    assert entry_in(data, "img", key(1)) == Entry(b"", "", "img")
    assert entry_in(data[:-1], "img", key(1)) is None


def test_another_format_version_is_no_entry() -> None:
    data = bytearray(file_of(entry(), key(1)))
    data[len(MAGIC)] = FORMAT_VERSION + 1
    assert entry_in(bytes(data), "img", key(1)) is None


def test_a_wrong_crc_with_the_right_length_is_no_entry() -> None:
    data = bytearray(file_of(entry(), key(1)))
    crc_at = HEADER.size - 12  # CRC-32 (4 bytes) then the body length (8 bytes) end the header
    struct.pack_into(">I", data, crc_at, zlib.crc32(b"another body"))
    assert entry_in(bytes(data), "img", key(1)) is None


def test_a_media_type_that_is_not_ascii_is_no_entry() -> None:
    body = b"body"
    media = "image/jpég".encode()
    data = HEADER.pack(MAGIC, FORMAT_VERSION, len(media), 0, bytes.fromhex(key(1)), zlib.crc32(body), len(body))
    assert entry_in(data + media + body, "img", key(1)) is None
    ascii_twin = b"image/jpeg!"  # as long, in ASCII: the same header holds an entry
    assert len(ascii_twin) == len(media)
    assert entry_in(data + ascii_twin + body, "img", key(1)) == Entry(body, "image/jpeg!", "img")


def test_another_keys_entry_is_no_entry_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    data = file_of(entry(), key(2))
    with caplog.at_level(logging.WARNING, logger=disk_format.__name__):
        assert entry_in(data, "img", key(1)) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"disk cache entry {key(1)} holds the entry of key {key(2)}; removed"
    ]


def test_a_damaged_file_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    data = file_of(entry(), key(1))
    with caplog.at_level(logging.DEBUG, logger=disk_format.__name__):
        assert entry_in(data[:-1], "img", key(1)) is None
    assert caplog.records == []
