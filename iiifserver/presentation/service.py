"""Async orchestration of the presentation side: catalogue, image facts, built documents.

Owns: when the catalogue is rescanned (at most every ``source_check_interval`` seconds, on
demand), the keys of built documents (the object's description, each page's source version, the
public base URL, the builder version), the bounded cache of built JSON, and turning missing or
unreadable images into description errors that name the page.
Must not know: HTTP, iiif_prezi3 (``builder`` has it), pyvips.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cachetools
import orjson

from iiifserver.errors import IIIFError, NotFound
from iiifserver.image import info as info_doc
from iiifserver.image.planner import max_size
from iiifserver.image.service import ImageService
from iiifserver.image.source_registry import KnownSource
from iiifserver.presentation import builder
from iiifserver.presentation.catalogue import Catalogue, ObjectEntry, Scanner
from iiifserver.presentation.description import DescriptionError

log = logging.getLogger(__name__)
T = TypeVar("T")
RunBlocking = Callable[..., Awaitable[Any]]
DOCUMENT_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Document:
    """A built manifest or collection: its body, strong ETag and Last-Modified time."""

    key: str
    body: bytes
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Keyed:
    """What a document will be built from, known before building it (for 304s)."""

    key: str
    mtime_ns: int
    images: dict[str, builder.ImageFacts]


class PresentationService:
    def __init__(
        self,
        manifests: Path,
        image_root: Path,
        images: ImageService,
        run_io: RunBlocking,
        *,
        check_interval: float,
        page_size: int,
    ) -> None:
        self._scanner = Scanner(manifests, image_root)
        self._images = images
        self._run_io = run_io
        self._interval = check_interval
        self._page_size = page_size
        self._catalogue: Catalogue | None = None
        self._scanned_at = 0.0
        self._scan_lock = asyncio.Lock()
        self._logged: set[str] = set()
        self._documents: cachetools.LRUCache[str, Document] = cachetools.LRUCache(
            DOCUMENT_CACHE_BYTES, getsizeof=lambda doc: len(doc.body) + 200
        )

    # -- catalogue ------------------------------------------------------------------------------

    async def catalogue(self) -> Catalogue:
        if self._catalogue is not None and time.monotonic() - self._scanned_at < self._interval:
            return self._catalogue
        async with self._scan_lock:  # one scan at a time; waiters take its result
            if self._catalogue is None or time.monotonic() - self._scanned_at >= self._interval:
                catalogue: Catalogue = await self._run_io(self._scanner.scan)
                self._catalogue, self._scanned_at = catalogue, time.monotonic()
                self._log_problems(catalogue)
        return self._catalogue

    def _log_problems(self, catalogue: Catalogue) -> None:
        current = {str(problem) for problem in catalogue.problems}
        for message in sorted(current - self._logged):
            log.warning("%s (other objects keep serving)", message)
        self._logged = current

    # -- manifests ------------------------------------------------------------------------------

    async def manifest_key(self, object_id: str, base: str) -> Keyed:
        catalogue = await self.catalogue()
        entry = catalogue.objects.get(object_id)
        if entry is None:
            raise NotFound(f"no object {object_id!r}", parameter="object")
        if entry.error is not None:
            raise entry.error
        assert entry.description is not None
        wanted = [page.image for page in entry.description.pages]
        if entry.description.thumbnail_image:
            wanted.append(entry.description.thumbnail_image)
        fields = [f"pages[{i}].image" for i in range(len(entry.description.pages))] + ["thumbnail"]
        facts, versions, mtime = await self._facts(entry, wanted, fields)
        key = _key("m", builder.BUILDER_VERSION, object_id, entry.token, base, *versions)
        return Keyed(key, max(mtime, entry.mtime_ns), facts)

    async def manifest(self, object_id: str, base: str, keyed: Keyed | None = None) -> Document:
        keyed = keyed or await self.manifest_key(object_id, base)
        document = self._documents.get(keyed.key)
        if document is not None:
            return document
        catalogue = await self.catalogue()
        entry = catalogue.objects[object_id]
        assert entry.description is not None
        description = entry.description
        built = await self._run_io(builder.build_manifest, base, object_id, description, keyed.images)
        return self._keep(Document(keyed.key, orjson.dumps(built), keyed.mtime_ns))

    # -- collections ----------------------------------------------------------------------------

    async def collection_key(self, path: str, base: str, page: int) -> tuple[Keyed, list[builder.Member]]:
        catalogue = await self.catalogue()
        entry = catalogue.collections.get(path)
        if entry is None:
            raise NotFound(f"no collection {path!r}", parameter="collection")
        if entry.error is not None:
            raise entry.error
        members: list[builder.Member] = []
        for sub in entry.collections:
            sub_entry = catalogue.collections[sub]
            label = sub_entry.description.label if sub_entry.description is not None else ()
            members.append(builder.Member("Collection", sub, label, None))
        objects = [catalogue.objects[i] for i in entry.objects if catalogue.objects[i].error is None]
        count = len(members) + len(objects)
        pages = max(1, -(-count // self._page_size))
        if page < 0 or page > pages or (page and count <= self._page_size):
            raise NotFound(f"no page {page} of collection {path!r}", parameter="page")
        # Thumbnails only for the members shown on this page (a page of pages shows none).
        shown = range(0) if page == 0 and count > self._page_size else _window(count, page, self._page_size)
        versions: list[str] = [catalogue.token]
        mtime = 0
        offset = len(members)  # sub-collections come first
        for index, entry_obj in enumerate(objects):
            facts = None
            if index + offset in shown and entry_obj.first_image is not None:
                try:
                    found = await self._images.find(entry_obj.first_image)
                except IIIFError:
                    pass  # a collection still lists an object whose thumbnail image is gone
                else:
                    facts = self._image_facts(entry_obj.first_image, found)
                    versions.append(found.file.version.token)
                    mtime = max(mtime, found.file.version.mtime_ns)
            assert entry_obj.description is not None
            members.append(builder.Member("Manifest", entry_obj.id, entry_obj.description.label, facts))
        key = _key("c", builder.BUILDER_VERSION, path, str(page), str(self._page_size), base, *versions)
        return Keyed(key, max(mtime, catalogue.mtime_ns), {}), members

    async def collection(self, path: str, base: str, page: int = 0) -> Document:
        keyed, members = await self.collection_key(path, base, page)
        document = self._documents.get(keyed.key)
        if document is not None:
            return document
        catalogue = await self.catalogue()
        description = catalogue.collections[path].description
        built = await self._run_io(
            lambda: builder.build_collection(base, path, description, members, page_size=self._page_size, page=page)
        )
        return self._keep(Document(keyed.key, orjson.dumps(built), keyed.mtime_ns))

    # -- helpers --------------------------------------------------------------------------------

    async def _facts(
        self, entry: ObjectEntry, identifiers: Sequence[str], fields: Sequence[str]
    ) -> tuple[dict[str, builder.ImageFacts], list[str], int]:
        results = await asyncio.gather(
            *(self._images.find(identifier) for identifier in identifiers), return_exceptions=True
        )
        facts: dict[str, builder.ImageFacts] = {}
        versions: list[str] = []
        mtime = 0
        for identifier, field_name, result in zip(identifiers, fields, results, strict=False):
            if isinstance(result, NotFound):
                raise DescriptionError(_source(entry), field_name, f"no image {identifier!r} in the image folder")
            if isinstance(result, IIIFError):
                raise DescriptionError(_source(entry), field_name, f"image {identifier!r}: {result.detail}")
            if isinstance(result, BaseException):
                raise result
            facts[identifier] = self._image_facts(identifier, result)
            versions.append(f"{identifier}\0{result.file.version.token}")
            mtime = max(mtime, result.file.version.mtime_ns)
        return facts, versions, mtime

    def _image_facts(self, identifier: str, known: KnownSource) -> builder.ImageFacts:
        info = known.info
        limits = self._images.limits
        sizes = tuple((s["width"], s["height"]) for s in info_doc.sizes(info, limits))
        return builder.ImageFacts(identifier, info.width, info.height, sizes, max_size(info.width, info.height, limits))

    def _keep(self, document: Document) -> Document:
        self._documents[document.key] = document
        return document


def _window(count: int, page: int, size: int) -> range:
    if page == 0:
        return range(count)
    return range((page - 1) * size, min(page * size, count))


def _source(entry: ObjectEntry) -> str:
    return entry.description.source if entry.description is not None else entry.id


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
