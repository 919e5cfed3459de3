"""Several institutions in one catalogue: each one's catalogue under its slug, and their top collection.

Owns: scanning every institution's manifests and image folders (one ``Scanner`` each, kept
between scans so unchanged files are not re-read), renaming what they hold into the
institution's namespace (object ``obj`` -> ``slug/obj``, image ``img`` -> ``slug/img``, collection
``c`` -> ``slug/c``, its top collection -> ``slug``), applying its defaults where a description
does not say (provider, rights, the language of untagged texts), and the top collection of
institutions (each institution's top collection, then the default catalogue's own top members).
The result is an ordinary ``Catalogue``: the service, the builder and Change Discovery see one
catalogue and need not know about institutions.
Must not know: HTTP, how the registry is loaded or reloaded, image formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from iiifserver.institutions import Institution, Institutions
from iiifserver.presentation.catalogue import Catalogue, CollectionEntry, Scanner
from iiifserver.presentation.description import DescriptionError
from iiifserver.presentation.model import (
    Agent,
    Description,
    LanguageMap,
    Link,
    MetadataEntry,
    ObjectDescription,
)

log = logging.getLogger(__name__)
# Where an institution without a manifests folder "keeps" its descriptions: nothing is there.
_NO_FOLDER = Path("\0no-manifests")
_LOGO_FORMATS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


class InstitutionsScanner:
    """A ``Scanner`` (``scan()``) of the default catalogue and every institution's, merged.

    ``registry()`` is read at each scan, so a swapped registry is scanned from the next scan on;
    with no institution the default catalogue is returned as it is (single-institution servers
    are unchanged).
    """

    def __init__(self, default: Scanner, registry: Callable[[], Institutions]) -> None:
        self._default = default
        self._registry = registry
        self._scanners: dict[str, tuple[Institution, Scanner]] = {}

    def scan(self) -> Catalogue:
        institutions = self._registry()
        base = self._default.scan()
        if not institutions:
            self._scanners.clear()
            return base
        merged = Catalogue()
        fingerprint = hashlib.sha256(base.token.encode())
        merged.mtime_ns = base.mtime_ns
        slugs = set(institutions.by_slug)
        # The default catalogue keeps its ids, but none inside an institution's namespace.
        for object_id, entry in base.objects.items():
            if object_id.partition("/")[0] not in slugs:
                merged.objects[object_id] = entry
            else:  # said, not silently lost (the catalogue's problems are logged and validated)
                source = entry.description.source if entry.description is not None else object_id
                merged.problems.append(
                    DescriptionError(source, "", f"object {object_id!r} is hidden by the institution of that name")
                )
        for path, collection in base.collections.items():
            if path and path.partition("/")[0] not in slugs:
                merged.collections[path] = collection
        merged.problems.extend(base.problems)
        for institution in institutions.items:
            catalogue = self._scanner(institution).scan()
            fingerprint.update(f"\0{institution!r}\0{catalogue.token}".encode())
            merged.mtime_ns = max(merged.mtime_ns, catalogue.mtime_ns)
            _add_institution(merged, institution, catalogue)
        for gone in self._scanners.keys() - slugs:
            del self._scanners[gone]
        top = base.collections.get("")
        merged.collections[""] = CollectionEntry(
            "",
            top.description if top is not None else None,
            top.error if top is not None else None,
            tuple(item.slug for item in institutions.items)
            + tuple(c for c in (top.collections if top else ()) if c.partition("/")[0] not in slugs),
            tuple(o for o in (top.objects if top else ()) if o.partition("/")[0] not in slugs),
        )
        merged.token = fingerprint.hexdigest()[:32]
        return merged

    def _scanner(self, institution: Institution) -> Scanner:
        known = self._scanners.get(institution.slug)
        if known is not None and known[0].manifests == institution.manifests and known[0].images == institution.images:
            return known[1]
        # Object-store roots have no folders to walk: their objects come from descriptions only.
        images = Path(institution.images) if not institution.images.startswith("s3://") else _NO_FOLDER
        scanner = Scanner(institution.manifests or _NO_FOLDER, images)
        self._scanners[institution.slug] = (institution, scanner)
        return scanner


def _add_institution(merged: Catalogue, institution: Institution, catalogue: Catalogue) -> None:
    slug = institution.slug
    stamp = hashlib.sha256(repr(institution).encode()).hexdigest()[:16]  # its defaults are in its documents

    def named(name: str) -> str:
        return f"{slug}/{name}" if name else slug

    for object_id, entry in catalogue.objects.items():
        description = entry.description
        if description is not None:
            description = _object_defaults(description, institution, entry.origin in ("description", "spreadsheet"))
        merged.objects[named(object_id)] = dataclasses.replace(
            entry,
            id=named(object_id),
            description=description,
            error=_renamed_error(entry.error, slug),
            collection=named(entry.collection),
            token=f"{entry.token}-{stamp}",
        )
    for error in catalogue.problems:
        merged.problems.append(_renamed_error(error, slug) or error)
    for path, collection in catalogue.collections.items():
        own: Description | None = collection.description
        if path == "":
            own = own or Description(source=f"institution {slug}", label=institution.display_label)
        if own is not None:
            own = _defaults(own, institution, tag=path != "" or collection.description is not None)
        merged.collections[named(path)] = dataclasses.replace(
            collection,
            path=named(path),
            description=own,
            error=_renamed_error(collection.error, slug),
            collections=tuple(named(c) for c in collection.collections),
            objects=tuple(named(o) for o in collection.objects),
        )


def _renamed_error(error: DescriptionError | None, slug: str) -> DescriptionError | None:
    if error is None:
        return None
    return DescriptionError(f"{slug}: {error.source}", error.field, error.reason)


def _object_defaults(description: ObjectDescription, institution: Institution, tag: bool) -> ObjectDescription:
    slug = institution.slug
    with_defaults = _defaults(description, institution, tag=tag)
    assert isinstance(with_defaults, ObjectDescription)
    return dataclasses.replace(
        with_defaults,
        pages=tuple(dataclasses.replace(page, image=f"{slug}/{page.image}") for page in with_defaults.pages),
        thumbnail_image=f"{slug}/{description.thumbnail_image}" if description.thumbnail_image else "",
        collection=None if description.collection is None else (f"{slug}/{description.collection}".rstrip("/")),
    )


def _defaults(description: Description, institution: Institution, *, tag: bool) -> Description:
    """The institution's provider and rights where ``description`` gives none; with ``tag``, its
    first language on texts written without one (folder names are in no language: not tagged)."""
    changes: dict[str, object] = {}
    if not description.provider and institution.provider is not None:
        changes["provider"] = (provider_agent(institution),)
    if not description.rights and institution.rights:
        changes["rights"] = institution.rights
    if tag and institution.languages:
        language = institution.languages[0]
        changes["label"] = _tagged(description.label, language)
        changes["summary"] = _tagged(description.summary, language)
        changes["metadata"] = tuple(
            MetadataEntry(_tagged(m.label, language), _tagged(m.value, language)) for m in description.metadata
        )
        if description.required_statement is not None:
            statement = description.required_statement
            changes["required_statement"] = MetadataEntry(
                _tagged(statement.label, language), _tagged(statement.value, language)
            )
        if isinstance(description, ObjectDescription):
            changes["pages"] = tuple(
                dataclasses.replace(page, label=_tagged(page.label, language), summary=_tagged(page.summary, language))
                for page in description.pages
            )
    return dataclasses.replace(description, **changes) if changes else description  # type: ignore[arg-type]


def _tagged(value: LanguageMap, language: str) -> LanguageMap:
    """``none`` becomes ``language`` unless that language is given too (then both stay)."""
    given = {lang for lang, _ in value}
    if "none" not in given or language in given:
        return value
    return tuple((language if lang == "none" else lang, texts) for lang, texts in value)


def provider_agent(institution: Institution) -> Agent:
    provider = institution.provider
    assert provider is not None
    homepage = (Link(provider.homepage, "Text", provider.label, "text/html"),) if provider.homepage else ()
    logo: tuple[Link, ...] = ()
    if provider.logo:
        suffix = Path(provider.logo.partition("?")[0]).suffix.lower()
        logo = (Link(provider.logo, "Image", (), _LOGO_FORMATS.get(suffix, "")),)
    return Agent(provider.id, provider.label, homepage, logo)
