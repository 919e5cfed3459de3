"""Source file -> ``SourceInfo``, from headers only; and the process-wide libvips policy.

Owns: sniffing the file type by its magic bytes, reading dimensions, pyramid levels (pages or
SubIFDs), tiling and colour from the headers, and refusing sources we will not decode
(unknown formats, oversized headers, huge untiled images); JPEG 2000 from its codestream
header (``jp2.py`` reads it). A plain TIFF file (``tiff_plain.plain_tiff``: the common
pyramids) is read without libvips, from the same directory parse the truncation check and the
stored-tile index use; libvips reads everything else, and is the reference the fast path must
equal (``probe(..., libvips=True)``). Also ``configure_libvips``: only
the TIFF, JPEG and PNG loaders may run, and libvips' operation cache is off so a replaced file
is never served from it. Objects of an object store (``ObjectPath``) are read the same way,
through the block cache: ``ObjectOpener`` gives libvips a custom source per image.
Must not know: requests, HTTP. One of the three modules allowed to import pyvips.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from iiifserver.errors import Forbidden, SourceChanged, SourceDamaged, UnsupportedSource
from iiifserver.image import block_cache, jp2, tiff_directory, tiff_plain
from iiifserver.image.object_store import ObjectPath
from iiifserver.image.source_info import Colour, Level, SourceFormat, SourceInfo, SourceVersion

log = logging.getLogger(__name__)

_ALLOWED_LOADERS = ("VipsForeignLoadTiff", "VipsForeignLoadJpeg", "VipsForeignLoadPng")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GRAY = {"b-w", "grey16"}
_CONVERTIBLE = {"srgb", "rgb16", "rgb", "b-w", "grey16", "cmyk", "scrgb", "lab", "labs", "xyz", "hsv"}


def configure_libvips(concurrency: int = 1) -> None:
    """Process-wide libvips policy; call once per process before any request."""
    pyvips.cache_set_max(0)  # our caches are keyed by source version; libvips' is not
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in _ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)
    # Each request already has its own thread; libvips' extra worker threads only add contention.
    pyvips.concurrency_set(concurrency)


class ObjectOpener:
    """libvips images of one object version, read through the block cache.

    Every image it opens reads through a ``pyvips.SourceCustom`` whose callbacks must outlive
    the image and every image made from it: keep the opener referenced for as long (libvips calls
    back into a collected source otherwise, and the process dies). A storage error inside a
    callback cannot cross libvips: it is kept in ``error`` (libvips sees the end of the data and
    fails), and ``reraise`` raises it instead of calling the object damaged.
    """

    def __init__(self, path: ObjectPath) -> None:
        self.path = path
        self.error: BaseException | None = None
        self._sources: list[Any] = []
        self._readers: list[block_cache.ObjectReader] = []

    def release(self) -> None:
        """Let go of the block each reader holds (1 MiB): an opener kept between renders holds none."""
        for reader in self._readers:
            reader.release()

    def source(self) -> Any:
        reader = block_cache.reader_of(self.path)
        self._readers.append(reader)
        position = 0

        def on_read(n: int) -> bytes:
            nonlocal position
            try:
                data = reader.read(position, n)
            except BaseException as exc:
                self.error = self.error or exc
                return b""
            position += len(data)
            return data

        def on_seek(offset: int, whence: int) -> int:
            nonlocal position
            position = (
                offset
                if whence == os.SEEK_SET
                else position + offset
                if whence == os.SEEK_CUR
                else reader.size + offset
            )
            return position

        source = pyvips.SourceCustom()
        source.on_read(on_read)
        source.on_seek(on_seek)
        self._sources.append(source)
        return source

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def _read_head(path: Path | ObjectPath, n: int) -> bytes:
    if isinstance(path, ObjectPath):
        return block_cache.reader_of(path).read(0, n)
    with path.open("rb") as fh:
        return fh.read(n)


def sniff(path: Path | ObjectPath) -> SourceFormat:
    try:
        head = _read_head(path, 12)
    except PermissionError:
        raise Forbidden("the image file cannot be read", parameter="identifier") from None
    if head[:4] in _TIFF_MAGIC:
        return SourceFormat.TIFF
    if head.startswith(_JPEG_MAGIC):
        return SourceFormat.JPEG
    if head.startswith(_PNG_MAGIC):
        return SourceFormat.PNG
    if jp2.is_jpeg2000(head):
        return SourceFormat.JP2
    # Its name promised an image (sources are found by extension): a damaged file, not a missing feature.
    raise SourceDamaged("the file is not a TIFF, JPEG, PNG or JPEG 2000 image")


@dataclass(frozen=True, slots=True)
class _Header:
    """What the probe needs of a raster source's first page, however it was read."""

    levels: tuple[Level, ...]
    tile_width: int  # 0: not a tiled TIFF
    tile_height: int
    interpretation: str  # libvips' name of its colour space
    bands: int
    has_alpha: bool
    has_icc: bool


