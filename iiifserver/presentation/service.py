"""Async orchestration of the presentation side: catalogue, image facts, built documents.

Owns: when the catalogue is rescanned (at most every ``source_check_interval`` seconds, on
demand), the keys of built documents (the object's description, each page's source version, the
public base URL, the builder version), the bounded cache of built JSON, turning missing or
unreadable images into description errors that name the page, and leaving damaged sources out
(a folder-built object's damaged pages; a collection's objects with no undamaged image to show).
Must not know: HTTP, iiif_prezi3 (``builder`` has it), pyvips.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import cachetools
import orjson

from iiifserver.errors import IIIFError, NotFound, ServiceUnavailable, SourceDamaged
from iiifserver.image import info as info_doc
from iiifserver.image.planner import max_size
from iiifserver.image.service import ImageService
from iiifserver.image.source_registry import KnownSource
from iiifserver.presentation import builder, discovery
from iiifserver.presentation.access import ManifestAccess
from iiifserver.presentation.catalogue import Catalogue, ObjectEntry, Scanner
from iiifserver.presentation.description import DescriptionError
from iiifserver.presentation.model import ObjectDescription

log = logging.getLogger(__name__)
T = TypeVar("T")
RunBlocking = Callable[..., Awaitable[Any]]
DOCUMENT_CACHE_BYTES = 64 * 1024 * 1024
BUILT_FROM_FOLDERS = ("folder", "image")  # catalogue origins whose pages nobody chose by hand
SUB_COLLECTION_THUMBNAIL_TRIES = 8  # objects tried for a sub-collection's thumbnail
# Images of one document looked up at once. Each unknown one is a job of the I/O lane (a stat and a
# probe): a manifest of thousands of pages asked for all at once filled the lane's queue, and the
# overflow, a 503 for the viewers' requests too, failed the manifest. The lane has at least 4 threads.
FIND_CONCURRENCY = 4


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
    description: ObjectDescription | None = None  # a folder-built object without its damaged pages


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
        scan: Callable[[Scanner], Callable[[], Catalogue]] | None = None,
        member_base: Callable[[str, str], str] | None = None,
    ) -> None:
        # ``member_base(name, base)``: the base URL of a collection's member (an institution's own).
        self._member_base = member_base
        # ``scan``: wraps the folders' scanner (several institutions: ``presentation.institutions``).
        self._scanner = Scanner(manifests, image_root)
        self._scan = scan(self._scanner) if scan is not None else self._scanner.scan
        self._images = images
        self._run_io = run_io
        self._interval = check_interval
        self._page_size = page_size
        self._catalogue: Catalogue | None = None
        self._scanned_at = 0.0
        self._scan_started = 0.0
        self._scan_lock = asyncio.Lock()
        self._logged: set[str] = set()
        self._left_out: set[tuple[str, str]] = set()  # (object, image) damaged pages already logged
        self._documents: cachetools.LRUCache[str, Document] = cachetools.LRUCache(
            DOCUMENT_CACHE_BYTES, getsizeof=lambda doc: len(doc.body) + 200
        )
        # Restricted images' services in manifests (docs/access.md); set by the app's wiring.
        self.access: ManifestAccess | None = None

    # -- catalogue ------------------------------------------------------------------------------

    @property
    def latest(self) -> Catalogue | None:
        """The catalogue of the last scan, however old (None before the first); never scans."""
        return self._catalogue

    async def catalogue(self, *, newer_than: float | None = None) -> Catalogue:
        """The catalogue, rescanned when older than ``source_check_interval``; ``newer_than`` (a
        ``time.monotonic()`` value): rescanned unless the last scan began after it."""
        if newer_than is None and self._catalogue is not None and time.monotonic() - self._scanned_at < self._interval:
            return self._catalogue
        async with self._scan_lock:  # one scan at a time; waiters take its result
            if (
                self._catalogue is None
                or time.monotonic() - self._scanned_at >= self._interval
                or (newer_than is not None and self._scan_started <= newer_than)
            ):
                started = time.monotonic()
                catalogue: Catalogue = await self._run_io(self._scan)
                self._catalogue, self._scanned_at, self._scan_started = catalogue, time.monotonic(), started
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
        folder_built = entry.origin in BUILT_FROM_FOLDERS
        facts, versions, mtime = await self._facts(entry, wanted, fields, drop_damaged=folder_built)
        key = _key("m", builder.BUILDER_VERSION, object_id, entry.token, base, *versions)
        if self.access is not None:
            key = _key(key, self.access.key(wanted))
        description = None
        if folder_built and len(facts) < len(set(wanted)):
            pages = tuple(page for page in entry.description.pages if page.image in facts)
            description = dataclasses.replace(entry.description, pages=pages, thumbnail=None)
        return Keyed(key, max(mtime, entry.mtime_ns), facts, description)

    async def manifest(self, object_id: str, base: str, keyed: Keyed | None = None, *, keep: bool = True) -> Document:
        """The manifest; ``keep=False``: not added to the cache of built documents (built for a digest)."""
        keyed = keyed or await self.manifest_key(object_id, base)
        document = self._documents.get(keyed.key)
        if document is not None:
            return document
        catalogue = await self.catalogue()
        entry = catalogue.objects[object_id]
        assert entry.description is not None
        description = keyed.description or entry.description
        built = await self._run_io(builder.build_manifest, base, object_id, description, keyed.images)
        if self.access is not None:
            self.access.apply(built, [page.image for page in description.pages], base)
        document = Document(keyed.key, orjson.dumps(built), keyed.mtime_ns)
        return self._keep(document) if keep else document

    # -- collections ----------------------------------------------------------------------------

    async def collection_key(self, path: str, base: str, page: int) -> tuple[Keyed, list[builder.Member]]:
        catalogue = await self.catalogue()
        entry = catalogue.collections.get(path)
        if entry is None:
            raise NotFound(f"no collection {path!r}", parameter="collection")
        if entry.error is not None:
            raise entry.error
        members: list[builder.Member] = []
        objects = [catalogue.objects[i] for i in entry.objects if catalogue.objects[i].error is None]
        count = len(entry.collections) + len(objects)
        pages = max(1, -(-count // self._page_size))
        if page < 0 or page > pages or (page and count <= self._page_size):
            raise NotFound(f"no page {page} of collection {path!r}", parameter="page")
        # Thumbnails only for the members shown on this page (a page of pages shows none).
        shown = range(0) if page == 0 and count > self._page_size else _window(count, page, self._page_size)
        versions: list[str] = [catalogue.token]
        mtime = 0
        for index, sub in enumerate(entry.collections):  # sub-collections come first
            sub_entry = catalogue.collections[sub]
            label = sub_entry.description.label if sub_entry.description is not None else ()
            facts = None
            if index in shown:  # the thumbnail of its first object that has one
                for candidate in _objects_under(catalogue, sub, SUB_COLLECTION_THUMBNAIL_TRIES):
                    thumbnail = await self._thumbnail(candidate, versions)
                    if thumbnail:
                        facts, mtime = thumbnail[0], max(mtime, thumbnail[1])
                        break
            members.append(builder.Member("Collection", sub, label, facts, self._base_of(sub, base)))
        offset = len(members)
        for index, entry_obj in enumerate(objects):
            facts = None
            if index + offset in shown:
                thumbnail = await self._thumbnail(entry_obj, versions)
                if thumbnail is False:
                    continue  # every image it could show is damaged: its manifest would fail
                if thumbnail:
                    facts, mtime = thumbnail[0], max(mtime, thumbnail[1])
            assert entry_obj.description is not None
            members.append(
                builder.Member(
                    "Manifest", entry_obj.id, entry_obj.description.label, facts, self._base_of(entry_obj.id, base)
                )
            )
        key = _key("c", builder.BUILDER_VERSION, path, str(page), str(self._page_size), base, *versions)
        return Keyed(key, max(mtime, catalogue.mtime_ns), {}), members

    async def collection(self, path: str, base: str, page: int = 0) -> Document:
        keyed, members = await self.collection_key(path, base, page)
        document = self._documents.get(keyed.key)
        if document is not None:
            return document
        catalogue = await self.catalogue()
        description = catalogue.collections[path].description
        # The top collection links to the Change Discovery log (the specification defines no link
        # from Presentation resources: a service of type OrderedCollection is our convention).
        services = [{"id": discovery.collection_id(base), "type": "OrderedCollection"}] if not path else []
        built = await self._run_io(
            lambda: builder.build_collection(
                base, path, description, members, page_size=self._page_size, page=page, services=services
            )
        )
        return self._keep(Document(keyed.key, orjson.dumps(built), keyed.mtime_ns))

    # -- helpers --------------------------------------------------------------------------------

    async def _thumbnail(
        self, entry: ObjectEntry, versions: list[str]
    ) -> tuple[builder.ImageFacts, int] | Literal[False] | None:
        """The facts and mtime of an object's thumbnail image (its version added to ``versions``);
        None when it has none to show (still listed); False when it must be left out of
        collections: its thumbnail image is damaged and, for a folder-built object, every page."""
        if entry.first_image is None or entry.description is None:
            return None
        candidates = [entry.first_image]
        if entry.origin in BUILT_FROM_FOLDERS:  # its manifest skips damaged pages: so does this
            candidates += [page.image for page in entry.description.pages if page.image != entry.first_image]
        for identifier in candidates:
            try:
                found = await self._images.find(identifier)
            except SourceDamaged:
                self._leave_out(entry.id, identifier)
                continue
            except IIIFError:
                return None  # a collection still lists an object whose thumbnail image is gone
            versions.append(f"{identifier}\0{found.file.version.token}")
            return self._image_facts(identifier, found), found.file.version.mtime_ns
        return False

    def _leave_out(self, object_id: str, identifier: str) -> None:
        if (object_id, identifier) not in self._left_out:
            if len(self._left_out) >= 100_000:
                self._left_out.clear()
            self._left_out.add((object_id, identifier))
            log.warning("object %r: damaged source %r left out", object_id, identifier)

    async def _facts(
        self, entry: ObjectEntry, identifiers: Sequence[str], fields: Sequence[str], *, drop_damaged: bool = False
    ) -> tuple[dict[str, builder.ImageFacts], list[str], int]:
        """Facts of each image; a damaged one is left out when ``drop_damaged`` (unless all are)."""
        results = await self._find_all(identifiers)
        facts: dict[str, builder.ImageFacts] = {}
        versions: list[str] = []
        mtime = 0
        damaged = [r for r in results if isinstance(r, SourceDamaged)]
        if drop_damaged and damaged and len(damaged) == len(results):
            raise damaged[0]  # nothing left to show: the 500 that names the source
        for identifier, field_name, result in zip(identifiers, fields, results, strict=False):
            if drop_damaged and isinstance(result, SourceDamaged):
                self._leave_out(entry.id, identifier)
                continue
            if isinstance(result, NotFound):
                raise DescriptionError(_source(entry), field_name, f"no image {identifier!r} in the image folder")
            if isinstance(result, ServiceUnavailable):
                raise result  # the server is busy now (a 503 to retry), not a bad description
            if isinstance(result, IIIFError):
                raise DescriptionError(_source(entry), field_name, f"image {identifier!r}: {result.detail}")
            if isinstance(result, BaseException):
                raise result
            facts[identifier] = self._image_facts(identifier, result)
            versions.append(f"{identifier}\0{result.file.version.token}")
            mtime = max(mtime, result.file.version.mtime_ns)
        return facts, versions, mtime

    async def _find_all(self, identifiers: Sequence[str]) -> list[KnownSource | BaseException]:
        """``find`` of each identifier (its error in its place), ``FIND_CONCURRENCY`` at a time."""
        limit = asyncio.Semaphore(FIND_CONCURRENCY)

        async def one(identifier: str) -> KnownSource:
            async with limit:
                return await self._images.find(identifier)

        return await asyncio.gather(*(one(identifier) for identifier in identifiers), return_exceptions=True)

    def _image_facts(self, identifier: str, known: KnownSource) -> builder.ImageFacts:
        info = known.info
        limits = self._images.limits
        sizes = tuple((s["width"], s["height"]) for s in info_doc.sizes(info, limits))
        return builder.ImageFacts(identifier, info.width, info.height, sizes, max_size(info.width, info.height, limits))

    def _base_of(self, name: str, base: str) -> str:
        return self._member_base(name, base) if self._member_base is not None else base

    def _keep(self, document: Document) -> Document:
        self._documents[document.key] = document
        return document


def _objects_under(catalogue: Catalogue, path: str, limit: int) -> list[ObjectEntry]:
    """The first ``limit`` publishable objects of a collection, then of its sub-collections (depth first)."""
    out: list[ObjectEntry] = []
    stack = [path]
    while stack and len(out) < limit:
        entry = catalogue.collections.get(stack.pop())
        if entry is None:
            continue
        out += [catalogue.objects[i] for i in entry.objects if catalogue.objects[i].error is None][: limit - len(out)]
        stack.extend(reversed(entry.collections))
    return out


def _window(count: int, page: int, size: int) -> range:
    if page == 0:
        return range(count)
    return range((page - 1) * size, min(page * size, count))


def _source(entry: ObjectEntry) -> str:
    return entry.description.source if entry.description is not None else entry.id


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
