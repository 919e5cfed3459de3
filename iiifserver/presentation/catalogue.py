"""The catalogue: every publishable object and collection, from ``manifests/`` and the image folders.

Owns: finding descriptions (``*.yaml``, ``*.yml``, ``*.json``, ``*.csv``; ``_collection.yaml`` for a
collection's own labels), reading them (within ``loader``'s limits; any failure, foreseen or not,
is that file's ``DescriptionError`` naming it, never the scan's), the folder defaults
(a folder of images is an object; a loose image at the top is one too), natural page order,
and the collection tree. A scan is blocking file work: it runs in a worker thread.
Must not know: HTTP, iiif_prezi3, image formats beyond file extensions.

Object ids are the description's path under ``manifests/`` without extension (``books/hours``),
or the folder's path under the image root. A description wins over the folder of the same name,
and images that a description lists are not published again on their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from iiifserver.image.sources import EXTENSIONS
from iiifserver.presentation import loader, spreadsheet
from iiifserver.presentation.description import (
    DescriptionError,
    check_object_id,
    folder_label,
    lists_pages,
    natural_key,
    parse_collection,
    parse_object,
)
from iiifserver.presentation.model import Description, ObjectDescription

log = logging.getLogger(__name__)

DESCRIPTION_EXTENSIONS = (".yaml", ".yml", ".json")
COLLECTION_FILE = "_collection"
MAX_DESCRIPTION_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    id: str
    description: ObjectDescription | None  # None when ``error`` is set
    error: DescriptionError | None
    collection: str  # the collection listing it ("" is the top one)
    origin: str  # "description", "spreadsheet", "folder" or "image"
    token: str  # changes whenever what it was built from changes (not counting image contents)
    mtime_ns: int = 0  # of its description file (0 for folder defaults)

    @property
    def first_image(self) -> str | None:
        d = self.description
        if d is None:
            return None
        if d.thumbnail_image:
            return d.thumbnail_image
        return d.pages[d.thumbnail or 0].image


@dataclass(frozen=True, slots=True)
class CollectionEntry:
    path: str  # "" for the top collection
    description: Description | None
    error: DescriptionError | None
    collections: tuple[str, ...]  # sub-collection paths, sorted naturally
    objects: tuple[str, ...]  # object ids, sorted naturally by label then id


@dataclass(slots=True)
class Catalogue:
    objects: dict[str, ObjectEntry] = field(default_factory=dict)
    collections: dict[str, CollectionEntry] = field(default_factory=dict)
    problems: list[DescriptionError] = field(default_factory=list)  # every error, for validate and the log
    token: str = ""
    mtime_ns: int = 0  # newest description file or image folder: the Last-Modified of collections


# -- scanning ----------------------------------------------------------------------------------


class Scanner:
    """Builds catalogues, re-reading only the description files whose version changed."""

    def __init__(self, manifests: Path, images: Path) -> None:
        self.manifests = manifests
        self.images = images
        self._loaded: dict[str, tuple[tuple[int, int, int], Any]] = {}  # path -> (version, data or error)
        self._folder_mtime = 0

    def scan(self) -> Catalogue:
        catalogue = Catalogue()
        fingerprint = hashlib.sha256()
        self._folder_mtime = 0
        folders = self._image_folders()
        catalogue.mtime_ns = self._folder_mtime
        for folder, images in sorted(folders.items()):
            fingerprint.update(orjson.dumps([folder, images]))

        raw_objects: dict[str, tuple[str, str, Any, int]] = {}  # id -> (source, origin, data | error, mtime)
        collection_files: dict[str, tuple[str, Any]] = {}
        files = list(self._description_files())
        for gone in self._loaded.keys() - {relative for relative, _ in files}:
            del self._loaded[gone]  # a removed file's parsed content must not linger
        for relative, version in files:
            fingerprint.update(f"{relative}\0{version}\0".encode())
            catalogue.mtime_ns = max(catalogue.mtime_ns, version[2])
            data = self._load(relative, version)
            stem, ext = os.path.splitext(relative)
            if ext == ".csv":
                self._add_sheet(relative, data, raw_objects, catalogue.problems, version[2])
                continue
            folder, _, name = stem.rpartition("/")
            if name == COLLECTION_FILE:
                collection_files[folder] = (relative, data)
                continue
            self._add_raw(raw_objects, stem, relative, "description", data, catalogue.problems, version[2])
        catalogue.token = fingerprint.hexdigest()[:32]

        listed: set[str] = set()
        for object_id, (source, origin, data, mtime) in raw_objects.items():
            entry = self._object(object_id, source, origin, data, folders, mtime)
            catalogue.objects[object_id] = entry
            if entry.description is not None:
                listed.update(page.image for page in entry.description.pages)
        self._add_defaults(catalogue, folders, listed)
        for entry in catalogue.objects.values():
            if entry.error is not None:
                catalogue.problems.append(entry.error)
        self._add_collections(catalogue, collection_files)
        return catalogue

    def _image_folders(self) -> dict[str, list[str]]:
        """Folder (relative, "" for the root) -> image identifiers in natural order."""
        out: dict[str, list[str]] = {}
        root = str(self.images)
        if not os.path.isdir(root):
            return out
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
            with contextlib.suppress(OSError):
                self._folder_mtime = max(self._folder_mtime, os.stat(dirpath).st_mtime_ns)
            relative = os.path.relpath(dirpath, root)
            relative = "" if relative == "." else unicodedata.normalize("NFC", relative.replace(os.sep, "/"))
            stems: dict[str, list[str]] = {}
            for name in filenames:
                if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                    continue
                name = unicodedata.normalize("NFC", name)
                stems.setdefault(os.path.splitext(name)[0], []).append(name)
            images = []
            for stem, names in stems.items():
                # An identifier without extension finds the first known extension: that file gets
                # the short id; any twin keeps its extension.
                names.sort(key=lambda n: _extension_rank(n))
                images.append(stem)
                images.extend(names[1:])
            if images:
                prefix = f"{relative}/" if relative else ""
                out[relative] = [prefix + image for image in sorted(images, key=natural_key)]
        return out

    def _description_files(self) -> Iterator[tuple[str, tuple[int, int, int]]]:
        root = str(self.manifests)
        if not os.path.isdir(root):
            return
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith((*DESCRIPTION_EXTENSIONS, ".csv")):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # removed while listing
                relative = unicodedata.normalize("NFC", os.path.relpath(path, root).replace(os.sep, "/"))
                yield relative, (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self, relative: str, version: tuple[int, int, int]) -> Any:
        cached = self._loaded.get(relative)
        if cached is not None and cached[0] == version:
            return cached[1]
        data = read_description_file(self.manifests / relative, relative)
        self._loaded[relative] = (version, data)
        return data

    def _add_sheet(
        self,
        relative: str,
        data: Any,
        raw_objects: dict[str, tuple[str, str, Any, int]],
        problems: list[DescriptionError],
        mtime: int,
    ) -> None:
        if isinstance(data, DescriptionError):
            problems.append(data)
            return
        objects, loose = data
        problems.extend(loose)
        for item in objects:
            source = f"{relative} line {item.first_row}"
            payload = item.error if item.error is not None else item.raw
            self._add_raw(raw_objects, item.object_id, source, "spreadsheet", payload, problems, mtime)

    def _add_raw(
        self,
        raw_objects: dict[str, tuple[str, str, Any, int]],
        object_id: str,
        source: str,
        origin: str,
        data: Any,
        problems: list[DescriptionError],
        mtime: int,
    ) -> None:
        try:
            check_object_id(object_id, source)
        except DescriptionError as exc:
            problems.append(exc)
            return
        if object_id in raw_objects:
            first = raw_objects[object_id][0]
            error = DescriptionError(source, "", f"object {object_id!r} is already described by {first}")
            raw_objects[object_id] = (first, origin, error, mtime)
            return
        raw_objects[object_id] = (source, origin, data, mtime)

    def _object(
        self, object_id: str, source: str, origin: str, data: Any, folders: dict[str, list[str]], mtime: int
    ) -> ObjectEntry:
        parent = object_id.rpartition("/")[0]
        token = _token(object_id, source, data)
        if isinstance(data, DescriptionError):
            return ObjectEntry(object_id, None, data, parent, origin, token, mtime)
        folder_images: tuple[str, ...] = ()
        if not lists_pages(data):
            # Its folder's images; else the one image with the object's id (painting.yaml + painting.tif).
            folder_images = tuple(folders.get(object_id, ()))
            if not folder_images and object_id in folders.get(parent, ()):
                folder_images = (object_id,)
        if folder_images:
            token = _token(token, folder_images)
        try:
            description = parse_object(data, source, folder_images)
        except DescriptionError as exc:
            return ObjectEntry(object_id, None, exc, parent, origin, token, mtime)
        except Exception as exc:  # a fault of ours on odd input is still only this object's
            log.debug("parsing %s failed", source, exc_info=True)
            error = DescriptionError(source, "", f"cannot be read ({type(exc).__name__})")
            return ObjectEntry(object_id, None, error, parent, origin, token, mtime)
        collection = parent if description.collection is None else description.collection
        return ObjectEntry(object_id, description, None, collection, origin, token, mtime)

    def _add_defaults(self, catalogue: Catalogue, folders: dict[str, list[str]], listed: set[str]) -> None:
        for folder, images in folders.items():
            unlisted = [image for image in images if image not in listed]
            if folder == "":
                for image in unlisted:  # a loose image at the top is an object of one page
                    if image not in catalogue.objects:
                        self._add_default(catalogue, image, (image,), "image")
            elif unlisted and folder not in catalogue.objects:
                self._add_default(catalogue, folder, tuple(images), "folder")

    def _add_default(self, catalogue: Catalogue, object_id: str, images: tuple[str, ...], origin: str) -> None:
        source = f"{'folder' if origin == 'folder' else 'image'} {object_id}"
        try:
            check_object_id(object_id, source)
        except DescriptionError as exc:
            catalogue.problems.append(exc)
            return
        name = object_id.rpartition("/")[2]
        pages = [{"image": image, "label": folder_label(image.rpartition("/")[2])} for image in images]
        data = {"label": folder_label(name), "pages": pages}
        if origin == "folder" and len(images) > 1:
            data["behavior"] = ["individuals"]
        description = parse_object(data, source)
        parent = object_id.rpartition("/")[0]
        catalogue.objects[object_id] = ObjectEntry(
            object_id, description, None, parent, origin, _token(object_id, origin, images)
        )

    def _add_collections(self, catalogue: Catalogue, files: dict[str, tuple[str, Any]]) -> None:
        members: dict[str, set[str]] = {"": set()}
        children: dict[str, set[str]] = {"": set()}
        for entry in catalogue.objects.values():
            members.setdefault(entry.collection, set()).add(entry.id)
            children.setdefault(entry.collection, set())
        for path in list(members) + list(files):
            # Every ancestor of a collection exists and lists it.
            while path:
                parent = path.rpartition("/")[0]
                children.setdefault(path, set())
                members.setdefault(path, set())
                children.setdefault(parent, set()).add(path)
                path = parent
        objects = catalogue.objects
        for path in children:
            description: Description | None = None
            error: DescriptionError | None = None
            if path in files:
                source, data = files[path]
                try:
                    if isinstance(data, DescriptionError):
                        raise data
                    description = parse_collection(data, source)
                except DescriptionError as exc:
                    error = exc
                    catalogue.problems.append(exc)
                except Exception as exc:  # only this collection's labels are lost
                    log.debug("parsing %s failed", source, exc_info=True)
                    error = DescriptionError(source, "", f"cannot be read ({type(exc).__name__})")
                    catalogue.problems.append(error)
            ordered = sorted(
                members.get(path, ()), key=lambda i: (natural_key(_first_label(objects[i])), natural_key(i))
            )
            catalogue.collections[path] = CollectionEntry(
                path, description, error, tuple(sorted(children[path], key=natural_key)), tuple(ordered)
            )


def read_description_file(path: Path, relative: str) -> Any:
    """File -> parsed data, or the ``DescriptionError`` saying why it cannot be read (never raises).

    Whatever goes wrong inside one file (broken syntax, a limit of ``loader`` passed, or a fault we
    did not foresee) is that file's error: the other objects keep serving.
    """
    try:
        return _read(path, relative)
    except DescriptionError as exc:
        return exc
    except RecursionError:
        return DescriptionError(relative, "", "nests too deeply to be read")
    except MemoryError:
        return DescriptionError(relative, "", "is too large to be read")
    except Exception as exc:  # one file's fault must never escape the scan
        log.debug("reading %s failed", relative, exc_info=True)
        return DescriptionError(relative, "", f"cannot be read ({type(exc).__name__})")


def _read(path: Path, relative: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DESCRIPTION_BYTES + 1)
    except OSError as exc:
        return DescriptionError(relative, "", f"cannot be read ({exc.strerror or 'I/O error'})")
    if len(data) > MAX_DESCRIPTION_BYTES:
        return DescriptionError(relative, "", f"is larger than {MAX_DESCRIPTION_BYTES // 1024 // 1024} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return DescriptionError(relative, "", f"is not UTF-8 text (byte {exc.start})")
    lower = relative.lower()
    if lower.endswith(".csv"):
        return spreadsheet.read_sheet(text, relative)
    try:
        if lower.endswith(".json"):
            try:
                return loader.load_json(text)
            except orjson.JSONDecodeError as exc:
                return DescriptionError(relative, "", f"broken JSON: {exc}")
        return loader.load_yaml(text)
    except loader.LimitError as exc:
        return DescriptionError(relative, "", str(exc))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        return DescriptionError(relative, "", f"broken YAML{where}: {problem}")
    except ValueError as exc:  # a scalar YAML cannot convert, e.g. an integer of 5,000 digits
        return DescriptionError(relative, "", f"has a value that cannot be read: {str(exc)[:200]}")


def _first_label(entry: ObjectEntry) -> str:
    if entry.description is None or not entry.description.label:
        return entry.id
    return entry.description.label[0][1][0]


def _extension_rank(name: str) -> int:
    lower = name.lower()
    return next((i for i, ext in enumerate(EXTENSIONS) if lower.endswith(ext)), len(EXTENSIONS))


def _token(*parts: Any) -> str:
    text = repr(parts) if not all(isinstance(p, str) for p in parts) else "\0".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