def probe(
    path: Path | ObjectPath, *, plain_max_pixels: int, max_source_pixels: int, libvips: bool = False
) -> SourceInfo:
    """Read a source's structure from its headers. Raises ``SourceDamaged`` (not an image, header
    unreadable) or ``UnsupportedSource`` (an image this server will not serve).

    A plain TIFF file (``tiff_plain.plain_tiff``) is read by the own directory reader alone,
    about ten times cheaper than opening every page with libvips; anything else, or any doubt
    (``libvips=True`` forces it: the reference the fast path is tested against), through libvips.
    """
    fmt = sniff(path)
    if fmt is SourceFormat.JP2:
        # OpenJPEG (through glymur) reads a named file: an object is copied whole first.
        local = block_cache.local_copy_of(path) if isinstance(path, ObjectPath) else path
        return probe_jp2(local, plain_max_pixels=plain_max_pixels, max_source_pixels=max_source_pixels)
    header = None
    if fmt is SourceFormat.TIFF and isinstance(path, Path) and not libvips:
        header = _plain_tiff_header(path)
    if header is None:
        header = _libvips_header(path, fmt)
    full = header.levels[0]
    width, height = full.width, full.height
    if width * height > max_source_pixels:
        raise UnsupportedSource(
            f"the source is {width}x{height} pixels, more than this server accepts", parameter="identifier"
        )
    tiled = header.tile_width > 0
    if (not tiled or len(header.levels) == 1) and width * height > plain_max_pixels:
        raise UnsupportedSource(
            f"the source is a {width}x{height} image without a tiled pyramid; convert it with "
            "'iiifserver convert' to serve it",
            parameter="identifier",
        )
    if header.interpretation not in _CONVERTIBLE:
        raise UnsupportedSource(f"unsupported colour space {header.interpretation}", parameter="identifier")
    return SourceInfo(
        width=width,
        height=height,
        levels=header.levels,
        tile_width=header.tile_width,
        tile_height=header.tile_height,
        colour=Colour.GRAY if header.interpretation in _GRAY else Colour.RGB,
        bands=header.bands,
        has_alpha=header.has_alpha,
        has_icc=header.has_icc,
        format=fmt,
    )


def _plain_tiff_header(path: Path) -> _Header | None:
    """The header of a plain TIFF from its directories alone, as libvips would report it; None:
    not plain, unreadable, or its data runs past the end of the file (libvips reads it and the
    truncation check names the damage, as for any other file)."""
    try:
        plain = tiff_plain.plain_tiff(path)
        if plain is None:
            return None
        first = plain.pages[0]
        if first.subifds:  # libvips' n-subifds: the pyramid is page 0's SubIFDs, other pages unread
            levels = [Level(first.width, first.height)]
            levels += [Level(sub.width, sub.height, page=0, subifd=i) for i, sub in enumerate(plain.subifds)]
        else:
            levels = [Level(page.width, page.height, page=i) for i, page in enumerate(plain.pages)]
        kept = _only_reductions(levels)
        if tiff_directory.truncation(path, kept) is not None:
            return None
    except OSError:
        return None  # libvips tries, and reports it as it always has
    grey = first.photometric == 1
    return _Header(
        levels=kept,
        tile_width=first.tile_width,
        tile_height=first.tile_height,
        # libvips' guess for these layouts (rtiff): 8 or 16-bit grey, sRGB or 16-bit RGB
        interpretation=("b-w" if grey else "srgb") if first.bits == 8 else ("grey16" if grey else "rgb16"),
        bands=first.samples,
        has_alpha=first.samples == (2 if grey else 4),
        has_icc=first.has_icc,
    )


