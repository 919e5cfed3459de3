"""A minimal TIFF / BigTIFF directory reader, and the one parse of a file kept per thread.

Owns: reading a TIFF's structure over a ``read(n, offset)`` function (``os.pread`` of a file, or
ranged reads of an object through the block cache): the header, the IFD chain (what libtiff and
libvips call pages, bounded and loop-safe), each directory's entries, and tag values as integers,
arrays or bytes, each checked to lie inside the file (``Malformed`` otherwise); the TIFF tag and
type numbers the other readers use; and ``file_reader``: the last file parsed, kept per thread
and keyed by its ``stat`` version, so that a new source's probe, truncation check and stored-tile
index read its directories once.
Must not know: what the tags mean for serving (``tiff_directory``: stored tiles and truncation;
``tiff_plain``: which files libvips reads the same way), pixels, HTTP.
"""

from __future__ import annotations

import array
import functools
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

COMPRESSION_JPEG = 7  # new-style JPEG; 6 (old-style) is not a self-describing stream
PHOTOMETRIC_RGB = 2
_MAX_PAGES = 4096  # a longer IFD chain is not a pyramid; also stops a looping chain
_MAX_IFD_ENTRIES = 4096
_NATIVE = "<" if sys.byteorder == "little" else ">"

# TIFF tags read here
WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC = 256, 257, 258, 259, 262
SAMPLES, PLANAR, TILE_W, TILE_H, TILE_OFFSETS, TILE_COUNTS = 277, 284, 322, 323, 324, 325
SUBIFDS, SAMPLE_FORMAT, JPEG_TABLES = 330, 339, 347
STRIP_OFFSETS, STRIP_COUNTS = 273, 279
ROWS_PER_STRIP, PREDICTOR, EXTRA_SAMPLES, ICC = 278, 317, 338, 34675

# TIFF field types
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, IFD, LONG8, IFD8 = 1, 2, 3, 4, 5, 7, 13, 16, 18
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 6: 1, 7: 1, 8: 2, 9: 4, 13: 4, 16: 8, 17: 8, 18: 8}
_UNSIGNED = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}  # BYTE SHORT LONG IFD LONG8 IFD8
# array typecodes with the TIFF widths (C 'unsigned int' is 4 bytes on every supported platform)
_ARRAY_CODE = {"B": "B", "H": "H", "I": "I" if array.array("I").itemsize == 4 else "L", "Q": "Q"}
_KEPT_INTS = 64  # integer tags up to this many values are kept decoded (not the tile offsets)


ReadFn = Callable[[int, int], bytes]  # (n, offset) -> bytes, as os.pread(fd, n, offset)


class Malformed(ValueError):
    """The file's structure is not what the TIFF specification allows."""


# -- one parse per file version and thread ----------------------------------------------------

_last = threading.local()  # .key, .reader: the last file this thread parsed


@contextmanager
def file_reader(path: Path) -> Iterator[Reader | None]:
    """A reader of ``path`` (None: not a readable TIFF), reusing this thread's last parse when the
    file is still the same version (inode, size, mtime, ctime of its descriptor): a new source's
    probe, truncation check and stored-tile index come one after the other in one thread."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        read = functools.partial(os.pread, fd)
        reader: Reader | None
        if getattr(_last, "key", None) == key:
            reader = _last.reader
        else:
            try:
                reader = Reader(read, st.st_size)
            except Malformed:
                reader = None
            _last.key, _last.reader = key, reader
        if reader is None:
            yield None
            return
        reader.bind(read)
        try:
            yield reader
        finally:
            reader.bind(None)  # never read through a closed descriptor
    finally:
        os.close(fd)


def forget_last() -> None:
    """Drop this thread's kept parse (tests)."""
    _last.__dict__.clear()


class Entry(NamedTuple):  # a tuple: a pyramid's first open builds a hundred of them
    type: int
    n: int  # how many values
    field: bytes  # the inline value, or the offset of the value


