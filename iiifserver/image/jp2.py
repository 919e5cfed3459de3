"""JPEG 2000 sources (``.jp2``, ``.j2k``, ``.jpx``): decoding one area of one level.

Owns: ``decode``: one resolution level (``reduce``) and one area of it, through OpenJPEG
(Debian's ``libopenjp2``, reached through glymur's ctypes bindings), into a numpy array, with
OpenJPEG's errors and data-loss warnings turned into ``Jp2Damaged`` (OpenJPEG fills what it could
not decode with zeros: a partly black image must never be served).
The file's structure (header, tile-parts, errors) is ``jp2_layout``'s; its public names are
re-exported here, the one module the rest of the server asks about JPEG 2000.
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
checks the file (``jp2_layout.layout_of``, kept per file version); a codestream with packed packet headers
(PPM), or channel definitions OpenJPEG would reorder, is decoded from the file as before.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from iiifserver.image.jp2_layout import (
    CODESTREAM_MAGIC,
    NO_PRECINCTS,
    SIGNATURE,
    Jp2Damaged,
    Jp2Error,
    Jp2Header,
    Jp2Unsupported,
    Layout,
    is_jpeg2000,
    layout_of,
    read_header,
)

__all__ = [
    "CODESTREAM_MAGIC",
    "NO_PRECINCTS",
    "SIGNATURE",
    "Jp2Damaged",
    "Jp2Error",
    "Jp2Header",
    "Jp2Unsupported",
    "available",
    "decode",
    "decoder_version",
    "is_jpeg2000",
    "read_header",
]


# OpenJPEG warnings that mean data is missing or unusable: it decodes the rest and leaves zeros.
_DAMAGE_WORDS = (
    *("too short", "truncat", "stream error", "not enough", "premature", "corrupt", "inconsistent"),
    *("expected", "invalid", "cannot", "failed", "error"),
)


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
        layout = layout_of(path, fh)
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


def _worth_cutting(layout: Layout, tiles: tuple[int, int, int, int]) -> bool:
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


def _sub_codestream(layout: Layout, fd: int, tiles: tuple[int, int, int, int]) -> bytes:
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
