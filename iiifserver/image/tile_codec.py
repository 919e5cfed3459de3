"""libjpeg-turbo calls on stored JPEG tiles, made directly through ctypes.

Owns: decoding a tile to pixels (``decode``, with DCT scaling) or to its Y, Cb, Cr planes as
stored (``decode_planes``), encoding pixels or planes as the renderer encodes a response
(``encode_as``, ``encode_planes``), and cutting a padded edge tile to its valid area in the DCT
domain (``lossless_crop``); libjpeg instances kept per thread. ``tile_mosaic``, ``tile_planes``
and ``tile_stretch`` do their decoding and encoding through these calls.
Must not know: TIFF structure (callers hand over complete JPEGs), pyvips, HTTP, caching.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# TurboJPEG 2 API constants (turbojpeg.h).
_TJPF_RGB, _TJPF_GRAY = 0, 6
_TJSAMP_444, _TJSAMP_420, _TJSAMP_GRAY = 0, 2, 3
_TJCS_YCBCR, _TJCS_GRAY = 1, 2
# Chroma samples per luma sample, across and down, of the samplings ``decode_planes`` hands out.
PLANE_SAMPLINGS: dict[int, tuple[int, int]] = {_TJSAMP_444: (1, 1), _TJSAMP_420: (2, 2)}
SAMPLING_420, SAMPLING_444, SAMPLING_GRAY = _TJSAMP_420, _TJSAMP_444, _TJSAMP_GRAY
# The encoder defaults to the fast, less accurate forward DCT; libvips' jpegsave uses the
# accurate one, and what is encoded here must encode like a render.
_TJFLAG_ACCURATEDCT = 4096
_TJFLAG_NOREALLOC = 1024
# A libjpeg warning (corrupt data, premature end) stops the call: it returns -1 either way
# (libjpeg-turbo >= 2.0), this only saves finishing the damaged work.
_TJFLAG_STOPONWARNING = 8192
_TJXOP_NONE, _TJXOPT_CROP = 0, 4
# libvips' "auto" chroma subsampling: 4:4:4 from this quality up, else 4:2:0.
_AUTO_444_FROM_QUALITY = 90


@dataclass(frozen=True, slots=True)
class Encoding:
    """How responses are JPEG-encoded: the same settings as ``render.EncodeOptions``."""

    quality: int
    chroma_subsampling: bool  # 4:2:0 at every quality; False: 4:4:4 from Q90 (libvips' choice)

    def subsampling(self, gray: bool) -> int:
        if gray:
            return _TJSAMP_GRAY
        if self.chroma_subsampling or self.quality < _AUTO_444_FROM_QUALITY:
            return _TJSAMP_420
        return _TJSAMP_444


class TurboError(OSError):
    """libturbojpeg refused a stream, or warned about it (damaged data): nothing it made is used."""


class NotPlanar(TurboError):
    """A sound JPEG that ``decode_planes`` does not take: sampled or coloured otherwise."""


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):  # tjtransform; no custom filter
    _fields_ = [
        ("r", _Region),
        ("op", ctypes.c_int),
        ("options", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("customFilter", ctypes.c_void_p),
    ]


_P = ctypes.c_void_p
_BYTES = ctypes.c_char_p  # a bytes object passed as its buffer, no copy
_INT_P = ctypes.POINTER(ctypes.c_int)


class _Library:
    """libturbojpeg's TurboJPEG 2 API, called directly through ctypes.

    PyTurboJPEG (the dependency that finds the library, and what this module used before)
    creates and destroys a libjpeg instance per call, wraps the input in numpy and copies the
    output through a ctypes string buffer; for the few hundred microseconds an edge tile takes,
    that was a tenth of the work. Here each thread keeps its three instances (decompress,
    compress, transform: ``_Handles``) and an output buffer for the encoder, and the calls are
    exactly the ones PyTurboJPEG makes, with the same arguments (same output bytes).
    """

    def __init__(self, lib: ctypes.CDLL) -> None:
        def fn(name: str, restype: object, *argtypes: object) -> ctypes._NamedFuncPointer:
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, list(argtypes)
            return f  # type: ignore[no-any-return]

        c_int, c_ulong = ctypes.c_int, ctypes.c_ulong
        self.init_decompress = fn("tjInitDecompress", _P)
        self.init_compress = fn("tjInitCompress", _P)
        self.init_transform = fn("tjInitTransform", _P)
        self.destroy = fn("tjDestroy", c_int, _P)
        self.header = fn("tjDecompressHeader3", c_int, _P, _BYTES, c_ulong, _INT_P, _INT_P, _INT_P, _INT_P)
        self.decompress = fn("tjDecompress2", c_int, _P, _BYTES, c_ulong, _P, c_int, c_int, c_int, c_int, c_int)
        self.compress = fn(
            "tjCompress2", c_int, _P, _P, c_int, c_int, c_int, c_int, ctypes.POINTER(_P),
            ctypes.POINTER(c_ulong), c_int, c_int, c_int,
        )  # fmt: skip
        self.transform = fn(
            "tjTransform", c_int, _P, _BYTES, c_ulong, c_int, ctypes.POINTER(_P), ctypes.POINTER(c_ulong),
            ctypes.POINTER(_Transform), c_int,
        )  # fmt: skip
        self.decompress_planes = fn(
            "tjDecompressToYUVPlanes", c_int, _P, _BYTES, c_ulong, ctypes.POINTER(_P), c_int, _INT_P, c_int, c_int
        )
        self.compress_planes = fn(
            "tjCompressFromYUVPlanes", c_int, _P, ctypes.POINTER(_P), c_int, _INT_P, c_int, c_int,
            ctypes.POINTER(_P), ctypes.POINTER(c_ulong), c_int, c_int,
        )  # fmt: skip
        self.buffer_size = fn("tjBufSize", c_ulong, c_int, c_int, c_int)
        self.free = fn("tjFree", None, _P)
        self.error_string = fn("tjGetErrorStr2", ctypes.c_char_p, _P)
        count = c_int()
        factors = fn("tjGetScalingFactors", ctypes.POINTER(_Region), _INT_P)(ctypes.byref(count))
        # tjscalingfactor is two ints (num, denom): read through the first two fields of _Region.
        pairs = ctypes.cast(factors, ctypes.POINTER(ctypes.c_int * 2))
        self.scaling_factors = frozenset((pairs[i][0], pairs[i][1]) for i in range(count.value))


class _Handles:
    """One thread's libjpeg instances and encoder output buffer, made when first needed and kept
    until the thread ends (its ``threading.local`` entry is dropped, and this with it)."""

    def __init__(self) -> None:
        self.decompress: int | None = None
        self.compress: int | None = None
        self.transform: int | None = None
        self.out = ctypes.create_string_buffer(0)

    def __del__(self) -> None:
        try:
            lib = _library()
        except Exception:  # interpreter shutdown: this module may already be torn down
            return
        for handle in (self.decompress, self.compress, self.transform):
            if lib is not None and handle:
                lib.destroy(handle)


_local = threading.local()


def _mine() -> _Handles:
    """This thread's ``_Handles``."""
    try:
        handles: _Handles = _local.handles
    except AttributeError:
        handles = _local.handles = _Handles()
    return handles