def _libvips_header(path: Path | ObjectPath, fmt: SourceFormat) -> _Header:
    """The header as libvips reads it (every page of a TIFF opened), with the truncation check."""
    target: Path | ObjectOpener = ObjectOpener(path) if isinstance(path, ObjectPath) else path
    try:
        first = open_level(target, fmt, Level(0, 0))
        levels = _levels(target, first) if fmt is SourceFormat.TIFF else (Level(first.width, first.height),)
        fields = set(first.get_fields())
    except pyvips.Error as exc:
        if isinstance(target, ObjectOpener):
            target.reraise()  # the store failed or the object changed: not damage
        # The source registry logs the damage once per source version, naming the identifier.
        log.debug("cannot read header of %s: %s", path, str(exc).strip().splitlines()[:1])
        raise SourceDamaged("the image header is damaged or unreadable (a truncated file?)") from None
    if fmt is SourceFormat.TIFF:
        if isinstance(path, ObjectPath):
            reader = block_cache.reader_of(path)
            truncated = tiff_directory.truncation_from(lambda n, at: reader.read(at, n), path.size, levels)
        else:
            truncated = tiff_directory.truncation(path, levels)
        if truncated is not None:
            raise SourceDamaged(truncated)
    tiled = "tile-width" in fields and fmt is SourceFormat.TIFF
    return _Header(
        levels=levels,
        tile_width=int(first.get("tile-width")) if tiled else 0,
        tile_height=int(first.get("tile-height")) if tiled else 0,
        interpretation=str(first.interpretation),
        bands=first.bands,
        has_alpha=bool(first.hasalpha()),
        has_icc="icc-profile-data" in fields,
    )


# A JPEG 2000 source without its own tiling is advertised in tiles of this size (or of its
# precincts, when they lie between the two bounds): OpenJPEG decodes only the code-blocks a
# region touches, so a viewer's aligned tiles cost about what the tiles of a pyramid do.
JP2_DEFAULT_TILE = 256
JP2_MAX_TILE = 1024


def probe_jp2(path: Path, *, plain_max_pixels: int, max_source_pixels: int) -> SourceInfo:
    """``SourceInfo`` of a JPEG 2000 file from its boxes and main header (``jp2.read_header``).

    Its resolution levels are the pyramid (``Level.page`` = the reduction); info.json's tiles are
    the codestream's tiles when it is tiled (and they are at most ``JP2_MAX_TILE``), else its
    full-resolution precincts when they are 256 to 1024 pixels, else 256 x 256.
    """
    if not jp2.available():
        raise UnsupportedSource(
            "JPEG 2000 sources need OpenJPEG (libopenjp2) and glymur; see the install docs", parameter="identifier"
        )
    try:
        header = jp2.read_header(path)
    except PermissionError:
        raise Forbidden("the image file cannot be read", parameter="identifier") from None
    except jp2.Jp2Damaged as exc:
        log.debug("damaged JPEG 2000 %s: %s", path, exc)
        raise SourceDamaged(str(exc)) from None
    except jp2.Jp2Unsupported as exc:
        raise UnsupportedSource(str(exc), parameter="identifier") from None
    width, height = header.width, header.height
    if width * height > max_source_pixels:
        raise UnsupportedSource(
            f"the source is {width}x{height} pixels, more than this server accepts", parameter="identifier"
        )
    if header.levels == 0 and width * height > plain_max_pixels:
        raise UnsupportedSource(
            f"the source is a {width}x{height} JPEG 2000 without resolution levels; convert it with "
            "'iiifserver convert' to serve it",
            parameter="identifier",
        )
    levels = tuple(Level(*header.level_size(r), page=r) for r in range(header.levels + 1))
    if header.is_tiled and max(header.tile_width, header.tile_height) <= JP2_MAX_TILE:
        tile_w, tile_h = header.tile_width, header.tile_height
    elif header.has_precincts and min(header.precinct_width, header.precinct_height) >= JP2_DEFAULT_TILE:
        tile_w = tile_h = min(header.precinct_width, header.precinct_height, JP2_MAX_TILE)
    else:
        tile_w = tile_h = JP2_DEFAULT_TILE
    colour_bands = header.components - (1 if header.has_alpha else 0)
    return SourceInfo(
        width=width,
        height=height,
        levels=levels,
        tile_width=tile_w,
        tile_height=tile_h,
        colour=Colour.GRAY if colour_bands == 1 else Colour.RGB,
        bands=header.components,
        has_alpha=header.has_alpha,
        has_icc=bool(header.icc_profile),
        format=SourceFormat.JP2,
        compression="jpeg2000-lossless" if header.reversible else "jpeg2000-lossy",
    )


