"""Source file -> ``SourceInfo``, from headers only; and the process-wide libvips policy.

Owns: sniffing the file type by its magic bytes, reading dimensions, pyramid levels (pages or
SubIFDs), tiling and colour from the headers, and refusing sources we will not decode
(unknown formats, oversized headers, huge untiled images). Also ``configure_libvips``: only
the TIFF, JPEG and PNG loaders may run, and libvips' operation cache is off so a replaced file
is never served from it.
Must not know: requests, HTTP. One of the three modules allowed to import pyvips.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import cachetools
import pyvips

from iiifserver.errors import Forbidden, SourceChanged, UnsupportedSource
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


def sniff(path: Path) -> SourceFormat:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except PermissionError:
        raise Forbidden("the image file cannot be read", parameter="identifier") from None
    if head[:4] in _TIFF_MAGIC:
        return SourceFormat.TIFF
    if head.startswith(_JPEG_MAGIC):
        return SourceFormat.JPEG
    if head.startswith(_PNG_MAGIC):
        return SourceFormat.PNG
    raise UnsupportedSource("the source is not a TIFF, JPEG or PNG image", parameter="identifier")


def probe(path: Path, *, plain_max_pixels: int, max_source_pixels: int) -> SourceInfo:
    """Read a source's structure from its headers. Raises ``UnsupportedSource``."""
    fmt = sniff(path)
    try:
        first = open_level(path, fmt, Level(0, 0))
        levels = _levels(path, first) if fmt is SourceFormat.TIFF else (Level(first.width, first.height),)
        fields = set(first.get_fields())
    except pyvips.Error as exc:
        log.warning("cannot read header of %s: %s", path, str(exc).strip().splitlines()[:1])
        raise UnsupportedSource("the source image is damaged or unreadable", parameter="identifier") from None
    width, height = first.width, first.height
    if width * height > max_source_pixels:
        raise UnsupportedSource(
            f"the source is {width}x{height} pixels, more than this server accepts", parameter="identifier"
        )
    tiled = "tile-width" in fields and fmt is SourceFormat.TIFF
    if (not tiled or len(levels) == 1) and width * height > plain_max_pixels:
        raise UnsupportedSource(
            f"the source is a {width}x{height} image without a tiled pyramid; convert it with "
            "'iiifserver convert' to serve it",
            parameter="identifier",
        )
    interpretation = str(first.interpretation)
    if interpretation not in _CONVERTIBLE:
        raise UnsupportedSource(f"unsupported colour space {interpretation}", parameter="identifier")
    return SourceInfo(
        width=width,
        height=height,
        levels=levels,
        tile_width=int(first.get("tile-width")) if tiled else 0,
        tile_height=int(first.get("tile-height")) if tiled else 0,
        colour=Colour.GRAY if interpretation in _GRAY else Colour.RGB,
        bands=first.bands,
        has_alpha=bool(first.hasalpha()),
        has_icc="icc-profile-data" in fields,
        format=fmt,
    )


# Opened levels per render thread: reopening a TIFF (open, IFD parse) costs about a third of a
# small tile's render; one image shared by threads would serialise them on libtiff's lock.
OPENED_PER_THREAD = 64
_opened = threading.local()


def open_level_cached(path: Path, fmt: SourceFormat, level: Level, version: SourceVersion) -> Any:
    """``open_level`` remembered per thread, keyed by source version (a replaced file is reopened).

    The file is checked after opening: if the path no longer holds ``version`` (replaced since
    it was stat-ed), ``SourceChanged`` is raised, so pixels are never filed under the wrong version.
    """
    cache: cachetools.LRUCache[tuple[str, str, int, int], Any] | None = getattr(_opened, "cache", None)
    if cache is None:
        cache = _opened.cache = cachetools.LRUCache(OPENED_PER_THREAD)
    key = (str(path), version.token, level.page, level.subifd)
    image = cache.get(key)
    if image is None:
        image = open_level(path, fmt, level)
        st = os.stat(path)
        if SourceVersion(st.st_ino, st.st_size, st.st_mtime_ns) != version:
            raise SourceChanged(str(path))
        cache[key] = image
    return image


def open_level(path: Path, fmt: SourceFormat, level: Level, *, access: str = "random") -> Any:
    """A lazily decoded pyvips image of one level; pixels are read only when used."""
    try:
        if fmt is SourceFormat.TIFF:
            # libvips reports an undecodable TIFF tile or strip as a warning and, below
            # fail_on="warning", renders it black: that output would be served and cached.
            options: dict[str, Any] = {"page": level.page, "access": access, "fail_on": "warning"}
            if level.subifd >= 0:
                options["subifd"] = level.subifd
            return pyvips.Image.tiffload(str(path), **options)
        if fmt is SourceFormat.JPEG:
            return pyvips.Image.jpegload(str(path), access=access, fail_on="truncated")
        return pyvips.Image.pngload(str(path), access=access, fail_on="truncated")
    except pyvips.Error as exc:
        if "Permission denied" in str(exc):
            raise Forbidden("the image file cannot be read", parameter="identifier") from None
        raise


def _levels(path: Path, first: Any) -> tuple[Level, ...]:
    """Pyramid levels: SubIFDs of page 0, else the following pages that halve the previous one."""
    fields = set(first.get_fields())
    levels = [Level(first.width, first.height)]
    n_subifds = int(first.get("n-subifds")) if "n-subifds" in fields else 0
    if n_subifds > 0:
        for i in range(n_subifds):
            sub = pyvips.Image.tiffload(str(path), subifd=i)
            levels.append(Level(sub.width, sub.height, page=0, subifd=i))
        return _only_reductions(levels)
    n_pages = int(first.get("n-pages")) if "n-pages" in fields else 1
    for page in range(1, n_pages):
        img = pyvips.Image.tiffload(str(path), page=page)
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
