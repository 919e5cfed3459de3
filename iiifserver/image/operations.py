"""What a worker process gives its image service: the blocking operations and the stores they read.

Owns: the worker's process-wide image set-up (libvips' policy, the opened-level and decoded-tile
budgets); the ``BlockingOps`` the service runs in worker threads: the probe (``Probe``, whose facts
come from the shared tier when another instance probed the same file version:
``probe_through_shared``), the render (``Render``, its seconds told to whoever asked, the metrics)
and the stored-tile index (``TileIndex``); the object store client and its block cache when an image
root is an ``s3://`` URL (``object_store``); the tile cache's tiers as the settings ask
(``tile_cache``); and keeping this worker's memory tier in step with purges made by the others
(``watch_purges``).
Must not know: HTTP, the web framework, the metrics (the render is handed a function to tell).

Why here: ``app`` wires these together; what each one does with the settings is the image
layer's business, and can be tested without an app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iiifserver import config
from iiifserver.cache.disk import DiskCache
from iiifserver.cache.memory import MemoryCache
from iiifserver.cache.shared import SharedCache
from iiifserver.cache.tiered import TileCache
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.image import block_cache, tile_mosaic
from iiifserver.image import probe as probe_module
from iiifserver.image import render as render_module
from iiifserver.image.block_cache import BlockCache
from iiifserver.image.object_store import ObjectPath, ObjectStore
from iiifserver.image.planner import Plan
from iiifserver.image.service import BlockingOps
from iiifserver.image.source_info import (
    SOURCE_INFO_FORMAT,
    SourceFormat,
    SourceInfo,
    SourceVersion,
    decode_source_info,
    encode_source_info,
)
from iiifserver.image.tiff_directory import read_tile_index, read_tile_index_from
from iiifserver.image.tile_files import open_and_read
from iiifserver.image.tile_grid import StoredTiles, TileGrid
from iiifserver.institutions import InstitutionError, load_institutions

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def configure_process(settings: Settings) -> None:
    """libvips' policy and the per-thread budgets: once per worker process, before any request."""
    probe_module.configure_libvips()
    probe_module.set_opened_budget(nbytes=settings.opened_levels_mb * MIB)
    tile_mosaic.decoded_tiles.resize(settings.decoded_tiles_mb * MIB)


def blocking_ops(
    settings: Settings, shared: SharedCache | None, rendered: Callable[[float], None] | None = None
) -> BlockingOps:
    """The service's blocking operations; ``rendered`` is told the seconds of every render."""
    encode = render_module.EncodeOptions(settings.jpeg_quality, settings.webp_quality, settings.jpeg_chroma_subsampling)
    return BlockingOps(
        probe=Probe(settings, shared),
        render=Render(encode, rendered),
        tile_index=TileIndex(settings.tile_passthrough),
        read_tile=open_and_read,
    )


@dataclass(frozen=True, slots=True)
class Probe:
    """A source's facts: from its headers, or from the shared tier when another instance probed it."""

    settings: Settings
    shared: SharedCache | None = None

    def __call__(self, path: Path | ObjectPath) -> SourceInfo:
        # Objects are named by their ETag already; the shared tier names files only.
        if self.shared is None or isinstance(path, ObjectPath):
            return self.headers(path)
        return probe_through_shared(self.shared, self.settings, path, lambda: self.headers(path))

    def headers(self, path: Path | ObjectPath) -> SourceInfo:
        # Through the module attribute: tests count the files probed by replacing it.
        return probe_module.probe(
            path, plain_max_pixels=self.settings.plain_max_pixels, max_source_pixels=self.settings.max_source_pixels
        )


