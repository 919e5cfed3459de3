"""JPEG 2000 sources (``.jp2``, ``.j2k``, ``.jpx``): their header, and decoding one area of one level.

Owns: reading a JP2 file's boxes and its codestream's main header in plain Python (size,
resolution levels, tiling, precincts, wavelet, components, ICC profile), checking that the
codestream is whole (every tile-part inside the file, ending in EOC) so that a truncated file is
refused before any pixel is decoded; and ``decode``: one resolution level (``reduce``) and one area
of it, through OpenJPEG (Debian's ``libopenjp2``, reached through glymur's ctypes bindings),
into a numpy array, with OpenJPEG's errors and data-loss warnings turned into ``Jp2Damaged``
(OpenJPEG fills what it could not decode with zeros: a partly black image must never be served).
Must not know: pyvips, plans, HTTP, caching. The only importer of glymur (an import-linter rule).

Why this decoder: measured against Pillow (whole-level decodes only) and imagecodecs (no area
decode): see docs/jpeg2000.md. One OpenJPEG thread per call: the server already renders in
several threads.

Why a sub-codestream: OpenJPEG sets up every tile of a tiled codestream when it reads the main
header (about 12 KB and 1.5 microseconds each: 20 MB and 2.6 ms for a 12000 x 9000 image in 256
tiles), then walks the tile-part headers from the first one to the tiles of the area, and frees
it all again; for one deep-zoom tile that was three quarters of the decode. So a decode of a few
tiles hands OpenJPEG a codestream of its own, in memory: the main header with the image area
narrowed to those tiles (SIZ's image and tile offsets moved to the first one, on the same
reference grid, so the wavelet, code-blocks and precincts are those of the file and the pixels
identical), their tile-parts renumbered, and EOC. The tile-parts' places come from the walk that
checks the file (``_layout_of``, kept per file version); a codestream with packed packet headers
(PPM), or channel definitions OpenJPEG would reorder, is decoded from the file as before.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # the JP2 signature box (JP2 and JPX files)
CODESTREAM_MAGIC = b"\xff\x4f\xff\x51"  # SOC then SIZ: a raw codestream (.j2k, .j2c)
NO_PRECINCTS = 1 << 15  # what a codestream without explicit precincts amounts to
_MAX_HEADER_BYTES = 1 << 20  # a main header (or a box before the codestream) larger than this is refused
_MAX_TILE_PARTS = 1 << 20
# OpenJPEG warnings that mean data is missing or unusable: it decodes the rest and leaves zeros.
_DAMAGE_WORDS = (
    *("too short", "truncat", "stream error", "not enough", "premature", "corrupt", "inconsistent"),
    *("expected", "invalid", "cannot", "failed", "error"),
)


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
        return _layout_of(path, fh).header


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a file's codestream parts lie: what a sub-codestream is cut from."""

    header: Jp2Header
    main_header: bytes  # SOC up to the first SOT
    parts: tuple[tuple[tuple[int, int], ...], ...]  # per tile, its tile-parts' (offset, length) in file order
    sub_decodable: bool  # no packed packet headers (PPM) and channels in the order OpenJPEG leaves them

    @property
    def part_count(self) -> int:
        return sum(len(tile) for tile in self.parts)


def _read_layout(fh: BinaryIO, size: int) -> _Layout:
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
) -> _Layout:
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
    return _Layout(header, head[:pos], parts, sub_decodable=not packed_headers and plain_channels)


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
_layouts: OrderedDict[tuple[bytes, int, int, int, int], _Layout] = OrderedDict()
_layouts_lock = threading.Lock()


def _layout_of(path: Path, fh: BinaryIO) -> _Layout:
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


# --- decoding ------------------------------------------------------------------------------------


@functools.cache
def _opj() -> Any:
    """glymur's ctypes bindings of libopenjp2 (imported on first use: the server starts without it)."""
    from glymur.lib import openjp2

    if openjp2.OPENJP2 is None:
        raise ImportError("libopenjp2 is not installed")
    return openjp2