# Opened levels kept per render thread: reopening a TIFF (open, IFD parse) costs about a third of
# a small tile's render; one image shared by threads would serialise them on libtiff's lock. But
# an opened level keeps what libvips decoded for it while it lives (a tiled TIFF: a cache of two
# rows of tiles; a strip TIFF, JPEG or PNG opened for random access: up to every pixel), so the
# cache is bounded by that footprint in bytes, and by a count (each open level holds a file).
OPENED_PER_THREAD = 64
OPENED_BYTES_PER_THREAD = 32 * 1024 * 1024
_BAND_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4, "double": 8}
_BAND_BYTES |= {"complex": 8, "dpcomplex": 16}
_opened = threading.local()
_budget = {"count": OPENED_PER_THREAD, "bytes": OPENED_BYTES_PER_THREAD}


def set_opened_budget(*, count: int | None = None, nbytes: int | None = None) -> None:
    """Bound the opened levels each render thread keeps (threads started later, or emptied, see it)."""
    if count is not None:
        _budget["count"] = max(0, count)
    if nbytes is not None:
        _budget["bytes"] = max(0, nbytes)
    _opened.__dict__.clear()  # this thread's cache is rebuilt with the new bounds


def decoded_footprint(image: Any) -> int:
    """Most decoded bytes libvips keeps for ``image`` (opened with ``access="random"``) between renders.

    A tiled TIFF level has a tile cache of ``2 * (1 + width // tile_width)`` tiles (libvips'
    tiffload); anything else may end up decoded whole.
    """
    pel = int(image.bands) * _BAND_BYTES.get(str(image.format), 8)
    fields = set(image.get_fields())
    if "tile-width" in fields and "tile-height" in fields:
        tw, th = int(image.get("tile-width")), int(image.get("tile-height"))
        across, down = -(-image.width // tw), -(-image.height // th)
        tiles = min(across * down, 2 * (1 + image.width // tw))
        return int(tiles * tw * th * pel)
    return int(image.width * image.height * pel)


class OpenedLevels:
    """An LRU of opened levels bounded by count and by the sum of their ``decoded_footprint``.

    A level heavier than the whole byte budget is not kept: it is opened for each render and its
    decoded pixels are freed with the render's pipeline.
    """

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, str, int, int], tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, str, int, int]) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def drop(self, key: tuple[str, str, int, int]) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]

    def put(self, key: tuple[str, str, int, int], image: Any, weight: int) -> bool:
        """Keep ``image``, evicting the least recently used; False when it is too heavy to keep."""
        old = self._items.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        if weight > self.max_bytes or self.max_count < 1:
            return False
        while self._items and (len(self._items) >= self.max_count or self.nbytes + weight > self.max_bytes):
            _, (_, w) = self._items.popitem(last=False)
            self.nbytes -= w
        self._items[key] = (image, weight)
        self.nbytes += weight
        return True


def open_level_cached(path: Path, fmt: SourceFormat, level: Level, version: SourceVersion) -> Any:
    """``open_level`` remembered per thread, keyed by source version (a replaced file is reopened).

    The file is checked after opening: if the path no longer holds ``version`` (replaced since
    it was stat-ed), ``SourceChanged`` is raised, so pixels are never filed under the wrong version.
    What is kept is bounded per thread (``OpenedLevels``): see ``set_opened_budget``.
    """
    cache: OpenedLevels | None = getattr(_opened, "cache", None)
    if cache is None:
        cache = _opened.cache = OpenedLevels(_budget["count"], _budget["bytes"])
    key = (str(path), version.token, level.page, level.subifd)
    image = cache.get(key)
    if image is None:
        image = open_level(path, fmt, level)
        if SourceVersion.of(os.stat(path)) != version:
            raise SourceChanged(str(path))
        cache.put(key, image, decoded_footprint(image))
    return image


def _thread_cache() -> OpenedLevels:
    cache: OpenedLevels | None = getattr(_opened, "cache", None)
    if cache is None:
        cache = _opened.cache = OpenedLevels(_budget["count"], _budget["bytes"])
    return cache


def open_object_level_cached(path: ObjectPath, fmt: SourceFormat, level: Level) -> tuple[Any, ObjectOpener]:
    """``open_level`` of an object version, remembered per thread with the opener its image reads
    through (kept together: the image must not outlive its custom source).

    No check afterwards: an ``ObjectPath`` is one version, and every block is read with
    ``If-Match`` its ETag. The opener's ``error`` is cleared for the caller, which calls
    ``forget_object_level`` when a render through it fails (a source that failed once may keep
    failing in libvips). A storage error while opening is raised as itself, not as damage.
    """
    cache = _thread_cache()
    key = (str(path), f"{path.etag}-{path.size:x}", level.page, level.subifd)
    held = cache.get(key)
    if held is None:
        opener = ObjectOpener(path)
        try:
            image = open_level(opener, fmt, level)
        except pyvips.Error:
            opener.reraise()
            raise
        held = (image, opener)
        cache.put(key, held, decoded_footprint(image))
    image, opener = held
    opener.error = None
    return image, opener


