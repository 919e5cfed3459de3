"""Object descriptions: the format of one ``manifests/`` entry and its parser.

Owns: the description format (field names, value shapes, what is required) and every check
that needs no filesystem: language maps (with the HTML rule of each property applied through
``html_subset``), rights URIs, behaviours, page and range references.
``parse_object`` and ``parse_collection`` turn the mapping read from YAML, JSON or a CSV row
group into the frozen values of ``model`` or raise ``DescriptionError`` naming the field and
the reason. Also the naming rules the catalogue shares: object ids, natural order, folder labels.
Must not know: files, images, HTTP, iiif_prezi3.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from iiifserver.errors import IIIFError
from iiifserver.presentation.html_subset import plain_text, rich_text
from iiifserver.presentation.model import (
    Agent,
    Description,
    LanguageMap,
    Link,
    MetadataEntry,
    ObjectDescription,
    Page,
    RangeSpec,
)

MANIFEST_BEHAVIORS = frozenset(
    {"auto-advance", "no-auto-advance", "repeat", "no-repeat", "unordered", "individuals", "continuous", "paged"}
)
CANVAS_BEHAVIORS = frozenset({"facing-pages", "non-paged", "auto-advance", "no-auto-advance"})
RANGE_BEHAVIORS = frozenset(
    {
        "sequence",
        "thumbnail-nav",
        "no-nav",
        "auto-advance",
        "no-auto-advance",
        "unordered",
        "individuals",
        "continuous",
        "paged",
    }
)
MAX_SPAN_PAGES = 100_000  # a typo such as "1-10000000000" must not expand into a huge list
VIEWING_DIRECTIONS = frozenset({"left-to-right", "right-to-left", "top-to-bottom", "bottom-to-top"})

# Presentation 3.0 section 3.3.2: rights MUST be a Creative Commons licence or a
# RightsStatements.org statement (or one listed in the extensions registry, which we do not track).
_RIGHTS = (
    re.compile(r"http://creativecommons\.org/(?:licenses|publicdomain)/[a-z0-9.+-]+(?:/[0-9.]+)?(?:/[a-z]{2,})?/"),
    re.compile(r"http://rightsstatements\.org/vocab/[A-Za-z-]+/1\.0/"),
)
_LANGUAGE = re.compile(r"none|[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*", re.ASCII)
_SEGMENT = re.compile(r"[^\x00-\x20/\\\x7f?#%]+")

# What an object and a collection both describe; an object adds its pages, ranges and layout.
COLLECTION_FIELDS = frozenset(
    {
        "label",
        "summary",
        "metadata",
        "rights",
        "requiredStatement",
        "provider",
        "homepage",
        "seeAlso",
        "access",
        "degraded_max",
    }
)
OBJECT_FIELDS = COLLECTION_FIELDS | {
    "navDate",
    "behavior",
    "viewingDirection",
    "pages",
    "ranges",
    "thumbnail",
    "collection",
}
PAGE_FIELDS = frozenset({"image", "label", "summary", "behavior", "access", "degraded_max"})
ACCESS_VALUES = frozenset({"open", "restricted"})
RANGE_FIELDS = frozenset({"label", "pages", "ranges", "behavior"})


class DescriptionError(IIIFError):
    """A description that cannot be published: names its file, the field and the reason."""

    status = 500

    def __init__(self, source: str, field: str, reason: str) -> None:
        where = f"{source}: field {field!r}" if field else source
        super().__init__(f"bad object description {where}: {reason}")
        self.source = source
        self.field = field
        self.reason = reason


# -- entry points ------------------------------------------------------------------------------


def lists_pages(data: Any) -> bool:
    """Whether a raw description names its pages (else they are its folder's images)."""
    return isinstance(data, Mapping) and data.get("pages") not in (None, [], "")


def parse_object(data: Any, source: str, folder_images: Sequence[str] = ()) -> ObjectDescription:
    """A mapping (as read from YAML/JSON/CSV) -> ``ObjectDescription``; ``DescriptionError`` otherwise.

    A description without ``pages`` gets ``folder_images`` (the images of the folder named like
    the object, in natural order, or the image named like it); its ranges and thumbnail then
    refer to those.
    """
    p = _Parser(source)
    mapping = p.mapping(data, "")
    p.known_fields(mapping, OBJECT_FIELDS, "")
    common = p.common(mapping)
    if lists_pages(mapping):
        pages = tuple(p.page(item, f"pages[{i}]") for i, item in enumerate(p.sequence(mapping["pages"], "pages")))
    else:
        pages = tuple(
            Page(image, label=(("none", (plain_text(folder_label(image.rpartition("/")[2])),)),))
            for image in folder_images
        )
    if not pages:
        raise p.fail("pages", "the object has no images (list them under pages, or put them in its folder)")
    ranges = tuple(
        p.range_spec(item, f"ranges[{i}]", pages) for i, item in enumerate(p.sequence(mapping.get("ranges"), "ranges"))
    )
    thumbnail, thumbnail_image = p.thumbnail(mapping.get("thumbnail"), pages)
    collection = mapping.get("collection")
    if collection is not None:
        collection = p.collection_path(collection, "collection")
    return ObjectDescription(
        **common,
        pages=pages,
        ranges=ranges,
        nav_date=p.nav_date(mapping.get("navDate")),
        behavior=p.behaviors(mapping.get("behavior"), "behavior", MANIFEST_BEHAVIORS),
        viewing_direction=p.choice(mapping.get("viewingDirection"), "viewingDirection", VIEWING_DIRECTIONS),
        thumbnail=thumbnail,
        thumbnail_image=thumbnail_image,
        collection=collection,
    )


def parse_collection(data: Any, source: str) -> Description:
    """A collection's own description (``_collection.yaml``): labels and rights, no pages."""
    p = _Parser(source)
    mapping = p.mapping(data, "")
    p.known_fields(mapping, COLLECTION_FIELDS, "")
    return Description(**p.common(mapping))


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """``page-2`` before ``page-10``; case-insensitive otherwise."""
    # ASCII digits only: "²" or "①" pass isdigit() but int() refuses them.
    return tuple(
        (0, int(part)) if part.isascii() and part.isdigit() else (1, part.casefold())
        for part in re.split(r"([0-9]+)", text)
    )


def folder_label(name: str) -> str:
    """``book_of-hours`` -> ``Book of hours``: separators become spaces; all-lowercase gets a capital."""
    text = re.sub(r"[\s_\-]+", " ", name).strip() or name
    if not text:
        return name
    return text[0].upper() + text[1:] if text.islower() else text


def language_map(value: Any, source: str, field_name: str, *, html: bool = False) -> LanguageMap:
    return _Parser(source).language_map(value, field_name, html=html)


def is_rights_uri(uri: str) -> bool:
    return any(pattern.fullmatch(uri) for pattern in _RIGHTS)


def check_object_id(object_id: str, source: str) -> str:
    """Object ids become URL path segments: printable, no empty/dot segments, no reserved characters."""
    segments = object_id.split("/")
    if not object_id or any(s in (".", "..") or not _SEGMENT.fullmatch(s) for s in segments):
        raise DescriptionError(
            source, "", f"{object_id!r} is not a usable object id (use letters, digits, '-', '_', '.', and '/')"
        )
    return object_id


# -- the parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field_name: str, reason: str) -> DescriptionError:
        return DescriptionError(self.source, field_name, reason)

    # shapes

    def mapping(self, value: Any, field_name: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(field_name, f"expected a mapping of fields, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(field_name, f"field names must be text, got {key!r}")
        return value

    def sequence(self, value: Any, field_name: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        raise self.fail(field_name, f"expected a list, got {_kind(value)}")

    def one_or_many(self, value: Any) -> list[Any]:
        if value is None:
            return []
        return list(value) if isinstance(value, list | tuple) else [value]

    def known_fields(self, mapping: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                path = f"{where}.{key}" if where else key
                raise self.fail(path, f"unknown field (known: {', '.join(sorted(allowed))})")

    def text(self, value: Any, field_name: str, *, required: bool = False) -> str:
        if value is None or value == "":
            if required:
                raise self.fail(field_name, "is required")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(field_name, f"expected text, got {_kind(value)}")
        return str(value).strip()

    def url(self, value: Any, field_name: str, *, relative: bool = False) -> str:
        text = self.text(value, field_name, required=True)
        if relative and text.startswith("/") and not text.startswith("//") and not any(c.isspace() for c in text):
            return text  # on this server: the public base URL is put in front when building
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
            raise self.fail(field_name, f"{text!r} is not an http(s) URL")
        return text

    # IIIF values

    def language_map(self, value: Any, field_name: str, *, required: bool = False, html: bool = False) -> LanguageMap:
        """``"text"`` or ``["a", "b"]`` (language "none") or ``{fr: "…", en: ["…"]}``.

        Values are made safe here, once: ``html`` properties (summary, the value of a metadata or
        requiredStatement pair) keep the allowed HTML subset, all others are plain text
        (Presentation 3.0, "HTML Markup in Property Values"; see ``html_subset``).
        """
        clean = rich_text if html else plain_text
        if value is None or value == "" or value == {} or value == []:
            if required:
                raise self.fail(field_name, "is required")
            return ()
        if not isinstance(value, Mapping):
            value = {"none": value}
        out = []
        for language, texts in value.items():
            if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
                raise self.fail(field_name, f"{language!r} is not a language tag (BCP 47, e.g. fr, en, nl, or none)")
            items = [clean(self.text(t, f"{field_name}.{language}")).strip() for t in self.one_or_many(texts)]
            items = [t for t in items if t]
            if items:
                out.append((language, tuple(items)))
        if not out and required:
            raise self.fail(field_name, "is required")
        return tuple(out)

    def common(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        rights = self.text(mapping.get("rights"), "rights")
        if rights and not is_rights_uri(rights):
            raise self.fail(
                "rights",
                f"{rights!r} is not a Creative Commons licence or RightsStatements.org URI "
                "(e.g. http://creativecommons.org/licenses/by/4.0/ or http://rightsstatements.org/vocab/InC/1.0/; "
                "note the http scheme and the trailing slash)",
            )
        statement = mapping.get("requiredStatement")
        return {
            "source": self.source,
            "label": self.language_map(mapping.get("label"), "label"),
            "summary": self.language_map(mapping.get("summary"), "summary", html=True),
            "metadata": tuple(
                self.pair(item, f"metadata[{i}]")
                for i, item in enumerate(self.sequence(mapping.get("metadata"), "metadata"))
            ),
            "rights": rights,
            "required_statement": None if statement is None else self.pair(statement, "requiredStatement"),
            "provider": tuple(
                self.agent(item, f"provider[{i}]") for i, item in enumerate(self.one_or_many(mapping.get("provider")))
            ),
            "homepage": self.links(mapping.get("homepage"), "homepage", "Text", "text/html"),
            "see_also": self.links(mapping.get("seeAlso"), "seeAlso", "Dataset", ""),
            **self.access_rule(mapping, ""),
        }

    def access_rule(self, mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``access`` and ``degraded_max`` (docs/access.md); absent: inherited."""
        prefix = f"{where}." if where else ""
        access = self.choice(mapping.get("access"), f"{prefix}access", ACCESS_VALUES)
        value = mapping.get("degraded_max")
        degraded_max: int | None = None
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
                raise self.fail(f"{prefix}degraded_max", "expected a whole number of pixels from 1 to 100000")
            degraded_max = value
        return {"access": access, "degraded_max": degraded_max}

    def pair(self, value: Any, field_name: str) -> MetadataEntry:
        mapping = self.mapping(value, field_name)
        self.known_fields(mapping, frozenset({"label", "value"}), field_name)
        return MetadataEntry(
            self.language_map(mapping.get("label"), f"{field_name}.label", required=True),
            self.language_map(mapping.get("value"), f"{field_name}.value", required=True, html=True),
        )

    def links(
        self, value: Any, field_name: str, default_type: str, default_format: str, *, relative: bool = False
    ) -> tuple[Link, ...]:
        out = []
        for i, item in enumerate(self.one_or_many(value)):
            where = f"{field_name}[{i}]"
            if isinstance(item, str):
                item = {"id": item}
            mapping = self.mapping(item, where)
            self.known_fields(mapping, frozenset({"id", "type", "label", "format", "profile", "language"}), where)
            out.append(
                Link(
                    id=self.url(mapping.get("id"), f"{where}.id", relative=relative),
                    type=self.text(mapping.get("type"), f"{where}.type") or default_type,
                    label=self.language_map(mapping.get("label"), f"{where}.label"),
                    format=self.text(mapping.get("format"), f"{where}.format") or default_format,
                    profile=self.text(mapping.get("profile"), f"{where}.profile"),
                    language=tuple(
                        self.text(x, f"{where}.language") for x in self.one_or_many(mapping.get("language"))
                    ),
                )
            )
        return tuple(out)

    def agent(self, value: Any, field_name: str) -> Agent:
        mapping = self.mapping(value, field_name)
        self.known_fields(mapping, frozenset({"id", "label", "homepage", "logo", "seeAlso"}), field_name)
        homepage = self.links(mapping.get("homepage"), f"{field_name}.homepage", "Text", "text/html")
        logo = tuple(
            Link(link.id, "Image", link.label, link.format or _image_format(link.id))
            for link in self.links(mapping.get("logo"), f"{field_name}.logo", "Image", "", relative=True)
        )
        if mapping.get("id") is not None:
            agent_id = self.url(mapping.get("id"), f"{field_name}.id")
        elif homepage:
            agent_id = homepage[0].id  # the institution's site identifies it well enough
        else:
            raise self.fail(f"{field_name}.id", "is required (or give a homepage)")
        return Agent(
            id=agent_id,
            label=self.language_map(mapping.get("label"), f"{field_name}.label", required=True),
            homepage=homepage,
            logo=logo,
            see_also=self.links(mapping.get("seeAlso"), f"{field_name}.seeAlso", "Dataset", ""),
        )

    def page(self, value: Any, field_name: str) -> Page:
        if isinstance(value, str):
            value = {"image": value}
        mapping = self.mapping(value, field_name)
        self.known_fields(mapping, PAGE_FIELDS, field_name)
        return Page(
            image=self.image_id(mapping.get("image"), f"{field_name}.image"),
            label=self.language_map(mapping.get("label"), f"{field_name}.label"),
            summary=self.language_map(mapping.get("summary"), f"{field_name}.summary", html=True),
            behavior=self.behaviors(mapping.get("behavior"), f"{field_name}.behavior", CANVAS_BEHAVIORS),
            **self.access_rule(mapping, field_name),
        )

    def page_index(self, value: Any, field_name: str, pages: Sequence[Page]) -> int:
        """A page by number (1-based, as printed) or by image identifier."""
        if isinstance(value, bool):
            raise self.fail(field_name, f"expected a page number or image, got {value!r}")
        if isinstance(value, int):
            if not 1 <= value <= len(pages):
                raise self.fail(field_name, f"page {value} does not exist (the object has {len(pages)} pages)")
            return value - 1
        if isinstance(value, str):
            for index, page in enumerate(pages):
                if page.image == value:
                    return index
            raise self.fail(field_name, f"{value!r} is not one of the object's pages")
        raise self.fail(field_name, f"expected a page number or image, got {_kind(value)}")

    def range_spec(self, value: Any, field_name: str, pages: Sequence[Page], depth: int = 0) -> RangeSpec:
        if depth > 20:
            raise self.fail(field_name, "ranges nest more than 20 deep")
        mapping = self.mapping(value, field_name)
        self.known_fields(mapping, RANGE_FIELDS, field_name)
        members: list[int | RangeSpec] = []
        for i, item in enumerate(self.page_list(mapping.get("pages"), f"{field_name}.pages")):
            members.append(self.page_index(item, f"{field_name}.pages[{i}]", pages))
        for i, item in enumerate(self.sequence(mapping.get("ranges"), f"{field_name}.ranges")):
            members.append(self.range_spec(item, f"{field_name}.ranges[{i}]", pages, depth + 1))
        if not members:
            raise self.fail(field_name, "a range needs pages or ranges")
        return RangeSpec(
            label=self.language_map(mapping.get("label"), f"{field_name}.label", required=True),
            members=tuple(members),
            behavior=self.behaviors(mapping.get("behavior"), f"{field_name}.behavior", RANGE_BEHAVIORS),
        )

    def page_list(self, value: Any, field_name: str) -> list[Any]:
        """A list of pages, or ``"3-7"`` / ``"1, 4-5"`` page-number spans."""
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*(?:-\s*\d+\s*)?(?:,\s*\d+\s*(?:-\s*\d+\s*)?)*", value):
            out: list[Any] = []
            for part in value.split(","):
                first, _, last = part.partition("-")
                start, stop = int(first), int(last or first)
                if stop < start:
                    raise self.fail(field_name, f"span {part.strip()!r} runs backwards")
                if stop - start + len(out) > MAX_SPAN_PAGES:
                    raise self.fail(field_name, f"span {part.strip()!r} is longer than any object")
                out.extend(range(start, stop + 1))
            return out
        return self.sequence(value, field_name)

    def thumbnail(self, value: Any, pages: Sequence[Page]) -> tuple[int | None, str]:
        if value is None:
            return None, ""
        if isinstance(value, Mapping):
            mapping = self.mapping(value, "thumbnail")
            self.known_fields(mapping, frozenset({"page", "image"}), "thumbnail")
            if "image" in mapping:
                return None, self.image_id(mapping["image"], "thumbnail.image")
            value = mapping.get("page")
        if isinstance(value, str) and not any(p.image == value for p in pages):
            return None, self.image_id(value, "thumbnail")  # an image that is not one of the pages
        return self.page_index(value, "thumbnail", pages), ""

    def image_id(self, value: Any, field_name: str) -> str:
        image = self.text(value, field_name, required=True)
        if any(seg in ("", ".", "..") for seg in image.split("/")) or "\x00" in image:
            raise self.fail(field_name, f"{image!r} is not an image identifier")
        return image

    def behaviors(self, value: Any, field_name: str, allowed: frozenset[str]) -> tuple[str, ...]:
        out = []
        for item in self.one_or_many(None if value == "" else value):
            text = self.text(item, field_name)
            if text not in allowed:
                raise self.fail(field_name, f"{text!r} is not one of {', '.join(sorted(allowed))}")
            out.append(text)
        return tuple(out)

    def choice(self, value: Any, field_name: str, allowed: frozenset[str]) -> str:
        text = self.text(value, field_name)
        if text and text not in allowed:
            raise self.fail(field_name, f"{text!r} is not one of {', '.join(sorted(allowed))}")
        return text

    def nav_date(self, value: Any) -> str:
        """A year, a date or a date-time -> ``xsd:dateTime`` in UTC, as Presentation 3.0 requires."""
        if value is None or value == "":
            return ""
        if isinstance(value, dt.datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        elif isinstance(value, dt.date):
            moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        elif isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 9999:
            moment = dt.datetime(value, 1, 1, tzinfo=dt.UTC)
        elif isinstance(value, str):
            text = value.strip()
            try:
                if re.fullmatch(r"\d{4}", text):
                    moment = dt.datetime(int(text), 1, 1, tzinfo=dt.UTC)
                elif re.fullmatch(r"\d{4}-\d{2}", text):
                    moment = dt.datetime(int(text[:4]), int(text[5:]), 1, tzinfo=dt.UTC)
                else:
                    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                    if moment.tzinfo is None:
                        moment = moment.replace(tzinfo=dt.UTC)
            except (ValueError, OverflowError):
                raise self.fail(
                    "navDate", f"{text!r} is not a date (use YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)"
                ) from None
        else:
            raise self.fail("navDate", f"expected a date, got {_kind(value)}")
        try:
            utc = moment.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise self.fail("navDate", f"{value!r} is out of range once converted to UTC") from None
        # Formatted by hand: strftime("%Y") does not pad years before 1000 on Linux.
        return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"

    def collection_path(self, value: Any, field_name: str) -> str:
        text = self.text(value, field_name).strip("/")
        if text:
            try:
                check_object_id(text, self.source)
            except DescriptionError:
                raise self.fail(field_name, f"{text!r} is not a collection path") from None
        return text


_LOGO_FORMATS = ((".png", "image/png"), (".jpg", "image/jpeg"), (".jpeg", "image/jpeg"), (".svg", "image/svg+xml"))


def _image_format(url: str) -> str:
    path = urlsplit(url).path.lower()
    for ext, media in _LOGO_FORMATS:
        if path.endswith(ext):
            return media
    return "image/jpeg" if "/iiif/" in path else ""


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"[:80]