def available() -> bool:
    """Whether JPEG 2000 can be decoded here (glymur and libopenjp2 >= 2.3 present)."""
    try:
        opj = _opj()
    except (ImportError, OSError):
        return False
    major, minor = (int(part) for part in opj.version().split(".")[:2])
    return (major, minor) >= (2, 3)


def decoder_version() -> str:
    return str(_opj().version()) if available() else ""


_Callback = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_Read = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_Skip = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_Seek = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p)
_END_OF_STREAM = ctypes.c_size_t(-1).value

# A decode of at most this many tiles, of at most this many bytes, goes through a sub-codestream.
# Beyond, copying the tile-parts costs about what OpenJPEG's set-up of the whole file does
# (measured on 12000 x 9000 files in 256 tiles: 2.9 against 9.6 ms for one tile, 17 against 21 ms
# for 256 lossy tiles, even at 1024; docs/jpeg2000.md).
SUB_CODESTREAM_MAX_TILES = 256
SUB_CODESTREAM_MAX_BYTES = 32 << 20


def decode(
    path: Path, reduce: int, area: tuple[int, int, int, int] | None = None, *, threads: int = 1
) -> tuple[np.ndarray[Any, Any], bytes]:
    """Pixels of ``area`` (x0, y0, x1, y1 in full-resolution pixels, clipped to the image; None: all)
    at 1/2**reduce.

    Returns (an array of height x width x components, uint8 or uint16 scaled to the full range,
    the ICC profile or b""). Only the code-blocks of that area and level are decoded. Raises
    ``Jp2Damaged`` when OpenJPEG fails or reports lost data, ``Jp2Error`` when unavailable.
    """
    try:
        opj = _opj()
    except (ImportError, OSError) as exc:
        raise Jp2Error(f"no JPEG 2000 decoder: {exc}") from None
    with path.open("rb") as fh:
        layout = _layout_of(path, fh)
        header = layout.header
        x0, y0, x1, y1 = area if area is not None else (0, 0, header.width, header.height)
        box = (x0, y0, min(x1, header.width), min(y1, header.height))
        tiles = _tiles_under(header, box)
        data = _sub_codestream(layout, fh.fileno(), tiles) if _worth_cutting(layout, tiles) else None
    if data is not None:
        return _decode(opj, lambda: _memory_stream(opj, data), opj.CODEC_J2K, reduce, box, threads), header.icc_profile
    codec_format = opj.CODEC_J2K if header.codestream else opj.CODEC_JP2
    icc: list[bytes] = []
    pixels = _decode(opj, lambda: _file_stream(opj, path), codec_format, reduce, box, threads, icc)
    return pixels, icc[0]


