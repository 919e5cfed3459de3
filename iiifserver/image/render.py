"""Plan + source file -> encoded image bytes. The only pyvips pipeline code.

Owns: crop at the planned pyramid level, one resize to the exact output size, colour
management to sRGB, mirror and rotation, quality (colour / gray / bitonal) and encoding.
Runs in a worker thread (``concurrency.Lane``), never on the event loop. Never validates:
every check happened in the planner; a failure here is a server or source fault.
Must not know: HTTP, URLs, the request grammar beyond the ``Plan``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from iiifserver.errors import SourceChanged, SourceDamaged
from iiifserver.image import (
    block_cache,
    jp2,
    plane_resize,
    resize_pipelines,
    tile_blocks,
    tile_codec,
    tile_mosaic,
    tile_planes,
)
from iiifserver.image.object_store import ObjectPath
from iiifserver.image.planner import Plan, rotated_size
from iiifserver.image.probe import (
    ObjectOpener,
    forget_object_level,
    open_level,
    open_level_cached,
    open_object_level_cached,
)
from iiifserver.image.request import Format, Quality
from iiifserver.image.source_info import Colour, SourceFormat, SourceVersion
from iiifserver.image.tile_grid import TileGrid

_WHITE = 255.0
log = logging.getLogger(__name__)
# Below this reduction on both axes libvips' ``resize`` is one lanczos3 ``reduce`` (from 4 it
# first shrinks by an integer factor): calling ``reduce`` alone gives the same pixels
# (``test_render.py`` holds it to identical output) without building ``resize`` around it, about
# 0.1 ms of a thumbnail's 1.5.
REDUCE_ALONE_BELOW = 4.0
# Outputs up to this many pixels (a thumbnail, a tile) are computed in the render thread
# (``computed``); larger ones through libvips' pool, which computes them in small pieces.
FETCH_MAX_PIXELS = 64 * 1024


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    jpeg_quality: int = 80
    webp_quality: int = 80
    jpeg_chroma_subsampling: bool = True  # 4:2:0 at every quality; False: libvips' choice (4:4:4 from Q90)


def render(
    path: Path | ObjectPath,
    fmt: SourceFormat,
    plan: Plan,
    options: EncodeOptions,
    version: SourceVersion | None = None,
    grid: TileGrid | None = None,
) -> bytes:
    """Encoded bytes for ``plan``; a source that fails to decode raises ``SourceDamaged``.

    With ``grid``, the stored-tile grid of ``plan.level`` (the one the source registry indexed
    for ``version``: one grid per source version, not read again here), a crop of a JPEG-tiled
    TIFF level is decoded from the stored tiles it covers with libjpeg-turbo (``tile_mosaic``);
    without it libvips decodes it, as every other source is (the benchmark and the pixel tests
    compare the two).

    An object (``ObjectPath``) is read through the block cache; a JPEG 2000 object as a whole
    local copy (OpenJPEG reads named files). Its bytes are the version's by construction (every
    block is read with ``If-Match`` its ETag), so no check after the render is needed.
    """
    openers: list[ObjectOpener] = []  # referenced here until the pipeline has run
    source: Path | ObjectPath = path
    if isinstance(path, ObjectPath) and fmt is SourceFormat.JP2:
        source, version = block_cache.local_copy_of(path), None
    try:
        body = _render(source, fmt, plan, options, version, openers, grid)
        if any(opener.error is not None for opener in openers):
            # A read failed and libvips carried on: whatever it made is not served.
            raise pyvips.Error("a read of the object failed")
        return body
    except jp2.Jp2Error as exc:
        log.warning("render failed for %s: %s", path, exc)
        raise SourceDamaged(str(exc), parameter="identifier") from None
    except pyvips.Error as exc:
        if openers and isinstance(path, ObjectPath):
            forget_object_level(path, plan.level)
            openers[0].reraise()  # the store failed or the object changed under a read: not damage
        # The path and libvips' words go to the log only; the client learns the image is damaged.
        log.warning("render failed for %s: %s", path, str(exc).strip().splitlines()[:2])
        raise SourceDamaged("the source image is damaged or unreadable", parameter="identifier") from None
    finally:
        for opener in openers:
            opener.release()  # kept in this thread's opened levels: without its block in memory


def _render(
    path: Path | ObjectPath,
    fmt: SourceFormat,
    plan: Plan,
    options: EncodeOptions,
    version: SourceVersion | None,
    openers: list[ObjectOpener],
    grid: TileGrid | None = None,
) -> bytes:
    image = None
    if isinstance(path, Path) and grid is not None and fmt is SourceFormat.TIFF:
        plain = _plain_jpeg(plan, options, grid)
        if plain is not None:
            body = _jpeg_from_tiles(path, plan, version, grid, plain)
            if body is not None:
                return body
        image = _from_stored_tiles(path, plan, version, grid)
        if image is not None and plain is not None:
            # libjpeg-turbo encodes the pixels as libvips' encoder would (the same library and
            # settings), without building an encoding pipeline for them.
            pixels = np.ndarray((plan.height, plan.width, image.bands), dtype=np.uint8, buffer=computed(image))
            return tile_codec.encode_as(pixels, plain)
    if image is not None:
        pass  # already the output size, in 8-bit sRGB or gray: the steps below leave it as it is
    elif isinstance(path, ObjectPath):
        image, opener = open_object_level_cached(path, fmt, plan.level)
        openers.append(opener)
        image = image.crop(plan.crop.x, plan.crop.y, plan.crop.w, plan.crop.h)
    elif fmt is SourceFormat.JP2:
        image = jp2_crop(path, plan, version)
    else:
        # With a version (the server): reuse this thread's opened level, checked against the version.
        if version is not None:
            image = open_level_cached(path, fmt, plan.level, version)
        else:
            image = open_level(path, fmt, plan.level)
        image = image.crop(plan.crop.x, plan.crop.y, plan.crop.w, plan.crop.h)
    image = _to_8bit_srgb_or_gray(image, plan)
    image = _resize_exact(image, plan.width, plan.height)
    if plan.mirror:
        image = image.fliphor()
    image = _rotate(image, plan.degrees, plan.format)
    image = _apply_quality(image, plan.quality)
    return _encode(image, plan, options)


def _plain_jpeg(plan: Plan, options: EncodeOptions, grid: TileGrid) -> tile_codec.Encoding | None:
    """How to encode ``plan`` with libjpeg-turbo from the stored tiles' pixels, or None: not plain.

    Plain: JPEG out, no rotation or mirror, the source's own colour (default or colour quality of
    a colour source, default or gray of a gray one), no ICC profile or alpha: the pipeline below
    would only resize and encode.
    """
    if plan.format is not Format.JPG or plan.degrees != 0 or plan.mirror or not tile_codec.available():
        return None
    gray = plan.source_colour is Colour.GRAY
    if plan.quality not in (Quality.DEFAULT, Quality.GRAY if gray else Quality.COLOR):
        return None
    if plan.source_has_icc or plan.source_has_alpha or (grid.components == 1) != gray:
        return None
    return tile_codec.Encoding(options.jpeg_quality, options.jpeg_chroma_subsampling)


def _jpeg_from_tiles(
    path: Path, plan: Plan, version: SourceVersion | None, grid: TileGrid, encoding: tile_codec.Encoding
) -> bytes | None:
    """A plain JPEG request from the stored tiles without decoding them to pixels, or None:
    decode to pixels. At the level's own size, from the tiles' DCT blocks when its corner lies on
    their MCU grid (``tile_blocks``), else from their Y, Cb, Cr planes as stored (``tile_planes``:
    no colour conversion or chroma resampling); at another size reduced by less than 4, from the
    planes resampled by lanczos3 (``plane_resize``: no colour conversion, half the samples to
    resample, no libvips pipeline)."""
    own_size = (plan.width, plan.height) == (plan.crop.w, plan.crop.h)
    if not own_size and not plane_resize.applies(plan.crop.w, plan.crop.h, plan.width, plan.height):
        return None
    sampling = encoding.subsampling(grid.components == 1)
    try:
        if own_size:
            blocks = tile_blocks.crop_jpeg(path, version, grid, plan.crop, quality=encoding.quality, sampling=sampling)
            if blocks is not None:
                return blocks
        return tile_planes.crop_jpeg(
            path,
            version,
            grid,
            plan.crop,
            quality=encoding.quality,
            sampling=sampling,
            size=None if own_size else (plan.width, plan.height),
        )
    except tile_mosaic.MosaicError as exc:
        log.info("stored tiles of %s not assembled or decodable to planes (%s); decoding to pixels", path, exc)
        return None


def _from_stored_tiles(path: Path, plan: Plan, version: SourceVersion | None, grid: TileGrid) -> Any | None:
    """The plan's crop resized to its output size, from the stored JPEG tiles it covers decoded
    by libjpeg-turbo (``tile_mosaic``), or None: render from libvips' decode of the level.

    Sources with an ICC profile or alpha keep the libvips path (their colour handling is
    there); so does anything ``tile_mosaic`` declines or cannot decode cleanly, and libvips then
    reports the damage, if any, as it always has.
    """
    if plan.source_has_icc or plan.source_has_alpha or not tile_mosaic.scales():
        return None
    if (grid.components == 1) != (plan.source_colour is Colour.GRAY):
        return None
    scale = tile_mosaic.scale_for(grid, plan.crop, plan.width, plan.height)
    try:
        mosaic = tile_mosaic.from_file(path, version, grid, plan.crop, scale)
    except tile_mosaic.MosaicError as exc:
        log.info("stored tiles of %s not decodable (%s); rendering with libvips", path, exc)
        return None
    if mosaic is None:
        return None
    # libvips names one band of uchar b-w and three srgb by itself: no copy to say so. The
    # pipeline runs to its end in this call's ``_render``, so a kept one may serve it.
    return resize_pipelines.resized(
        mosaic.pixels, plan.width, plan.height, lambda image: _resize_exact(image, plan.width, plan.height)
    )


def jp2_crop(path: Path, plan: Plan, version: SourceVersion | None = None) -> Any:
    """The plan's crop of its level of a JPEG 2000 source, decoded alone, as a pyvips image.

    ``plan.level.page`` is the reduction r: the level's pixel i covers full-resolution pixels
    [i * 2**r, (i + 1) * 2**r), and OpenJPEG's output for that area at reduce r is exactly the
    crop. The file is read by name: with a version, it must still be that version afterwards,
    else another file's pixels would be filed under this version.
    """
    r = plan.level.page
    crop = plan.crop
    area = (crop.x << r, crop.y << r, (crop.x + crop.w) << r, (crop.y + crop.h) << r)
    pixels, icc = jp2.decode(path, r, area)
    if version is not None:
        try:
            now = SourceVersion.of(path.stat())
        except OSError:
            raise SourceChanged(str(path)) from None
        if now != version:
            raise SourceChanged(str(path))
    if pixels.shape[:2] != (crop.h, crop.w):
        # The header promised another geometry than the codestream holds: a damaged file.
        raise jp2.Jp2Damaged(f"decoded {pixels.shape[1]}x{pixels.shape[0]} pixels where {crop.w}x{crop.h} were due")
    return vips_image(pixels, icc)


def vips_image(pixels: np.ndarray[Any, Any], icc: bytes = b"") -> Any:
    """A height x width x bands uint8/uint16 array as a pyvips image, with its ICC profile."""
    height, width, bands = pixels.shape
    wide = pixels.dtype == np.uint16
    image = pyvips.Image.new_from_memory(
        np.ascontiguousarray(pixels).data, width, height, bands, "ushort" if wide else "uchar"
    )
    names = {(False, False): "srgb", (False, True): "rgb16", (True, False): "b-w", (True, True): "grey16"}
    # Copied into libvips' own memory: an image made from the array's memory only borrows it, and
    # a pipeline built on it could outlive the Python objects that keep the array alive.
    image = image.copy(interpretation=names[bands <= 2, wide]).copy_memory()
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return image


def _to_8bit_srgb_or_gray(image: Any, plan: Plan) -> Any:
    """Colour-manage to sRGB (or 8-bit gray) before scaling, so the resize works on display values."""
    if plan.source_has_icc and plan.source_colour is Colour.RGB:
        try:
            # The embedded profile wins; intent relative keeps in-gamut colours exact.
            return image.icc_transform("srgb", embedded=True, intent="relative", depth=8)
        except pyvips.Error:
            pass  # a broken profile is ignored (attack case D11): fall through to plain conversion
    interpretation = str(image.interpretation)
    if plan.source_colour is Colour.GRAY:
        if interpretation != "b-w" or image.format != "uchar":
            image = image.colourspace("b-w")
    elif interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def computed(image: Any) -> Any:
    """``image``'s pixels (a buffer of rows x columns x bands), computed by libvips.

    Up to ``FETCH_MAX_PIXELS`` in this thread (``vips_region_fetch``), else through libvips'
    thread pool (``write_to_memory``): the same pixels either way. With one libvips worker per
    pipeline (``configure_libvips``) the pool only adds its start and hand-over, about 0.25 ms
    of a 200-pixel thumbnail's 0.5. A larger output keeps the pool: fetched whole, every stage
    of the pipeline makes its whole intermediate image at once, where the pool works through
    small pieces that stay in the CPU's caches (a 1 MP bound cost 20 % more CPU on the
    benchmark's unaligned requests).
    """
    if image.width * image.height <= FETCH_MAX_PIXELS:
        return pyvips.Region.new(image).fetch(0, 0, image.width, image.height)
    return image.write_to_memory()


def _resize_exact(image: Any, width: int, height: int) -> Any:
    if image.width == width and image.height == height:
        return image
    alpha = bool(image.hasalpha())
    if alpha:
        image = image.premultiply()
    hscale = min(width / image.width, 1.0)
    vscale = min(height / image.height, 1.0)
    if hscale < 1 or vscale < 1:
        if hscale > 1 / REDUCE_ALONE_BELOW and vscale > 1 / REDUCE_ALONE_BELOW:
            # What ``resize`` does for these factors, without its own operation around it.
            image = image.reduce(1 / hscale, 1 / vscale, kernel="lanczos3")
        else:
            image = image.resize(hscale, vscale=vscale, kernel="lanczos3")
    if width > image.width or height > image.height:
        image = _upsize(image, width, height)
    if alpha:
        image = image.unpremultiply().cast("uchar")
    return _fit(image, width, height)


def _upsize(image: Any, width: int, height: int) -> Any:
    """Enlarge to exactly ``width`` x ``height`` on the pixel-centre grid.

    libvips' ``resize`` places an enlarged image half an output pixel right of and below the
    pixel-centre grid (libvips 8.18); an affine with explicit centre offsets does not.
    """
    return image.affine(
        [width / image.width, 0, 0, height / image.height],
        interpolate=pyvips.Interpolate.new("bicubic"),
        idx=0.5,
        idy=0.5,
        odx=-0.5,
        ody=-0.5,
        oarea=[0, 0, width, height],
        extend="copy",
    )


def _fit(image: Any, width: int, height: int) -> Any:
    """Trim or pad (repeating the edge) by the odd pixel that floating-point scaling can leave."""
    if image.width > width or image.height > height:
        image = image.crop(0, 0, min(width, image.width), min(height, image.height))
    if image.width < width or image.height < height:
        image = image.embed(0, 0, width, height, extend="copy")
    return image


def _rotate(image: Any, degrees: Decimal, fmt: Format) -> Any:
    if degrees == 0:
        return image
    if degrees % 90 == 0:
        return image.rot({90: "d90", 180: "d180", 270: "d270"}[int(degrees)])
    transparent = fmt in (Format.PNG, Format.WEBP, Format.GIF, Format.TIF)
    if transparent and not image.hasalpha():
        image = image.bandjoin_const([255])
    # Transparent where the format allows, else black (what libvips and the ng validator use).
    background = [0.0] * image.bands
    width, height = rotated_size(image.width, image.height, degrees)
    # One affine about the exact centres of the source and of the bounding box of implementation
    # note 5: rotate() followed by an integer embed left the picture up to half a pixel off centre.
    rad = math.radians(float(degrees))
    cos, sin = math.cos(rad), math.sin(rad)
    return image.affine(
        [cos, -sin, sin, cos],  # clockwise, y pointing down
        interpolate=pyvips.Interpolate.new("bicubic"),
        idx=0.5 - image.width / 2,  # libvips puts pixel centres on integer coordinates
        idy=0.5 - image.height / 2,
        odx=width / 2 - 0.5,
        ody=height / 2 - 0.5,
        oarea=[0, 0, width, height],
        extend="background",
        background=background,
    )


def _apply_quality(image: Any, quality: Quality) -> Any:
    alpha = image.extract_band(image.bands - 1) if image.hasalpha() else None
    colour = image.extract_band(0, n=image.bands - 1) if alpha is not None else image
    if quality is Quality.GRAY or quality is Quality.BITONAL:
        if colour.bands >= 3:
            colour = colour.colourspace("b-w")
        if quality is Quality.BITONAL:
            colour = (colour >= 128).ifthenelse(255, 0).cast("uchar").copy(interpretation="b-w")
    elif quality is Quality.COLOR and colour.bands == 1:
        colour = colour.colourspace("srgb")
    if alpha is None:
        return colour
    return colour.bandjoin(alpha)


def _encode(image: Any, plan: Plan, options: EncodeOptions) -> bytes:
    fmt = plan.format
    if fmt is Format.JPG:
        if image.hasalpha():
            image = image.flatten(background=[_WHITE] * (image.bands - 1))
        # Huffman optimisation is left off: a second pass over the data costs ~10 % of a render
        # for ~2 % smaller files (stored tiles, the bulk of the bytes, pass through anyway).
        data = image.jpegsave_buffer(
            Q=options.jpeg_quality,
            keep="none",
            subsample_mode="on" if options.jpeg_chroma_subsampling else "auto",
        )
    elif fmt is Format.PNG:
        if plan.quality is Quality.BITONAL and not image.hasalpha():
            data = image.pngsave_buffer(bitdepth=1, compression=6, keep="none")
        else:
            data = image.pngsave_buffer(compression=6, keep="none")
    elif fmt is Format.WEBP:
        data = image.webpsave_buffer(Q=options.webp_quality, keep="none")
    elif fmt is Format.TIF:
        data = image.tiffsave_buffer(compression="deflate", keep="none")
    else:
        data = image.gifsave_buffer(keep="none")
    return bytes(data)