@dataclass(frozen=True, slots=True)
class Render:
    """One render with the server's encode options; ``rendered`` (the metrics) hears its seconds."""

    encode: render_module.EncodeOptions
    rendered: Callable[[float], None] | None = None

    def __call__(
        self, path: Path | ObjectPath, fmt: SourceFormat, plan: Plan, version: SourceVersion, grid: TileGrid | None
    ) -> bytes:
        if self.rendered is None:  # no clock read when nobody listens
            return render_module.render(path, fmt, plan, self.encode, version, grid)
        started = time.perf_counter()
        try:
            return render_module.render(path, fmt, plan, self.encode, version, grid)
        finally:
            self.rendered(time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class TileIndex:
    """The stored tiles of a tiled TIFF, or None: no passthrough for this source."""

    passthrough: bool  # the ``tile_passthrough`` setting

    def __call__(self, path: Path | ObjectPath, info: SourceInfo) -> StoredTiles | None:
        # A file is indexed with passthrough off too: its renders decode regions from the stored
        # tiles. An object's renders go through libvips: its index serves passthrough only.
        if info.format is not SourceFormat.TIFF or not info.is_tiled:
            return None
        if isinstance(path, ObjectPath) and not self.passthrough:
            return None
        try:
            if isinstance(path, ObjectPath):
                # The directories through the block cache: ranged reads, once per object version.
                reader = block_cache.reader_of(path)
                return read_tile_index_from(lambda n, at: reader.read(at, n), path.size, info.levels)
            return read_tile_index(path, info.levels)
        except (OSError, ValueError) as exc:  # no passthrough for this file; rendering still works
            log.warning("no stored-tile index for %s: %s", path, exc)
            return None


def object_store(settings: Settings, institutions: Path | None = None) -> ObjectStore | None:
    """The process's object store client and block cache, when an image root is an s3:// URL
    (an institution's included; its errors are the ``Deployment``'s to report)."""
    if not config.uses_object_storage(settings) and not _institutions_use_objects(institutions):
        return None
    # Each worker process bounds the blocks it knows of (its own, and what it found at start):
    # a share of the bound each keeps the shared folder within it.
    blocks = BlockCache(settings.block_cache, settings.block_cache_mb * MIB // max(1, settings.workers))
    return ObjectStore(settings.storage_timeout, blocks)


def _institutions_use_objects(path: Path | None) -> bool:
    try:
        registry = load_institutions(path)
    except InstitutionError:
        return False
    return any(config.object_root(item.images) for item in registry.items)


def tile_cache(settings: Settings, io: Lane) -> TileCache | None:
    """The tiers the settings ask for (None: no cache at all); blocking calls run in ``io``."""
    if settings.memory_cache_mb == 0 and settings.disk_cache_mb == 0 and not settings.shared_cache_url:
        return None
    disk = DiskCache(settings.cache, settings.disk_cache_mb * MIB) if settings.disk_cache_mb else None
    # A zero-byte memory tier stores nothing: the disk tier then answers every hit.
    return TileCache(MemoryCache(settings.memory_cache_mb * MIB), disk, io.run, shared=_shared_cache(settings))


def _shared_cache(settings: Settings) -> SharedCache | None:
    if not settings.shared_cache_url:
        return None
    return SharedCache(
        settings.shared_cache_url,
        timeout=settings.shared_cache_timeout,
        max_entry_bytes=settings.shared_cache_max_entry_kb * 1024,
        ttl=settings.shared_cache_ttl,
        prefix=settings.shared_cache_prefix,
        # One connection per thread that may call it: the lanes' threads.
        max_connections=max(4, settings.render_threads) + settings.render_threads + settings.heavy_threads + 2,
    )


def probe_through_shared(
    shared: SharedCache, settings: Settings, path: Path, probe: Callable[[], SourceInfo]
) -> SourceInfo:
    """``path``'s facts from the shared tier, else ``probe()`` (blocking: runs in a worker thread)
    and shared when the file stayed the same version throughout. Damaged and unsupported sources
    raise from the probe and are never shared.

    Named by the real path under the image root, not the identifier (every identifier of one file
    shares), and the version stat'd now, so a replaced file is another name (the registry checks
    the version it resolved against the file after this returns); also by the encoding version and
    the probe's limits, which decide whether a file is served at all.
    """
    root = Path(os.path.realpath(settings.images))
    try:
        before = SourceVersion.of(os.stat(path))
    except OSError:
        return probe()  # the probe reports it
    if not path.is_relative_to(root):
        return probe()
    name = "/".join(
        (
            f"source-info-{SOURCE_INFO_FORMAT}",
            f"{settings.plain_max_pixels}-{settings.max_source_pixels}",
            before.token,
            path.relative_to(root).as_posix(),
        )
    )
    info = shared.load_facts(name, decode_source_info)
    if info is not None:
        return info
    info = probe()
    try:
        unchanged = SourceVersion.of(os.stat(path)) == before
    except OSError:
        unchanged = False
    if unchanged:  # else these may be another file's facts: not filed under ``before``
        shared.put_facts(name, encode_source_info(info))
    return info


async def watch_purges(cache: TileCache) -> None:
    """Purges made by other worker processes reach this one's memory tier within a second."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await cache.check_generation()
        except Exception:  # a watcher that dies silently would leave stale tiles after a purge
            log.exception("purge watcher")
