"""Async orchestration of an image or info request.

Owns: the flow identifier -> source file -> SourceInfo (cached by source version) ->
resolved request -> canonical form and key -> plan -> render in a bounded lane.
Must not know: the web framework, pyvips (it calls ``probe``/``render`` through functions it
is given, which run in worker threads).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cachetools

from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.errors import IIIFError, UnsupportedSource
from iiifserver.image import canonical, planner
from iiifserver.image.request import ApiVersion, ImageRequest
from iiifserver.image.source_info import SourceFormat, SourceInfo, SourceVersion
from iiifserver.image.sources import Source, SourceFile, VersionCache

log = logging.getLogger(__name__)

# Bump when rendering changes output bytes for the same request, so old cache entries die.
RENDER_VERSION = "1"
# Requests at most this large (output and decoded crop) use the tile lane.
TILE_LANE_OUTPUT_PIXELS = 1024 * 1024
TILE_LANE_CROP_PIXELS = 4 * 1024 * 1024

ProbeFn = Callable[[Path], SourceInfo]
RenderFn = Callable[[Path, SourceFormat, planner.Plan, str], bytes]  # ..., source version token


@dataclass(frozen=True, slots=True)
class Found:
    file: SourceFile
    info: SourceInfo


@dataclass(frozen=True, slots=True)
class Prepared:
    found: Found
    plan: planner.Plan
    media_type: str
    canonical_v3: str  # region/size/rotation/quality.format in 3.0 canonical form
    canonical: str  # the same in the form of the request's API version
    key: str  # cache key and strong ETag value

    @property
    def version(self) -> SourceVersion:
        return self.found.file.version


class ImageService:
    def __init__(
        self,
        settings: Settings,
        source: Source,
        probe: ProbeFn,
        render: RenderFn,
        *,
        io_lane: Lane,
        tile_lane: Lane,
        heavy_lane: Lane,
    ) -> None:
        self.settings = settings
        self.limits = settings.limits
        self._source = source
        self._probe = probe
        self._render = render
        self._io = io_lane
        self._tiles = tile_lane
        self._heavy = heavy_lane
        self._infos: cachetools.LRUCache[tuple[Path, SourceVersion], SourceInfo] = cachetools.LRUCache(4096)
        self._errors: cachetools.TTLCache[tuple[Path, SourceVersion], IIIFError] = cachetools.TTLCache(1024, ttl=30)
        self._lock = threading.Lock()
        self._versions = VersionCache(settings.source_check_interval)

    async def find(self, identifier: str) -> Found:
        """Resolve and probe ``identifier``: from memory when recently seen, else in a worker thread."""
        file = self._versions.get(identifier)
        if file is not None:
            with self._lock:
                info = self._infos.get((file.path, file.version))
            if info is not None:
                return Found(file, info)
        found = await self._io.run(self._find_blocking, identifier)
        self._versions.put(found.file)
        return found

    def _find_blocking(self, identifier: str) -> Found:
        file = self._source.resolve(identifier)
        cache_key = (file.path, file.version)
        with self._lock:
            info = self._infos.get(cache_key)
            error = self._errors.get(cache_key)
        if error is not None:
            raise error
        if info is None:
            try:
                info = self._probe(file.path)
            except UnsupportedSource as exc:
                # Bad sources are remembered briefly, so a flood of requests does not re-probe.
                with self._lock:
                    self._errors[cache_key] = exc
                raise
            with self._lock:
                self._infos[cache_key] = info
        return Found(file, info)

    async def prepare(self, identifier: str, request: ImageRequest) -> Prepared:
        """Everything but the pixels: enough for the canonical URL, the key and a 304."""
        found = await self.find(identifier)
        resolved = planner.resolve(request, found.info, self.limits)
        canonical_v3 = canonical.canonical_path(resolved, ApiVersion.V3)
        return Prepared(
            found=found,
            plan=planner.plan(resolved, found.info),
            media_type=request.format.media_type,
            canonical_v3=canonical_v3,
            canonical=canonical.canonical_path(resolved, request.version),
            key=cache_key(identifier, found.file.version, canonical_v3, self.settings),
        )

    async def render(self, prepared: Prepared) -> bytes:
        lane = self._tiles if is_tile_sized(prepared.plan) else self._heavy
        found = prepared.found
        return await lane.run(self._render, found.file.path, found.info.format, prepared.plan, found.file.version.token)


def is_tile_sized(plan: planner.Plan) -> bool:
    return (
        plan.width * plan.height <= TILE_LANE_OUTPUT_PIXELS
        and plan.crop.w * plan.crop.h <= TILE_LANE_CROP_PIXELS
        and plan.degrees % 90 == 0
    )


def cache_key(identifier: str, version: SourceVersion, canonical_v3: str, settings: Settings) -> str:
    """Injective over its parts: each is length-prefixed before hashing."""
    parts = (
        identifier.encode("utf-8"),
        version.token.encode(),
        canonical_v3.encode(),
        f"r{RENDER_VERSION}/q{settings.jpeg_quality}/w{settings.webp_quality}".encode(),
    )
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()[:40]