def _tiles_under(header: Jp2Header, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(first column, first row, end column, end row) of the codestream tiles ``box`` touches."""
    x0, y0, x1, y1 = box
    tw, th = header.tile_width, header.tile_height
    return x0 // tw, y0 // th, max(-(-x1 // tw), x0 // tw + 1), max(-(-y1 // th), y0 // th + 1)


def _worth_cutting(layout: _Layout, tiles: tuple[int, int, int, int]) -> bool:
    tx0, ty0, tx1, ty1 = tiles
    count = (tx1 - tx0) * (ty1 - ty0)
    if not layout.sub_decodable or layout.header.tiles == 1 or count > SUB_CODESTREAM_MAX_TILES:
        return False
    across = -(-layout.header.width // layout.header.tile_width)
    size = sum(
        length
        for row in range(ty0, ty1)
        for column in range(tx0, tx1)
        for _, length in layout.parts[row * across + column]
    )
    return size <= SUB_CODESTREAM_MAX_BYTES


def _sub_codestream(layout: _Layout, fd: int, tiles: tuple[int, int, int, int]) -> bytes:
    """A codestream of the file's ``tiles`` alone: SIZ narrowed to them, their tile-parts
    renumbered in the new tile grid (row by row), tile and packet length indexes of the whole
    file (TLM, PLM) left out."""
    tx0, ty0, tx1, ty1 = tiles
    header = layout.header
    tw, th = header.tile_width, header.tile_height
    main = layout.main_header
    chunks: list[bytes | memoryview] = [main[:2]]
    pos = 2
    while pos < len(main):
        marker, length = struct.unpack(">HH", main[pos : pos + 4])
        segment = main[pos : pos + 2 + length]
        if marker == 0xFF51:  # SIZ: image area and tile origin at the first tile, same reference grid
            narrowed = bytearray(segment)
            struct.pack_into(
                ">IIII", narrowed, 6, min(tx1 * tw, header.width), min(ty1 * th, header.height), tx0 * tw, ty0 * th
            )
            struct.pack_into(">II", narrowed, 30, tx0 * tw, ty0 * th)
            chunks.append(bytes(narrowed))
        elif marker not in (0xFF55, 0xFF57):  # TLM, PLM: about the file's tiles, not these
            chunks.append(segment)
        pos += 2 + length
    across = -(-header.width // tw)
    number = 0
    for row in range(ty0, ty1):
        for column in range(tx0, tx1):
            for offset, length in layout.parts[row * across + column]:
                raw = os.pread(fd, length, offset)
                if len(raw) != length:
                    raise Jp2Damaged("the codestream is shorter than its index (the file changed?)")
                # SOT: marker, Lsot 10, Isot renumbered, Psot exact (0 meant "up to EOC"), TPsot, TNsot.
                chunks.append(struct.pack(">HHHI", 0xFF90, 10, number, length) + raw[10:12])
                chunks.append(memoryview(raw)[12:])
            number += 1
    chunks.append(b"\xff\xd9")
    return b"".join(chunks)


def _decode(
    opj: Any,
    open_stream: Callable[[], tuple[Any, object]],
    codec_format: int,
    reduce: int,
    box: tuple[int, int, int, int],
    threads: int,
    icc: list[bytes] | None = None,
) -> np.ndarray[Any, Any]:
    """OpenJPEG's decode of ``box`` at ``reduce`` from the stream ``open_stream`` makes (with
    what must outlive it); the file's ICC profile, as OpenJPEG read it, appended to ``icc`` when given."""
    problems: list[str] = []

    def on_error(message: bytes, _data: Any) -> None:
        problems.append(message.decode("utf-8", "replace").strip())

    def on_warning(message: bytes, _data: Any) -> None:
        text = message.decode("utf-8", "replace").strip()
        if any(word in text.lower() for word in _DAMAGE_WORDS):
            problems.append(text)

    error_cb, warning_cb = _Callback(on_error), _Callback(on_warning)  # alive until the call returns
    stream = codec = image = None
    try:
        stream, _keep = open_stream()
        if not stream:
            raise Jp2Error("the file cannot be opened")
        codec = opj.create_decompress(codec_format)
        opj.set_error_handler(codec, error_cb)
        opj.set_warning_handler(codec, warning_cb)
        opj.set_info_handler(codec, None)
        params = opj.set_default_decoder_parameters()
        params.cp_reduce = reduce
        params.decod_format = codec_format
        opj.setup_decoder(codec, params)
        if threads > 1:
            opj.codec_set_threads(codec, threads)
        image = opj.read_header(stream, codec)
        opj.set_decode_area(codec, image, *box)
        opj.decode(codec, stream, image)
        opj.end_decompress(codec, stream)
        if problems:
            raise Jp2Damaged(f"the codestream is damaged: {problems[0]}")
        if icc is not None:
            icc.append(_icc(image.contents))
        return _pixels(image.contents)
    except OSError as exc:  # glymur's OpenJPEGLibraryError: a call returned false
        detail = problems[0] if problems else (str(exc).strip().splitlines() or ["decode failed"])[0]
        raise Jp2Damaged(f"the codestream cannot be decoded: {detail}") from None
    finally:
        if image is not None:
            opj.image_destroy(image)
        if codec is not None:
            opj.destroy_codec(codec)
        if stream is not None:
            opj.stream_destroy(stream)