def _handle(lib: _Library, kind: str) -> int | None:
    """This thread's libjpeg instance of ``kind`` (decompress, compress or transform), made on
    first use; None if libturbojpeg could not make one."""
    mine = _mine()
    handle: int | None = getattr(mine, kind)
    if handle is None:
        handle = getattr(lib, f"init_{kind}")() or None
        setattr(mine, kind, handle)
    return handle


def available() -> bool:
    return _library() is not None


@functools.cache
def _library() -> _Library | None:
    """libturbojpeg where PyTurboJPEG looks for it; None: such tiles are rendered instead."""
    try:
        import turbojpeg  # PyTurboJPEG 1.x over Debian's libturbojpeg0 (2.x): the dependency that names it
    except ImportError:
        return None
    candidates = [ctypes.util.find_library("turbojpeg")]
    candidates += list(getattr(turbojpeg, "DEFAULT_LIB_PATHS", {}).get(platform.system(), []))
    for name in candidates:
        if not name:
            continue
        try:
            return _Library(ctypes.CDLL(name))
        except (OSError, AttributeError):  # absent, or not the TurboJPEG 2 API
            continue
    return None


def scaling_factors() -> frozenset[tuple[int, int]]:
    """The (num, denom) scalings libturbojpeg's decoder offers; empty without it."""
    lib = _library()
    return lib.scaling_factors if lib is not None else frozenset()


