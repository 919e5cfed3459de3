"""tiff_reader: the TIFF / BigTIFF directory reader on hand-built files (bytes in memory), and the
per-thread parse kept for one file version."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from iiifserver.image import tiff_reader
from iiifserver.image.tiff_reader import LONG, SHORT, UNDEFINED, Malformed, Reader

Entry = tuple[int, int, int, bytes]  # tag, type, count, value bytes (inline when they fit)


def classic_tiff(directories: list[list[Entry]], order: str = "<", loop: bool = False) -> bytes:
    """A classic TIFF with ``directories`` chained in order; values over 4 bytes after each
    directory. ``loop``: the last directory points back at the first."""
    out = bytearray(b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    offsets = []
    for entries in directories:
        at = len(out)
        offsets.append(at)
        values_at = at + 2 + 12 * len(entries) + 4
        table, values = bytearray(struct.pack(order + "H", len(entries))), bytearray()
        for tag, typ, count, value in entries:
            if len(value) <= 4:
                field = value.ljust(4, b"\x00")
            else:
                field = struct.pack(order + "I", values_at + len(values))
                values += value
            table += struct.pack(order + "HHI", tag, typ, count) + field
        out += table + b"\x00\x00\x00\x00" + values  # the next directory's offset: set below
    for here, following in zip(offsets, [*offsets[1:], offsets[0] if loop else 0], strict=True):
        count = struct.unpack(order + "H", out[here : here + 2])[0]
        out[here + 2 + 12 * count : here + 6 + 12 * count] = struct.pack(order + "I", following)
    return bytes(out)


def reader_of(data: bytes) -> Reader:
    return Reader(lambda n, at: data[at : at + n], len(data))


def short(tag: int, *values: int, order: str = "<") -> Entry:
    return (tag, SHORT, len(values), struct.pack(order + "H" * len(values), *values))


def long(tag: int, *values: int, order: str = "<") -> Entry:
    return (tag, LONG, len(values), struct.pack(order + "I" * len(values), *values))


@pytest.mark.parametrize("order", ["<", ">"])
def test_pages_entries_and_values_in_either_byte_order(order: str) -> None:
    data = classic_tiff(
        [
            [short(256, 640, order=order), short(257, 480, order=order), long(324, 1, 2, 3, 4, order=order)],
            [short(256, 320, order=order), (347, UNDEFINED, 6, b"\xff\xd8tabs")],
        ],
        order,
    )
    reader = reader_of(data)
    first, second = reader.page_offset(0), reader.page_offset(1)
    assert first is not None
    assert second is not None
    assert reader.page_offset(2) is None
    assert reader.chain_ends_cleanly
    page = reader.ifd(first)
    assert reader.ints(page, 256) == (640,)
    assert reader.ints(page, 257) == (480,)
    assert list(reader.int_array(page, 324) or []) == [1, 2, 3, 4]  # out of line, native order now
    assert reader.raw(reader.ifd(second), 347, 1024) == b"\xff\xd8tabs"
    assert reader.ints(page, 999) is None
    assert reader.tags_ascending(first)


def test_a_looping_chain_ends_and_says_so() -> None:
    reader = reader_of(classic_tiff([[short(256, 1)], [short(256, 2)]], loop=True))
    assert reader.page_offset(1) is not None
    assert reader.page_offset(2) is None
    assert not reader.chain_ends_cleanly


def test_tags_out_of_order_are_noted() -> None:
    data = classic_tiff([[short(257, 4), short(256, 8)]])
    reader = reader_of(data)
    offset = reader.page_offset(0)
    assert offset is not None
    reader.ifd(offset)
    assert not reader.tags_ascending(offset)


def test_values_outside_the_file_are_malformed() -> None:
    data = classic_tiff([[long(324, 1, 2, 3, 4)]])
    cut = data[: len(data) - 8]  # the array's last two values are gone
    reader = reader_of(cut)
    offset = reader.page_offset(0)
    assert offset is not None
    with pytest.raises(Malformed, match="outside the file"):
        reader.int_array(reader.ifd(offset), 324)
    assert reader.read_at(len(cut) - 2, 4) is None


@pytest.mark.parametrize("head", [b"", b"GIF89a\x00\x00", b"II+\x00\x08\x00\x00\x00", b"II*\x00"])
def test_what_is_not_a_tiff_header(head: bytes) -> None:
    with pytest.raises(Malformed, match="not a TIFF"):
        reader_of(head)


def test_a_bigtiff_header_and_directory() -> None:
    entry = struct.pack("<HHQ8s", 256, LONG, 1, struct.pack("<I", 777).ljust(8, b"\x00"))
    data = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", 1) + entry + struct.pack("<Q", 0)
    reader = reader_of(data)
    assert reader.big
    offset = reader.page_offset(0)
    assert offset == 16
    assert reader.ints(reader.ifd(offset), 256) == (777,)


def test_the_kept_parse_is_this_files_version_only(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    path.write_bytes(classic_tiff([[short(256, 10)]]))
    tiff_reader.forget_last()
    with tiff_reader.file_reader(path) as first:
        assert first is not None
    with tiff_reader.file_reader(path) as again:
        assert again is first  # one parse for the probe, the truncation check and the index
    path.write_bytes(classic_tiff([[short(256, 20)]]))
    os.utime(path, ns=(1, 1))
    with tiff_reader.file_reader(path) as changed:
        assert changed is not None
        assert changed is not first
        offset = changed.page_offset(0)
        assert offset is not None
        assert changed.ints(changed.ifd(offset), 256) == (20,)
    path.write_bytes(b"not a tiff at all")
    with tiff_reader.file_reader(path) as nothing:
        assert nothing is None
    tiff_reader.forget_last()
