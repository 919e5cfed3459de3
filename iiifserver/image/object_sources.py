"""Identifier -> object under an ``s3://BUCKET/PREFIX`` root, with the same rules as files.

Owns: mapping a decoded identifier to a key under the root's prefix (``/`` addresses a deeper
key; empty, ``.`` and ``..`` segments refused; NFC; the extension optional, the known extensions
tried in the same order as for files) and the object's ``SourceVersion`` (ETag, size, last
modified, from one ``HEAD``); and ``make_source``, the ``Source`` of the configured roots.
Must not know: image formats, pyvips, HTTP, boto3 (``object_store`` talks to the store).
Blocking: ``resolve`` and ``recheck`` send HEAD requests; the registry runs them in worker threads.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from iiifserver.errors import NotFound
from iiifserver.image.object_store import ObjectHead, ObjectPath, ObjectStore, is_object_url, parse_object_url
from iiifserver.image.source_info import SourceVersion
from iiifserver.image.sources import EXTENSIONS, FilesystemSource, RootedSource, Source, SourceFile

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length


def object_version(head: ObjectHead) -> SourceVersion:
    return SourceVersion(0, head.size, head.mtime_ns, 0, head.etag)


class ObjectSource:
    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _candidates(self, identifier: str) -> list[str]:
        name = unicodedata.normalize("NFC", identifier)
        names = [name] if name.lower().endswith(EXTENSIONS) else []
        return names + [name + ext for ext in EXTENSIONS]

    def resolve(self, identifier: str) -> SourceFile:
        segments = identifier.split("/")
        if any(seg in ("", ".", "..") for seg in segments) or "\x00" in identifier or "\\" in identifier:
            raise NotFound(f"no image {identifier!r}", parameter="identifier")
        for name in self._candidates(identifier):
            key = self._key(name)
            if len(key.encode()) > MAX_KEY_BYTES:
                continue  # no such object can exist: not a question for the store (it would answer 400)
            head = self.store.head(self.bucket, key)
            if head is not None:
                return SourceFile(identifier, self.store.path(self.bucket, key, head), object_version(head), name)
        raise NotFound(f"no image {identifier!r}", parameter="identifier")

    def recheck(self, file: SourceFile) -> SourceFile:
        """One HEAD when the object is unchanged and still the identifier's first candidate."""
        path = file.path
        if not isinstance(path, ObjectPath) or self._candidates(file.identifier)[:1] != [file.name]:
            return self.resolve(file.identifier)
        head = self.store.head(path.bucket, path.key)
        if head is not None and object_version(head) == file.version:
            return file
        return self.resolve(file.identifier)


def parse_roots(text: str) -> dict[str, str]:
    """``image_roots`` text (``prefix=root, prefix=root``) -> {prefix: root}; ``ValueError`` if malformed."""
    roots: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        prefix, sep, root = item.partition("=")
        prefix, root = prefix.strip().strip("/"), root.strip()
        if not sep or not prefix or not root or any(seg in ("", ".", "..") for seg in prefix.split("/")):
            raise ValueError(f"image_roots: {item!r} is not prefix=root")
        if prefix in roots:
            raise ValueError(f"image_roots: prefix {prefix!r} given twice")
        if is_object_url(root):
            try:
                parse_object_url(root)
            except ValueError as exc:
                raise ValueError(f"image_roots: {exc}") from None
        roots[prefix] = root
    return roots


def root_source(root: str | Path, store: ObjectStore | None) -> Source:
    text = str(root)
    if is_object_url(text):
        if store is None:
            raise ValueError("an s3:// root needs an object store")
        return ObjectSource(store, *parse_object_url(text))
    return FilesystemSource(Path(text))


def make_source(default: str | Path, roots: dict[str, str], store: ObjectStore | None) -> Source:
    """The ``Source`` of the image root ``default`` and the extra ``roots`` (prefix -> root)."""
    main = root_source(default, store)
    if not roots:
        return main
    return RootedSource(main, {prefix: root_source(root, store) for prefix, root in roots.items()})