def _instance(kind: str) -> tuple[_Library, int]:
    """libturbojpeg and this thread's libjpeg instance of ``kind`` (decompress, compress,
    transform); ``TurboError`` when either is missing."""
    lib = _library()
    if lib is None:
        raise TurboError("libturbojpeg is not installed")
    handle = _handle(lib, kind)
    if handle is None:
        raise TurboError(f"tjInit{kind.capitalize()} failed")
    return lib, handle


def _header(lib: _Library, handle: int, jpeg: bytes) -> tuple[int, int, int, int]:
    """(width, height, sampling, colour space) from ``jpeg``'s header; ``TurboError`` if unreadable."""
    width, height, sampling, colorspace = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    refs = (ctypes.byref(width), ctypes.byref(height), ctypes.byref(sampling), ctypes.byref(colorspace))
    if lib.header(handle, jpeg, len(jpeg), *refs) != 0:
        raise _fail(lib, handle, "header")
    return width.value, height.value, sampling.value, colorspace.value


def _fail(lib: _Library, handle: int, what: str) -> TurboError:
    """The error of a call that failed on ``handle``, which is then discarded (``_discard``)."""
    message = lib.error_string(handle) or b"unknown error"
    _discard(lib, handle)
    return TurboError(f"{what}: {message.decode(errors='replace')}")


def _discard(lib: _Library, handle: int) -> None:
    """Destroys this thread's ``handle`` after a failed call; the next call makes a new one.

    libturbojpeg 2.1 does not reset an instance whose header read failed: every later call on it
    failed too ("Bogus Huffman table definition" for sound tiles), so one damaged tile made all
    later decodes of its thread fall back to libvips. A failure is rare; a new instance is cheap.
    """
    mine = _mine()
    for kind in ("decompress", "compress", "transform"):
        if getattr(mine, kind) == handle:
            setattr(mine, kind, None)
            lib.destroy(handle)


def decode(jpeg: bytes, *, gray: bool, scale: tuple[int, int] = (1, 1)) -> npt.NDArray[np.uint8]:
    """``jpeg`` decoded to rows x columns x channels (1 or 3) at ``scale`` (num, denom), with the
    accurate inverse DCT and fancy upsampling (libjpeg-turbo's defaults, as libvips decodes).

    ``TurboError`` on any error or warning: libjpeg would carry on past damaged data and make
    grey or garbled pixels, which must never be shown or kept.
    """
    lib, handle = _instance("decompress")
    width, height, _, _ = _header(lib, handle, jpeg)
    num, denom = scale
    w, h = (width * num + denom - 1) // denom, (height * num + denom - 1) // denom
    channels = 1 if gray else 3
    out = np.empty((h, w, channels), dtype=np.uint8)
    pixel_format = _TJPF_GRAY if gray else _TJPF_RGB
    if lib.decompress(handle, jpeg, len(jpeg), out.ctypes.data, w, 0, h, pixel_format, _TJFLAG_STOPONWARNING) != 0:
        raise _fail(lib, handle, "decode")
    return out