class Reader:
    """A minimal TIFF / BigTIFF IFD reader over ``read(n, offset)`` (os.pread's order, no seeks)."""

    def __init__(self, read: ReadFn, size: int) -> None:
        self._pread: ReadFn | None = read
        self.size = size
        # Kept for a parse shared between callers: directories and out-of-line values by offset.
        self._ifds: dict[int, dict[int, Entry]] = {}
        self._values: dict[tuple[int, int], bytes] = {}
        self._ascending: dict[int, bool] = {}  # directory offset -> tags ascending, none repeated
        self._next: dict[int, int | None] = {}  # directory offset -> the next one's (None: past the end)
        self._ints: dict[Entry, tuple[int, ...]] = {}  # short integer tags, decoded
        self.chain_ends_cleanly = True  # False: the chain loops or is longer than _MAX_PAGES
        head = read(min(16, size), 0)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8:
            raise Malformed("not a TIFF")
        self.order = order
        magic = struct.unpack(order + "H", head[2:4])[0]
        if magic == 42:
            self.big = False
            first = struct.unpack(order + "I", head[4:8])[0]
        elif magic == 43 and len(head) == 16:
            self.big = True
            first = struct.unpack(order + "Q", head[8:16])[0]
        else:
            raise Malformed("not a TIFF")
        self.pages: list[int] = [first] if first else []
        self._done = not first

    def bind(self, read: ReadFn | None) -> None:
        """Read through ``read`` from now on (a kept parse, reused with a new descriptor)."""
        self._pread = read

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise Malformed("value outside the file")
        if self._pread is None:
            raise Malformed("reader not bound to a file")
        data = self._pread(n, offset)
        if len(data) != n:
            raise Malformed("short read")
        return data

    def page_offset(self, page: int) -> int | None:
        """Offset of the ``page``-th IFD of the main chain (what libtiff/libvips call a page)."""
        while len(self.pages) <= page and not self._done:
            last = self.pages[-1]
            self.ifd(last)
            nxt = self._next[last]
            if nxt is None:
                raise Malformed("value outside the file")
            if nxt == 0 or nxt in self.pages or len(self.pages) >= _MAX_PAGES:
                self._done = True
                self.chain_ends_cleanly = nxt == 0
            else:
                self.pages.append(nxt)
        return self.pages[page] if page < len(self.pages) else None

    def ifd(self, offset: int) -> dict[int, Entry]:
        """The entries of the directory at ``offset`` (the first of a repeated tag); parsed once."""
        entries = self._ifds.get(offset)
        if entries is None:
            entries = self._ifds[offset] = self._parse_ifd(offset)
        return entries

    def _parse_ifd(self, offset: int) -> dict[int, Entry]:
        count_size, entry_size, next_size = (8, 20, 8) if self.big else (2, 12, 4)
        (count,) = struct.unpack(self.order + ("Q" if self.big else "H"), self._read(offset, count_size))
        if count > _MAX_IFD_ENTRIES:
            raise Malformed("too many IFD entries")
        start, length = offset + count_size, count * entry_size
        # The entries and the next directory's offset in one read, when the file holds both.
        with_next = start + length + next_size <= self.size
        raw = self._read(start, length + next_size if with_next else length)
        self._next[offset] = (
            struct.unpack(self.order + ("Q" if self.big else "I"), raw[length:])[0] if with_next else None
        )
        entry = struct.Struct(self.order + ("HHQ8s" if self.big else "HHI4s"))
        entries: dict[int, Entry] = {}
        previous, ascending = -1, True
        for tag, typ, n, field in entry.iter_unpack(raw[:length]):
            ascending = ascending and tag > previous
            previous = tag
            entries.setdefault(tag, Entry(typ, n, field))
        self._ascending[offset] = ascending
        return entries

    def tags_ascending(self, offset: int) -> bool:
        """Whether the directory at ``offset`` (parsed) lists its tags strictly ascending, none twice."""
        return self._ascending[offset]

    def read_at(self, offset: int, n: int) -> bytes | None:
        """``n`` bytes at ``offset``; None when they are not all inside the file."""
        try:
            return self._read(offset, n)
        except Malformed:
            return None

    def value_offset(self, entry: Entry) -> int:
        """Where an entry's value lies when it does not fit in the entry (its field holds the offset)."""
        return int(struct.unpack(self.order + ("Q" if self.big else "I"), entry.field)[0])

    def value_bytes(self, entry: Entry, limit: int) -> bytes:
        nbytes = TYPE_SIZE.get(entry.type, 0) * entry.n
        if nbytes == 0 or nbytes > limit:
            raise Malformed("unsupported or oversized tag value")
        if nbytes <= len(entry.field):
            return entry.field[:nbytes]
        offset = self.value_offset(entry)
        value = self._values.get((offset, nbytes))
        if value is None:
            value = self._values[(offset, nbytes)] = self._read(offset, nbytes)
        return value

    def int_array(self, ifd: dict[int, Entry], tag: int) -> array.array[int] | None:
        """An unsigned-integer tag as a compact array in native byte order."""
        entry = ifd.get(tag)
        return None if entry is None else self._array(entry)

    def _array(self, entry: Entry) -> array.array[int]:
        code = _UNSIGNED.get(entry.type)
        if code is None:
            raise Malformed("tag is not an unsigned integer")
        values = array.array(_ARRAY_CODE[code])
        values.frombytes(self.value_bytes(entry, self.size))
        if values.itemsize > 1 and self.order != _NATIVE:
            values.byteswap()
        return values

    def ints(self, ifd: dict[int, Entry], tag: int) -> tuple[int, ...] | None:
        """A short unsigned-integer tag as a tuple; decoded once per entry (a first open asks for
        the same scalars from the plain check, the truncation check and the tile index)."""
        entry = ifd.get(tag)
        if entry is None:
            return None
        values = self._ints.get(entry)
        if values is None:
            values = tuple(self._array(entry))
            if len(values) <= _KEPT_INTS:
                self._ints[entry] = values
        return values

    def raw(self, ifd: dict[int, Entry], tag: int, limit: int) -> bytes | None:
        entry = ifd.get(tag)
        if entry is None:
            return None
        if entry.type not in (BYTE, UNDEFINED):
            raise Malformed("tag is not a byte string")
        return self.value_bytes(entry, limit)
