"""One master into one tiled pyramidal TIFF: the ingest pipeline.

Owns: recognising a master by its magic bytes (TIFF, JPEG, PNG, JPEG 2000) and reading its
header; the pyvips pipeline (EXIF orientation applied; colour from the embedded ICC profile,
or the interpretation, to 8-bit sRGB with the sRGB profile embedded; greyscale without a
profile stays greyscale; alpha flattened on the background); ``tiffsave`` with 256/512 tiles,
a pyramid and JPEG at the chosen quality (libvips stores tiles below Q90 as YCbCr 4:2:0, at Q90
and above as RGB); and writing atomically: a hidden temporary file in the output folder, moved
into place with ``os.replace``, then the stamp. A failure or an interruption removes the
temporary file; the output name never holds half a file.
JPEG 2000 masters are decoded by the server's own decoder (``image/jp2.py``, OpenJPEG), in strips.
Must not know: batches, progress, settings, HTTP. Imports pyvips (see the package docstring).
"""

from __future__ import annotations

import enum
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from iiifserver.image import jp2
from iiifserver.image.render import vips_image
from iiifserver.ingest import metadata
from iiifserver.ingest.plan import ConvertOptions, Header, Job, use_bigtiff
from iiifserver.ingest.stamp import file_state, remove_stamp, write_stamp
from iiifserver.processes import is_alive

TEMP_SUFFIX = ".convert-part"
_SAMPLE_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4, "double": 8}
_GREY = {"b-w", "grey16"}
# Relative colorimetric with black point compensation: what print and photo tools default to, so
# CMYK shadows are not crushed. The embedded profile is the input when there is one.
_ICC: dict[str, Any] = {"embedded": True, "intent": "relative", "black_point_compensation": True, "depth": 8}
JP2_INSTALL_HINT = (
    "JPEG 2000 needs OpenJPEG (libopenjp2 {version}) through glymur: install them (Debian: apt-get install "
    "libopenjp2-7; glymur is a dependency of iiifserver), or convert the master to TIFF first "
    "(e.g. opj_decompress from libopenjp2-tools)"
)
# JPEG 2000 masters are decoded this many rows at a time (OpenJPEG holds 4 bytes a sample while
# it decodes): about 64 MP a strip, so the decoder's memory stays bounded for any master.
JP2_STRIP_PIXELS = 64 * 1024 * 1024


class MasterFormat(enum.Enum):
    TIFF = "tiff"
    JPEG = "jpeg"
    PNG = "png"
    JP2 = "jp2"


_MAGIC = (
    (b"II*\x00", MasterFormat.TIFF),
    (b"MM\x00*", MasterFormat.TIFF),
    (b"II+\x00", MasterFormat.TIFF),
    (b"MM\x00+", MasterFormat.TIFF),
    (b"\xff\xd8\xff", MasterFormat.JPEG),
    (b"\x89PNG\r\n\x1a\n", MasterFormat.PNG),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", MasterFormat.JP2),  # JP2 file
    (b"\xff\x4f\xff\x51", MasterFormat.JP2),  # raw J2K codestream
)


class ConvertError(Exception):
    """A master that cannot be converted; the message is one line for the summary."""


class Interrupted(ConvertError):
    """The run was stopped while this master was being converted; nothing was left behind."""


@dataclass(frozen=True, slots=True)
class Converted:
    width: int
    height: int
    seconds: float
    output_bytes: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def libvips_version() -> str:
    return ".".join(str(pyvips.version(i)) for i in range(3))


def jp2k_available() -> bool:
    """JPEG 2000 masters are read by the server's own decoder (``image/jp2.py``), not libvips."""
    return jp2.available()


def sniff(path: Path) -> MasterFormat:
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise ConvertError(f"cannot read the master: {exc.strerror}") from None
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            if fmt is MasterFormat.JP2 and not jp2k_available():
                raise ConvertError(JP2_INSTALL_HINT.format(version=_openjpeg_version()))
            return fmt
    raise ConvertError("not a TIFF, JPEG, PNG or JPEG 2000 file")


def open_master(path: Path, *, access: str = "sequential") -> Any:
    """The master's first image, lazily, with the loader its magic bytes name (no other runs).

    Truncated or damaged data is an error, never black pixels.
    """
    fmt = sniff(path)
    if fmt is MasterFormat.JP2:
        return _open_jp2(path)
    loader = {
        MasterFormat.TIFF: pyvips.Image.tiffload,
        MasterFormat.JPEG: pyvips.Image.jpegload,
        MasterFormat.PNG: pyvips.Image.pngload,
    }[fmt]
    try:
        return loader(str(path), access=access, fail_on="truncated")
    except pyvips.Error as exc:
        raise ConvertError(f"cannot read the master: {_reason(exc)}") from None