@dataclass(frozen=True, slots=True)
class Planes:
    """A JPEG's samples as stored: Y, then Cb and Cr at their own resolution (none for gray)."""

    sampling: int  # SAMPLING_420, SAMPLING_444 or SAMPLING_GRAY
    planes: tuple[npt.NDArray[np.uint8], ...]  # each rows x columns, C-contiguous

    @property
    def nbytes(self) -> int:
        return sum(plane.nbytes for plane in self.planes)


def decode_planes(jpeg: bytes) -> Planes:
    """``jpeg`` decoded to its Y, Cb, Cr planes: no colour conversion, no chroma upsampling.

    Only YCbCr JPEGs sampled 4:2:0 or 4:4:4, and gray ones: any other sampling or colour space
    (an RGB or CMYK stream) is ``NotPlanar``; any error or warning is ``TurboError`` (``decode``).
    """
    lib, handle = _instance("decompress")
    w, h, kind, colorspace = _header(lib, handle, jpeg)
    if kind == _TJSAMP_GRAY and colorspace == _TJCS_GRAY:
        across, down = 1, 1
        shapes = [(h, w)]
    elif kind in PLANE_SAMPLINGS and colorspace == _TJCS_YCBCR:
        across, down = PLANE_SAMPLINGS[kind]
        chroma = (-(-h // down), -(-w // across))
        shapes = [(h, w), chroma, chroma]
    else:
        raise NotPlanar(f"sampling {kind}, colour space {colorspace}: not decoded to planes")
    # TurboJPEG writes the luma to a whole chroma sample (tjPlaneWidth/Height: an even size for
    # 4:2:0), so an odd-sized image's luma gets that padding, cut off after (stored tiles are
    # whole MCUs and never need it).
    padded = [(-(-h // down) * down, -(-w // across) * across), *shapes[1:]]
    planes = tuple(np.empty(shape, dtype=np.uint8) for shape in padded)
    pointers = (_P * 3)(*(plane.ctypes.data for plane in planes))
    strides = (ctypes.c_int * 3)(*(plane.shape[1] for plane in planes))
    if lib.decompress_planes(handle, jpeg, len(jpeg), pointers, w, strides, h, _TJFLAG_STOPONWARNING) != 0:
        raise _fail(lib, handle, "decode")
    if planes[0].shape != shapes[0]:
        planes = (np.ascontiguousarray(planes[0][:h, :w]), *planes[1:])
    for plane in planes:
        plane.flags.writeable = False  # it may be kept and shared (``tile_mosaic.DecodedTiles``)
    return Planes(kind, planes)


def encode_planes(planes: Planes, *, quality: int) -> bytes:
    """A JPEG of ``planes`` (Y first; each plane's samples contiguous within a row), sampled as
    they are: chroma planes must be exactly the size the sampling gives the luma's
    (``ValueError`` otherwise, as libjpeg would read past them)."""
    lib, handle = _instance("compress")
    luma, *chroma = planes.planes
    height, width = luma.shape
    across, down = PLANE_SAMPLINGS.get(planes.sampling, (1, 1))
    for plane in chroma:  # libjpeg reads this much of each plane, whatever it was given
        if plane.shape != (-(-height // down), -(-width // across)) or plane.strides[1] != 1:
            raise ValueError(f"a chroma plane of {plane.shape}, not sampled {planes.sampling} for {width}x{height}")
    if luma.strides[1] != 1 or width % across or height % down:
        # TurboJPEG reads the luma to a whole chroma sample (an even size for 4:2:0): the edge
        # repeated there, as libjpeg's own downsampler does for pixels.
        luma = np.pad(luma, ((0, -height % down), (0, -width % across)), mode="edge")
    mine = _mine()
    need = lib.buffer_size(width, height, planes.sampling)
    if len(mine.out) < need:
        mine.out = ctypes.create_string_buffer(need)
    buffer = _P(ctypes.addressof(mine.out))
    size = ctypes.c_ulong(len(mine.out))
    pointers = (_P * 3)(*(plane.ctypes.data for plane in (luma, *chroma)))
    strides = (ctypes.c_int * 3)(*(plane.strides[0] for plane in (luma, *chroma)))
    status = lib.compress_planes(
        handle, pointers, width, strides, height, planes.sampling, ctypes.byref(buffer), ctypes.byref(size),
        quality, _TJFLAG_ACCURATEDCT | _TJFLAG_NOREALLOC,
    )  # fmt: skip
    if status != 0:
        raise _fail(lib, handle, "encode")
    return ctypes.string_at(buffer, size.value)


def encode_as(pixels: npt.NDArray[np.uint8], encoding: Encoding) -> bytes:
    """``pixels`` (rows x columns x 1 or 3) encoded as the renderer encodes a response."""
    gray = pixels.shape[2] == 1
    return encode(pixels, quality=encoding.quality, subsampling=encoding.subsampling(gray), flags=_TJFLAG_ACCURATEDCT)


def encode(pixels: npt.NDArray[np.uint8], *, quality: int, subsampling: int, flags: int = 0) -> bytes:
    """``pixels`` (rows x columns x 1 or 3, rows contiguous) as a JPEG. ``TurboError`` if refused."""
    lib, handle = _instance("compress")
    mine = _mine()
    height, width, channels = pixels.shape
    if pixels.strides[1:] != (channels, 1):
        pixels = np.ascontiguousarray(pixels)
    # Into this thread's buffer, large enough for any JPEG of this size (tjBufSize): no
    # allocation per call (a new buffer of this size is fresh pages to fault in every time).
    need = lib.buffer_size(width, height, _TJSAMP_444 if channels == 3 else _TJSAMP_GRAY)
    if len(mine.out) < need:
        mine.out = ctypes.create_string_buffer(need)
    buffer = _P(ctypes.addressof(mine.out))
    size = ctypes.c_ulong(len(mine.out))
    pixel_format = _TJPF_GRAY if channels == 1 else _TJPF_RGB
    status = lib.compress(
        handle, pixels.ctypes.data, width, pixels.strides[0], height, pixel_format,
        ctypes.byref(buffer), ctypes.byref(size), subsampling, quality, flags | _TJFLAG_NOREALLOC,
    )  # fmt: skip
    if status != 0:
        raise _fail(lib, handle, "encode")
    return ctypes.string_at(buffer, size.value)


def lossless_crop(jpeg: bytes, width: int, height: int) -> bytes | None:
    """The top-left ``width`` x ``height`` of a JPEG, cut in the DCT domain (as ``jpegtran -crop``):
    no decode, no re-encode. None when libturbojpeg is not installed, or refuses the stream or
    warns about it (damaged data: the caller renders, and reports the damage).

    The crop starts at the origin, which is on a block boundary, so the stored coefficients are
    kept as they are; decoders reproduce the stored pixels (with 4:2:0 chroma, the new right and
    bottom edge pixels may differ slightly: chroma upsampling no longer sees the cut-off pixels).
    The call is PyTurboJPEG's ``crop(jpeg, 0, 0, width, height)``: the same bytes out (markers
    copied; an Adobe APP14 of an RGB tile written once, by libjpeg, as before).
    """
    lib = _library()
    if lib is None:
        return None
    handle = _handle(lib, "transform")
    if handle is None:
        return None
    transform = _Transform(_Region(0, 0, width, height), _TJXOP_NONE, _TJXOPT_CROP)
    out, size = _P(), ctypes.c_ulong(0)
    status = lib.transform(
        handle,
        jpeg,
        len(jpeg),
        1,
        ctypes.byref(out),
        ctypes.byref(size),
        ctypes.byref(transform),
        _TJFLAG_STOPONWARNING,
    )
    try:
        # A warning (damaged data) returns -1 too: the stream is not served.
        return ctypes.string_at(out, size.value) if status == 0 and out.value else None
    finally:
        if out.value:
            lib.free(out)
        if status != 0:
            _discard(lib, handle)
