"""Resize pipelines kept per thread, and run again on new pixels of the same geometry.

Owns: the few libvips resize pipelines each render thread keeps (keyed by input and output
size), writing a new mosaic's pixels into a kept pipeline's input, and invalidating libvips'
pixel buffers so that the run computes from them (``resized``).
Must not know: plans, files, tiles, encoders, HTTP (``render`` hands in pixels and the function
that builds the resize).

Why: building libvips' ``reduce`` costs about as much as running it on a thumbnail-sized image
(0.54 of 1.17 ms for 500x375 -> 200x150, AMD EPYC): it computes its lanczos3 masks for every
sub-pixel position when built. Thumbnails of a collection are mostly of images of one size
(scans from one setup, photographs from one camera), so the same pipeline serves them all.

Correctness: a kept pipeline reads its input from a buffer this module owns. After new pixels
are written there, ``invalidate()`` drops every pixel buffer libvips holds of that image and of
the images built on it (libvips 8.18 keeps none once a run has been written to memory, but that
is an observation, the invalidate the interface that says so), so the next run computes from the
new pixels: the output is the bytes a fresh pipeline gives (tested on interleaved images and
geometries, across threads). The image ``resized`` returns must be consumed (written to memory)
in the calling thread before that thread calls ``resized`` again, as a render does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyvips

# Mosaics over this many pixels are resized by a pipeline of their own: a kept input buffer is
# memory held per thread, and building is a small part of a larger resize.
MAX_KEPT_PIXELS = 256 * 1024
# Pipelines kept per render thread (least recently used dropped): a thread's share of a
# collection's few thumbnail geometries (two sizes of thumbnail, one or two image sizes).
KEPT_PER_THREAD = 4


@dataclass(slots=True)
class _Kept:
    buffer: np.ndarray[Any, Any]  # the pipeline's input, rows x columns x bands uint8
    source: Any  # pyvips image over ``buffer``
    output: Any  # the resize built on ``source``


_local = threading.local()


def _kept() -> OrderedDict[tuple[int, ...], _Kept]:
    kept: OrderedDict[tuple[int, ...], _Kept] | None = getattr(_local, "kept", None)
    if kept is None:
        kept = _local.kept = OrderedDict()
    return kept


def resized(pixels: np.ndarray[Any, Any], width: int, height: int, build: Callable[[Any], Any]) -> Any:
    """``build(image)`` of ``pixels`` (rows x columns x bands uint8), the resize to ``width`` x
    ``height``, as a pyvips image: a pipeline kept from an earlier call of the same geometry run
    on these pixels, or a new one. ``build`` must depend on nothing but the geometry.

    The image is valid until this thread's next call (see the module's docstring).
    """
    rows, columns, bands = pixels.shape
    if rows * columns > MAX_KEPT_PIXELS or KEPT_PER_THREAD <= 0:
        # Borrowed, not copied: pyvips keeps the array referenced from every image made from it.
        return build(pyvips.Image.new_from_memory(pixels.data, columns, rows, bands, "uchar"))
    kept = _kept()
    key = (rows, columns, bands, width, height)
    entry = kept.get(key)
    if entry is None:
        buffer = np.empty((rows, columns, bands), dtype=np.uint8)
        source = pyvips.Image.new_from_memory(buffer.data, columns, rows, bands, "uchar")
        entry = kept[key] = _Kept(buffer, source, build(source))
        while len(kept) > KEPT_PER_THREAD:
            kept.popitem(last=False)
    else:
        kept.move_to_end(key)
    np.copyto(entry.buffer, pixels)
    entry.source.invalidate()
    return entry.output


def forget() -> None:
    """Drop this thread's kept pipelines (tests; a thread that ends drops its own)."""
    _kept().clear()
