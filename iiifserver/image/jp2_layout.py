"""A JPEG 2000 file's structure (``.jp2``, ``.j2k``, ``.jpx``): its header, and where its tile-parts lie.

Owns: reading a JP2 file's boxes and its codestream's main header in plain Python (size,
resolution levels, tiling, precincts, wavelet, components, ICC profile, channel definitions),
checking that the codestream is whole (every tile-part inside the file, every tile present, EOC
at the end) so that a truncated file is refused before any pixel is decoded; the ``Layout`` of a
file (main header, each tile's tile-parts) that ``jp2.decode`` cuts sub-codestreams from, kept
per file version (``layout_of``) so the probe and the decodes walk a file once; the errors of a
JPEG 2000 source.
Must not know: OpenJPEG, pyvips, plans, HTTP.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # the JP2 signature box (JP2 and JPX files)
CODESTREAM_MAGIC = b"\xff\x4f\xff\x51"  # SOC then SIZ: a raw codestream (.j2k, .j2c)
NO_PRECINCTS = 1 << 15  # what a codestream without explicit precincts amounts to
_MAX_HEADER_BYTES = 1 << 20  # a main header (or a box before the codestream) larger than this is refused
_MAX_TILE_PARTS = 1 << 20


class Jp2Error(Exception):
    """A JPEG 2000 file this module will not decode; ``str()`` is one line and names no path."""


class Jp2Damaged(Jp2Error):
    """Truncated or corrupt: not a JPEG 2000 file any decoder would read whole."""


class Jp2Unsupported(Jp2Error):
    """A valid file of a kind the server does not serve (palette, subsampled components, ...)."""


@dataclass(frozen=True, slots=True)
class Jp2Header:
    width: int
    height: int
    components: int
    bit_depth: int
    levels: int  # decomposition levels: resolutions 1, 1/2, ... 1/2**levels can be decoded
    tile_width: int  # the codestream's tiles; the image size when it has one tile
    tile_height: int
    tiles: int
    precinct_width: int  # at the full resolution; NO_PRECINCTS when the codestream sets none
    precinct_height: int
    reversible: bool  # the 5-3 wavelet (lossless when not truncated); else 9-7 (lossy)
    layers: int
    has_alpha: bool
    icc_profile: bytes  # empty when the file has none
    codestream: bool  # a raw codestream (.j2k), not a JP2 file

    @property
    def is_tiled(self) -> bool:
        return self.tiles > 1

    @property
    def has_precincts(self) -> bool:
        return self.precinct_width < NO_PRECINCTS or self.precinct_height < NO_PRECINCTS

    def level_size(self, reduce: int) -> tuple[int, int]:
        """Pixels of the image at 1/2**reduce (OpenJPEG's output size for that reduce)."""
        return -(-self.width >> reduce), -(-self.height >> reduce)


def is_jpeg2000(head: bytes) -> bool:
    return head.startswith(SIGNATURE) or head.startswith(CODESTREAM_MAGIC)


def read_header(path: Path) -> Jp2Header:
    """Boxes and main header of ``path``, every tile-part checked to lie inside the file.

    Raises ``Jp2Damaged`` (truncated, corrupt) or ``Jp2Unsupported``; ``OSError`` as is. The walk is
    kept with the file's version: the decodes that follow the probe do not walk it again.
    """
    with path.open("rb") as fh:
        return layout_of(path, fh).header


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a file's codestream parts lie: what a sub-codestream is cut from."""

    header: Jp2Header
    main_header: bytes  # SOC up to the first SOT
    parts: tuple[tuple[tuple[int, int], ...], ...]  # per tile, its tile-parts' (offset, length) in file order
    sub_decodable: bool  # no packed packet headers (PPM) and channels in the order OpenJPEG leaves them

    @property
    def part_count(self) -> int:
        return sum(len(tile) for tile in self.parts)


def _read_layout(fh: BinaryIO, size: int) -> Layout:
    head = fh.read(12)
    if head.startswith(CODESTREAM_MAGIC):
        return _codestream(fh, 0, size, icc=b"", alpha_channels=0, codestream=True, plain_channels=True)
    if not head.startswith(SIGNATURE):
        raise Jp2Damaged("not a JPEG 2000 file")
    icc, alpha, palette, plain = b"", 0, False, True
    offset = 12
    while offset < size:
        box, start, end = _box(fh, offset, size)
        if box == b"jp2h":
            icc, alpha, palette, plain = _jp2_header_box(fh, start, end)
        elif box == b"jp2c":
            if palette:
                raise Jp2Unsupported("JPEG 2000 with a palette is not supported")
            return _codestream(fh, start, end, icc=icc, alpha_channels=alpha, codestream=False, plain_channels=plain)
        offset = end
    raise Jp2Damaged("the JP2 file has no codestream (truncated?)")


def _box(fh: BinaryIO, offset: int, size: int) -> tuple[bytes, int, int]:
    """(type, start of content, end) of the box at ``offset``."""
    fh.seek(offset)
    raw = fh.read(8)
    if len(raw) < 8:
        raise Jp2Damaged("a JP2 box header is cut short (truncated file)")
    length, kind = struct.unpack(">I4s", raw)
    start = offset + 8
    if length == 1:
        xl = fh.read(8)
        if len(xl) < 8:
            raise Jp2Damaged("a JP2 box header is cut short (truncated file)")
        (length,) = struct.unpack(">Q", xl)
        start += 8
    elif length == 0:
        length = size - offset  # up to the end of the file
    end = offset + length
    if end < start:
        raise Jp2Damaged(f"a JP2 box ({kind!r}) has an impossible length")
    if end > size:
        raise Jp2Damaged(f"the file ends inside its {kind.decode('latin-1')!r} box (truncated file)")
    return kind, start, end


def _jp2_header_box(fh: BinaryIO, start: int, end: int) -> tuple[bytes, int, bool, bool]:
    """(ICC profile, number of alpha channels, has a palette, channels in codestream order) from
    the ``jp2h`` superbox. The order is plain when every colour channel is its own (association
    n+1) and alpha is the last channel: OpenJPEG's JP2 decoder then reorders nothing."""
    if end - start > _MAX_HEADER_BYTES:
        raise Jp2Unsupported("the JP2 header box is too large")
    icc, alpha, palette, plain = b"", 0, False, True
    offset = start
    while offset < end:
        kind, cstart, cend = _box(fh, offset, end)
        if kind == b"colr" and not icc:
            fh.seek(cstart)
            data = fh.read(cend - cstart)
            if len(data) >= 3 and data[0] in (2, 3):
                icc = data[3:]
            elif len(data) >= 7 and data[0] == 1:
                enumerated = struct.unpack(">I", data[3:7])[0]
                if enumerated not in (16, 17):  # sRGB, greyscale; sYCC, CIELab, CMYK... are not
                    raise Jp2Unsupported(f"JPEG 2000 colour space {enumerated} is not supported")
        elif kind == b"cdef":
            fh.seek(cstart)
            data = fh.read(cend - cstart)
            count = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
            for i in range(count):
                row = data[2 + 6 * i : 8 + 6 * i]
                if len(row) != 6:
                    plain = False
                    continue
                channel, kind, association = struct.unpack(">HHH", row)
                if kind in (1, 2):
                    alpha += 1
                    plain = plain and association == 0 and channel == count - 1
                else:
                    plain = plain and association == channel + 1
        elif kind == b"pclr":
            palette = True
        offset = cend
    return icc, alpha, palette, plain


def _codestream(
    fh: BinaryIO, start: int, end: int, *, icc: bytes, alpha_channels: int, codestream: bool, plain_channels: bool
) -> Layout:
    fh.seek(start)
    head = fh.read(min(end - start, _MAX_HEADER_BYTES))
    if not head.startswith(CODESTREAM_MAGIC):
        raise Jp2Damaged("the codestream does not start with SOC and SIZ")
    siz: tuple[int, ...] | None = None
    components: list[tuple[int, int, int]] = []
    cod: bytes | None = None
    coc_levels: list[int] = []
    packed_headers = False
    pos = 2
    while True:
        if pos + 4 > len(head):
            raise Jp2Damaged("the codestream's main header is cut short (truncated file)")
        marker, length = struct.unpack(">HH", head[pos : pos + 4])
        body = head[pos + 4 : pos + 2 + length]
        if marker == 0xFF90:  # SOT: the main header is over
            break
        if marker >> 8 != 0xFF or length < 2 or len(body) != length - 2:
            raise Jp2Damaged("the codestream's main header is corrupt")
        if marker == 0xFF51:  # SIZ
            if len(body) < 36:
                raise Jp2Damaged("the codestream's SIZ marker is corrupt")
            siz = struct.unpack(">HIIIIIIIIH", body[:36])
            for i in range(siz[9]):
                ssiz, xr, yr = body[36 + 3 * i : 39 + 3 * i].ljust(3, b"\0")
                components.append((ssiz, xr, yr))
        elif marker == 0xFF52:  # COD
            cod = body
        elif marker == 0xFF53 and siz is not None:  # COC: a component may have fewer levels
            at = 1 if siz[9] < 257 else 2
            coc_levels.append(body[at + 1])
        elif marker == 0xFF60:  # PPM: every tile-part's packet headers, in order, in the main header
            packed_headers = True
        pos += 2 + length
    if siz is None or cod is None or len(cod) < 10 or not components:
        raise Jp2Damaged("the codestream has no SIZ or COD marker")
    _, xsiz, ysiz, x0, y0, xt, yt, xt0, yt0, _ = siz
    if x0 or y0 or xt0 or yt0:
        raise Jp2Unsupported("JPEG 2000 with an image or tile offset is not supported")
    if xsiz <= 0 or ysiz <= 0 or xt <= 0 or yt <= 0:
        raise Jp2Damaged("the codestream's SIZ marker is corrupt")
    if any(c[1:] != (1, 1) for c in components):
        raise Jp2Unsupported("JPEG 2000 with subsampled components is not supported")
    depths = {(c[0] & 0x7F) + 1 for c in components}
    if any(c[0] & 0x80 for c in components) or len(depths) != 1 or max(depths) > 16:
        raise Jp2Unsupported("JPEG 2000 components must be unsigned, of one depth, 16 bits at most")
    n = len(components)
    if n not in (1, 2, 3, 4):
        raise Jp2Unsupported(f"JPEG 2000 with {n} components is not supported")
    scod, layers, levels, transform = cod[0], struct.unpack(">H", cod[2:4])[0], cod[5], cod[9]
    levels = min([levels, *coc_levels])
    pw = ph = NO_PRECINCTS
    if scod & 1 and len(cod) >= 10 + cod[5] + 1:
        full = cod[10 + cod[5]]  # the precincts of the last (full) resolution
        pw, ph = 1 << (full & 0x0F), 1 << (full >> 4)
    across, down = -(-xsiz // xt), -(-ysiz // yt)
    parts = _tile_parts(fh, start + pos, end, across * down)
    header = Jp2Header(
        width=xsiz,
        height=ysiz,
        components=n,
        bit_depth=depths.pop(),
        levels=levels,
        tile_width=min(xt, xsiz),
        tile_height=min(yt, ysiz),
        tiles=across * down,
        precinct_width=pw,
        precinct_height=ph,
        reversible=transform == 1,
        layers=layers,
        has_alpha=alpha_channels > 0 or n in (2, 4),
        icc_profile=icc,
        codestream=codestream,
    )
    return Layout(header, head[:pos], parts, sub_decodable=not packed_headers and plain_channels)


def _tile_parts(fh: BinaryIO, offset: int, end: int, tiles: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Walk the tile-parts (SOT markers): each lies inside the codestream, every tile has one,
    and EOC ends it. A file cut short anywhere fails here, before any decode.

    Returns, per tile, the (offset, length) of its tile-parts in file order."""
    found: list[list[tuple[int, int]]] = [[] for _ in range(tiles)]
    count = 0
    while True:
        fh.seek(offset)
        raw = fh.read(12)
        if raw[:2] == b"\xff\xd9":
            break
        if len(raw) < 12:
            raise Jp2Damaged("the codestream ends without its EOC marker (truncated file)")
        marker, _, tile, length = struct.unpack(">HHHI", raw[:10])
        if marker != 0xFF90 or tile >= tiles:
            raise Jp2Damaged("the codestream has a corrupt tile-part header")
        if length == 0:  # the last tile-part runs to EOC
            length = end - 2 - offset
        if length < 14 or offset + length > end:
            raise Jp2Damaged("a tile-part runs past the end of the codestream (truncated file)")
        found[tile].append((offset, length))
        offset += length
        count += 1
        if count > _MAX_TILE_PARTS:
            raise Jp2Unsupported("the codestream has too many tile-parts")
    if not all(found):
        raise Jp2Damaged("the codestream lacks some of its tiles (truncated file)")
    return tuple(tuple(parts) for parts in found)


# Layouts kept per file version: walking the tile-parts of a large file costs milliseconds, its
# index about 175 bytes per tile-part (Python tuples): 131,072 parts, about 23 MB, are 77 images
# of 12000 x 9000 pixels in 256-pixel tiles.
LAYOUTS_KEPT = 256
LAYOUT_PARTS_KEPT = 1 << 17
_layouts: OrderedDict[tuple[bytes, int, int, int, int], Layout] = OrderedDict()
_layouts_lock = threading.Lock()


def layout_of(path: Path, fh: BinaryIO) -> Layout:
    """The layout of the open file ``fh`` (``path``), kept by its device, inode, size and mtime."""
    st = os.fstat(fh.fileno())
    key = (os.fsencode(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _layouts_lock:
        layout = _layouts.get(key)
        if layout is not None:
            _layouts.move_to_end(key)
            return layout
    fh.seek(0)
    layout = _read_layout(fh, st.st_size)
    with _layouts_lock:
        _layouts[key] = layout
        parts = sum(entry.part_count for entry in _layouts.values())
        while len(_layouts) > LAYOUTS_KEPT or (parts > LAYOUT_PARTS_KEPT and len(_layouts) > 1):
            _, dropped = _layouts.popitem(last=False)
            parts -= dropped.part_count
    return layout