def forget_object_level(path: ObjectPath, level: Level) -> None:
    """Drop this thread's opened ``level`` of ``path`` (after a failed render through it)."""
    _thread_cache().drop((str(path), f"{path.etag}-{path.size:x}", level.page, level.subifd))


def opened_stats() -> tuple[int, int]:
    """(levels, footprint bytes) kept by the calling thread."""
    cache: OpenedLevels | None = getattr(_opened, "cache", None)
    return (len(cache), cache.nbytes) if cache is not None else (0, 0)


def open_level(path: Path | ObjectOpener, fmt: SourceFormat, level: Level, *, access: str = "random") -> Any:
    """A lazily decoded pyvips image of one level; pixels are read only when used.

    ``path`` may be an ``ObjectOpener``: then the image reads an object through the block cache,
    and the opener must be kept referenced while the image (or one made from it) is in use.
    """
    try:
        if fmt is SourceFormat.TIFF:
            # libvips reports an undecodable TIFF tile or strip as a warning and, below
            # fail_on="warning", renders it black: that output would be served and cached.
            options: dict[str, Any] = {"page": level.page, "access": access, "fail_on": "warning"}
            if level.subifd >= 0:
                options["subifd"] = level.subifd
            image = _tiffload(path, **options)
            if "tile-width" in image.get_fields():
                return image
            # A strip TIFF: libtiff's own cap (50 MB a read) refuses a large strip, and a 40 MP
            # scan in one strip is a valid file, not a damaged one. Its size is bounded already:
            # the probe held the image to plain_max_pixels and checked every strip lies inside
            # the file, so the cap can go.
            return _tiffload(path, unlimited=True, **options)
        if isinstance(path, ObjectOpener):
            load = pyvips.Image.jpegload_source if fmt is SourceFormat.JPEG else pyvips.Image.pngload_source
            return load(path.source(), access=access, fail_on="truncated")
        if fmt is SourceFormat.JPEG:
            return pyvips.Image.jpegload(str(path), access=access, fail_on="truncated")
        return pyvips.Image.pngload(str(path), access=access, fail_on="truncated")
    except pyvips.Error as exc:
        if "Permission denied" in str(exc):
            raise Forbidden("the image file cannot be read", parameter="identifier") from None
        raise


def _tiffload(path: Path | ObjectOpener, **options: Any) -> Any:
    if isinstance(path, ObjectOpener):
        return pyvips.Image.tiffload_source(path.source(), **options)
    return pyvips.Image.tiffload(str(path), **options)


def _levels(path: Path | ObjectOpener, first: Any) -> tuple[Level, ...]:
    """Pyramid levels: SubIFDs of page 0, else the following pages that halve the previous one."""
    fields = set(first.get_fields())
    levels = [Level(first.width, first.height)]
    n_subifds = int(first.get("n-subifds")) if "n-subifds" in fields else 0
    if n_subifds > 0:
        for i in range(n_subifds):
            sub = _tiffload(path, subifd=i)
            levels.append(Level(sub.width, sub.height, page=0, subifd=i))
        return _only_reductions(levels)
    n_pages = int(first.get("n-pages")) if "n-pages" in fields else 1
    for page in range(1, n_pages):
        img = _tiffload(path, page=page)
        levels.append(Level(img.width, img.height, page=page))
    return _only_reductions(levels)


def _only_reductions(levels: list[Level]) -> tuple[Level, ...]:
    """Keep the leading run of levels that are smaller versions of the full image.

    A multi-page TIFF that is a document (pages of other sizes or shapes) is not a pyramid:
    only its first page is served.
    """
    full = levels[0]
    kept = [full]
    for level in levels[1:]:
        prev = kept[-1]
        # floor/ceil rounding of each side moves the cross product by up to W + H
        same_shape = abs(level.width * full.height - level.height * full.width) <= 2 * (full.width + full.height)
        if not (level.width < prev.width and level.height <= prev.height and same_shape):
            break
        kept.append(level)
    return tuple(kept)