def _open_jp2(path: Path) -> Any:
    """A JPEG 2000 master decoded whole, in strips of about ``JP2_STRIP_PIXELS`` (each decodes only
    its rows' code-blocks), joined as one pyvips image with the file's ICC profile."""
    try:
        header = jp2.read_header(path)
        rows = max(256, JP2_STRIP_PIXELS // header.width // 256 * 256)
        strips: list[Any] = []
        icc = b""
        for top in range(0, header.height, rows):
            pixels, icc = jp2.decode(path, 0, (0, top, header.width, min(header.height, top + rows)), threads=2)
            strips.append(vips_image(pixels))
    except jp2.Jp2Error as exc:
        raise ConvertError(f"cannot read the master: {exc}") from None
    except OSError as exc:
        raise ConvertError(f"cannot read the master: {exc.strerror}") from None
    image = strips[0]
    for strip in strips[1:]:  # not arrayjoin: it pads every cell to the largest (the last strip is shorter)
        image = image.join(strip, "vertical")
    if icc:
        image = image.copy()
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return image


def _openjpeg_version() -> str:
    try:
        return jp2.decoder_version() or "not found"
    except (ImportError, OSError):
        return "not found"


def inspect(path: Path) -> Header:
    if sniff(path) is MasterFormat.JP2:
        try:
            header = jp2.read_header(path)
        except jp2.Jp2Error as exc:
            raise ConvertError(f"cannot read the master: {exc}") from None
        wide = header.bit_depth > 8
        return Header(header.width, header.height, header.components, 2 if wide else 1, out_of_order=False)
    image = open_master(path)
    orientation = int(image.get("orientation")) if image.get_typeof("orientation") else 1
    return Header(
        width=image.width,
        height=image.height,
        bands=image.bands,
        sample_bytes=_SAMPLE_BYTES.get(str(image.format), 8),
        out_of_order=orientation not in (0, 1),
    )


@functools.cache
def srgb_profile() -> bytes:
    """libvips' built-in sRGB profile, as icc_transform attaches it."""
    pixel = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb")
    return bytes(pixel.icc_transform("srgb", input_profile="srgb").get("icc-profile-data"))


def to_srgb8(master: Any, background: tuple[int, int, int]) -> Any:
    """Oriented master -> 8-bit sRGB (3 bands), or 8-bit grey for greyscale without a profile."""
    image = master
    alpha = None
    if image.hasalpha():
        # Alpha is split off first: libvips' ICC transforms do not rescale a 16-bit alpha.
        alpha = image[image.bands - 1] / _max_alpha(image)
        image = image.extract_band(0, n=image.bands - 1)
    interpretation = str(image.interpretation)
    has_icc = image.get_typeof("icc-profile-data") != 0
    if has_icc:
        try:
            image = image.icc_transform("srgb", **_ICC)
        except pyvips.Error as exc:
            raise ConvertError(f"the embedded ICC profile cannot be used: {_reason(exc)}") from None
    elif interpretation == "cmyk":
        image = image.icc_transform("srgb", input_profile="cmyk", **_ICC)
    elif interpretation in _GREY and alpha is None:
        image = image.colourspace("b-w")
    else:
        image = image.colourspace("srgb")
    if alpha is not None:
        if image.bands == 1:
            image = image.colourspace("srgb")
        image = image * alpha + [float(v) for v in background] * (1 - alpha) + 0.5
    return image.cast("uchar")


def convert(job: Job, options: ConvertOptions, should_stop: Callable[[], bool] = lambda: False) -> Converted:
    """Make ``job.output`` from ``job.source``. Raises ``ConvertError`` with a one-line reason.

    ``should_stop`` is polled while the pyramid is written; when it turns true, libvips is
    stopped, the temporary file removed and ``Interrupted`` raised.
    """
    if should_stop():
        raise Interrupted("interrupted before it started")
    started = time.perf_counter()
    source_state = file_state(job.source)
    if source_state is None:
        raise ConvertError("the master has disappeared")
    job.output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(job.output)
    header = inspect(job.source)
    master = open_master(job.source, access="random" if header.out_of_order else "sequential")
    try:
        oriented = master.autorot() if header.out_of_order else master
        image = metadata.carry_over(master, to_srgb8(oriented, options.background), srgb_profile())
    except pyvips.Error as exc:
        raise ConvertError(f"cannot convert: {_reason(exc)}") from None
    save = {
        "tile": True,
        "tile_width": options.tile_size,
        "tile_height": options.tile_size,
        "pyramid": True,
        "compression": "jpeg",
        "Q": options.quality,
        "bigtiff": use_bigtiff(options.bigtiff, image.width, image.height),
    }
    tmp = job.output.with_name(f".{job.output.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        _save_watched(image, tmp, save, should_stop)
        if should_stop():
            raise Interrupted("interrupted")
        remove_stamp(job.output)  # the old stamp must never vouch for the new file
        os.replace(tmp, job.output)
        write_stamp(job.output, job.source, source_state, options.fingerprint())
    except pyvips.Error as exc:
        if should_stop():
            raise Interrupted("interrupted") from None
        raise ConvertError(f"cannot convert: {_reason(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Converted(image.width, image.height, time.perf_counter() - started, job.output.stat().st_size)


def remove_stale_temporaries(output: Path) -> None:
    """Temporary files of this output left by a converter that was killed (its pid is gone)."""
    prefix = f".{output.name}."
    try:
        names = os.listdir(output.parent)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        pid = name[len(prefix) : -len(TEMP_SUFFIX)]
        if pid.isdigit() and not is_alive(int(pid)):
            (output.parent / name).unlink(missing_ok=True)


def _save_watched(image: Any, path: Path, options: dict[str, Any], should_stop: Callable[[], bool]) -> None:
    """tiffsave, with a watcher thread that stops libvips (``set_kill``) once ``should_stop``
    says so; the save itself stays in this thread, so it has ended when this returns."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.05):
            if should_stop():
                image.set_kill(True)
                return

    watcher = threading.Thread(target=watch, name="convert-watch", daemon=True)
    watcher.start()
    try:
        image.tiffsave(str(path), **options)
    finally:
        finished.set()
        watcher.join()


def _max_alpha(image: Any) -> float:
    interpretation = str(image.interpretation)
    if interpretation in {"rgb16", "grey16"} or str(image.format) == "ushort":
        return 65535.0
    if interpretation == "scrgb":
        return 1.0
    return 255.0


def _reason(exc: pyvips.Error) -> str:
    """libvips' last detail line: 'VipsJpeg: premature end of JPEG image', no paths of ours."""
    lines = [line.strip() for line in str(getattr(exc, "detail", "") or exc).splitlines() if line.strip()]
    return lines[-1] if lines else "libvips error"
