"""The object and collection description model: what one ``manifests/`` entry says, checked and frozen.

Owns: the frozen values the parser (``description``) produces and the builder (``builder``) reads:
language maps, links, providers, metadata pairs, pages, ranges, and the object and collection
descriptions themselves. Every value here has passed the parser's checks.
Must not know: how descriptions are written (YAML, JSON, CSV), files, images, HTTP, iiif_prezi3.
"""

from __future__ import annotations

from dataclasses import dataclass

# A language map: BCP 47 tag (or "none") -> values, in the order written.
LanguageMap = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Link:
    """A web resource (homepage, seeAlso, logo)."""

    id: str
    type: str
    label: LanguageMap = ()
    format: str = ""
    profile: str = ""
    language: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Agent:
    """A provider: the institution behind the object."""

    id: str
    label: LanguageMap
    homepage: tuple[Link, ...] = ()
    logo: tuple[Link, ...] = ()
    see_also: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class MetadataEntry:
    label: LanguageMap
    value: LanguageMap


@dataclass(frozen=True, slots=True)
class Page:
    image: str  # image identifier, relative to the image root
    label: LanguageMap = ()
    summary: LanguageMap = ()
    behavior: tuple[str, ...] = ()
    access: str = ""  # "open" | "restricted"; "": the object's (or its folder's) rule
    degraded_max: int | None = None  # longer side of the degraded tier anyone may see; None: inherited


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """A table-of-contents entry: pages (0-based indexes) and sub-ranges, in order."""

    label: LanguageMap
    members: tuple[int | RangeSpec, ...]
    behavior: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Description:
    """What is shared by objects and collections (``COLLECTION_FIELDS``)."""

    source: str  # where it came from, for messages: ``book.yaml``, ``catalogue.csv row 4``
    label: LanguageMap = ()
    summary: LanguageMap = ()
    metadata: tuple[MetadataEntry, ...] = ()
    rights: str = ""
    required_statement: MetadataEntry | None = None
    provider: tuple[Agent, ...] = ()
    homepage: tuple[Link, ...] = ()
    see_also: tuple[Link, ...] = ()
    # Access rule (docs/access.md): "" and None inherit the folder's (``_collection.yaml``) default.
    access: str = ""
    degraded_max: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectDescription(Description):
    # Empty ``pages``: the images of the folder named like the object, in natural order.
    pages: tuple[Page, ...] = ()
    ranges: tuple[RangeSpec, ...] = ()
    nav_date: str = ""
    behavior: tuple[str, ...] = ()
    viewing_direction: str = ""
    thumbnail: int | None = None  # page index; None: the first page
    thumbnail_image: str = ""  # an image that is not a page
    collection: str | None = None  # explicit collection path ("" is the top collection)