# OpenJPEG's default stream buffer is 1 MiB, refilled after every seek: decoding an area of a
# tiled codestream skips from tile-part header to tile-part header (one seek each), and each skip
# cost a 1 MiB read. A small buffer makes the skips cheap; tile data is read in one piece anyway.
STREAM_BUFFER = 64 * 1024


def _file_stream(opj: Any, path: Path, buffer: int | None = None) -> tuple[Any, object]:
    create = opj.OPENJP2.opj_stream_create_file_stream
    create.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32]
    create.restype = ctypes.c_void_p
    return create(os.fsencode(path), STREAM_BUFFER if buffer is None else buffer, 1), None


@functools.cache
def _stream_api(opj: Any) -> Any:
    lib = opj.OPENJP2
    lib.opj_stream_create.argtypes = [ctypes.c_size_t, ctypes.c_int32]
    lib.opj_stream_create.restype = ctypes.c_void_p
    lib.opj_stream_set_read_function.argtypes = [ctypes.c_void_p, _Read]
    lib.opj_stream_set_skip_function.argtypes = [ctypes.c_void_p, _Skip]
    lib.opj_stream_set_seek_function.argtypes = [ctypes.c_void_p, _Seek]
    lib.opj_stream_set_user_data_length.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    return lib


def _memory_stream(opj: Any, data: bytes) -> tuple[Any, object]:
    """An OpenJPEG input stream over ``data``, and its callbacks and ``data``: to be kept until
    the stream is destroyed."""
    lib = _stream_api(opj)
    base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
    size = len(data)
    position = [0]

    def read(target: int, count: int, _user: Any) -> int:
        at = position[0]
        if at >= size:
            return _END_OF_STREAM
        count = min(count, size - at)
        ctypes.memmove(target, base + at, count)
        position[0] = at + count
        return count

    def skip(count: int, _user: Any) -> int:
        count = max(-position[0], min(count, size - position[0]))
        position[0] += count
        return count

    def seek(to: int, _user: Any) -> int:
        if not 0 <= to <= size:
            return 0
        position[0] = to
        return 1

    callbacks = (_Read(read), _Skip(skip), _Seek(seek), data)
    stream = lib.opj_stream_create(min(size, 1 << 20) or 1, 1)
    if stream:
        lib.opj_stream_set_read_function(stream, callbacks[0])
        lib.opj_stream_set_skip_function(stream, callbacks[1])
        lib.opj_stream_set_seek_function(stream, callbacks[2])
        lib.opj_stream_set_user_data_length(stream, size)
    return stream, callbacks


def _pixels(image: Any) -> np.ndarray[Any, Any]:
    n = int(image.numcomps)
    first = image.comps[0]
    w, h, prec = int(first.w), int(first.h), int(first.prec)
    if w == 0 or h == 0:
        raise Jp2Damaged("the codestream decoded to an empty image")
    dtype = np.uint8 if prec <= 8 else np.uint16
    out = np.empty((h, w, n), dtype)
    top = (1 << prec) - 1
    full = 255 if prec <= 8 else 65535
    for k in range(n):
        comp = image.comps[k]
        if (int(comp.w), int(comp.h), int(comp.prec)) != (w, h, prec) or not comp.data:
            raise Jp2Damaged("the codestream's components differ in size or depth")
        band = np.ctypeslib.as_array(comp.data, shape=(h * w,)).reshape(h, w)
        if top != full:  # 12-bit and other depths fill the range of their storage type
            band = np.clip((band.astype(np.int64) * full + top // 2) // top, 0, full)
        out[:, :, k] = band  # OpenJPEG clamps samples to their precision
    return out


def _icc(image: Any) -> bytes:
    length = int(image.icc_profile_len)
    if length <= 0 or not image.icc_profile_buf:
        return b""
    return ctypes.string_at(image.icc_profile_buf, length)
