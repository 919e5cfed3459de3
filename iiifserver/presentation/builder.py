"""Descriptions + image facts -> Presentation 3.0 Manifests and Collections (iiif-prezi3).

Owns: the shape of the documents: ids under the public base URL, canvases sized from the image
sources, painting annotations whose body is the full image with its ImageService3 (level 2,
``sizes`` embedded) listed first and an ImageService2 after it for older viewers, thumbnails
with their service, ranges, providers, and the paging of large collections.
This is the only module that imports iiif_prezi3. Must not know: files, HTTP, pyvips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from iiif_prezi3 import (
    Annotation,
    AnnotationBody,
    AnnotationPage,
    Canvas,
    CanvasRef,
    Collection,
    CollectionRef,
    Homepage,
    KeyValueString,
    Manifest,
    ManifestRef,
    Provider,
    Range,
    ServiceV2,
    ServiceV3,
)

from iiifserver.image.request import encode_identifier
from iiifserver.presentation.description import folder_label
from iiifserver.presentation.html_subset import plain_text
from iiifserver.presentation.model import (
    Agent,
    Description,
    LanguageMap,
    Link,
    MetadataEntry,
    ObjectDescription,
    RangeSpec,
)

PRESENTATION_PREFIX = "/iiif/presentation/3"
IMAGE_PREFIX = "/iiif/3"
IMAGE_PREFIX_2 = "/iiif/2"
CONTEXT = "http://iiif.io/api/presentation/3/context.json"
MEDIA_TYPE = f'application/ld+json;profile="{CONTEXT}"'
THUMBNAIL_EDGE = 400  # the smallest advertised size whose longer side reaches this is the thumbnail
BUILDER_VERSION = "1"  # part of every document key: bump when the output shape changes


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What a canvas needs of one image: its size, and the sizes cheap to serve."""

    identifier: str
    width: int
    height: int
    sizes: tuple[tuple[int, int], ...]  # smallest first
    max_size: tuple[int, int]  # what ``full/max`` returns under the server's limits


# -- URLs --------------------------------------------------------------------------------------


def object_path(object_id: str) -> str:
    return "/".join(quote(segment, safe="") for segment in object_id.split("/"))


def manifest_url(base: str, object_id: str) -> str:
    return f"{base}{PRESENTATION_PREFIX}/{object_path(object_id)}/manifest"


def collection_url(base: str, path: str, page: int = 0) -> str:
    url = f"{base}{PRESENTATION_PREFIX}/collection" + (f"/{object_path(path)}" if path else "")
    return f"{url}?page={page}" if page else url


def image_service_url(base: str, identifier: str, *, version: int = 3) -> str:
    prefix = IMAGE_PREFIX if version == 3 else IMAGE_PREFIX_2
    return f"{base}{prefix}/{encode_identifier(identifier)}"


# -- manifests ---------------------------------------------------------------------------------


def build_manifest(
    base: str, object_id: str, description: ObjectDescription, images: Mapping[str, ImageFacts]
) -> dict[str, Any]:
    """The Manifest of one object, as a JSON-ready dict. ``images`` covers every page (and thumbnail)."""
    root = f"{base}{PRESENTATION_PREFIX}/{object_path(object_id)}"
    canvases = []
    canvas_ids = []
    for number, page in enumerate(description.pages, start=1):
        facts = images[page.image]
        canvas_id = f"{root}/canvas/{number}"
        canvas_ids.append(canvas_id)
        body = AnnotationBody(
            id=f"{image_service_url(base, facts.identifier)}/full/max/0/default.jpg",
            type="Image",
            format="image/jpeg",
            width=facts.max_size[0],
            height=facts.max_size[1],
            service=_services(base, facts),
        )
        annotation = Annotation(id=f"{canvas_id}/annotation", motivation="painting", body=body, target=canvas_id)
        canvas: dict[str, Any] = {
            "id": canvas_id,
            "label": _lang(page.label) or {"none": [str(number)]},
            "width": facts.width,
            "height": facts.height,
            "items": [AnnotationPage(id=f"{canvas_id}/page", items=[annotation])],
            "thumbnail": [_thumbnail(base, facts)],
        }
        if page.summary:
            canvas["summary"] = _lang(page.summary)
        if page.behavior:
            canvas["behavior"] = list(page.behavior)
        canvases.append(Canvas(**canvas))

    fields = _common(description, base)
    fields["label"] = fields.get("label") or {"none": [plain_text(object_id.rpartition("/")[2])]}
    thumbnail_image = description.thumbnail_image or description.pages[description.thumbnail or 0].image
    fields["thumbnail"] = [_thumbnail(base, images[thumbnail_image])]
    if description.nav_date:
        fields["navDate"] = description.nav_date
    if description.behavior:
        fields["behavior"] = list(description.behavior)
    if description.viewing_direction:
        fields["viewingDirection"] = description.viewing_direction
    if description.ranges:
        fields["structures"] = [
            _range(f"{root}/range", str(i), spec, canvas_ids) for i, spec in enumerate(description.ranges, start=1)
        ]
    manifest = Manifest(id=f"{root}/manifest", items=canvases, **fields)
    return _json(manifest)


def _services(base: str, facts: ImageFacts) -> list[Any]:
    v3 = ServiceV3(
        id=image_service_url(base, facts.identifier),
        type="ImageService3",
        profile="level2",
        sizes=[{"width": w, "height": h} for w, h in facts.sizes],
    )
    v2 = ServiceV2(
        id=image_service_url(base, facts.identifier, version=2),
        type="ImageService2",
        profile="http://iiif.io/api/image/2/level2.json",
    )
    return [v3, v2]


def _thumbnail(base: str, facts: ImageFacts) -> dict[str, Any]:
    w, h = next((size for size in facts.sizes if max(size) >= THUMBNAIL_EDGE), facts.sizes[-1])
    service = image_service_url(base, facts.identifier)
    return {
        "id": f"{service}/full/{w},{h}/0/default.jpg",
        "type": "Image",
        "format": "image/jpeg",
        "width": w,
        "height": h,
        "service": [{"id": service, "type": "ImageService3", "profile": "level2"}],
    }


def _range(prefix: str, number: str, spec: RangeSpec, canvas_ids: Sequence[str]) -> Range:
    items: list[Any] = []
    sub = 0
    for member in spec.members:
        if isinstance(member, int):
            items.append(CanvasRef(id=canvas_ids[member], type="Canvas"))
        else:
            sub += 1
            items.append(_range(prefix, f"{number}-{sub}", member, canvas_ids))
    fields: dict[str, Any] = {"id": f"{prefix}/{number}", "label": _lang(spec.label), "items": items}
    if spec.behavior:
        fields["behavior"] = list(spec.behavior)
    return Range(**fields)


# -- collections -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One item of a collection: a manifest or a sub-collection, with its label and thumbnail."""

    kind: str  # "Manifest" or "Collection"
    id: str  # object id or collection path
    label: LanguageMap
    thumbnail: ImageFacts | None
    base: str = ""  # its own base URL (an institution's public_url), else the collection's


def build_collection(
    base: str,
    path: str,
    description: Description | None,
    members: Sequence[Member],
    *,
    page_size: int,
    page: int = 0,
    services: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A collection; beyond ``page_size`` members, a collection of pages (``?page=N``) instead.

    Presentation 3.0 has no paging of its own for collections, so a large one is split into
    sub-collections each listing at most ``page_size`` members, which every viewer can browse.
    ``services`` go in its ``service`` property as they are (the top collection's link to the
    Change Discovery log).
    """
    document = _collection(base, path, description, members, page_size=page_size, page=page)
    if services:
        document["service"] = [dict(service) for service in services]
    return document


def _collection(
    base: str,
    path: str,
    description: Description | None,
    members: Sequence[Member],
    *,
    page_size: int,
    page: int,
) -> dict[str, Any]:
    fields = _common(description, base) if description is not None else {}
    name = path.rpartition("/")[2]
    fields["label"] = fields.get("label") or (
        {"none": [plain_text(folder_label(name))]}
        if path
        else {"en": ["Collections"], "fr": ["Collections"], "nl": ["Collecties"]}
    )
    whole = collection_url(base, path)
    if page == 0 and len(members) > page_size:
        items: list[Any] = []
        for number, start in enumerate(range(0, len(members), page_size), start=1):
            last = min(start + page_size, len(members))
            items.append(
                CollectionRef(
                    id=collection_url(base, path, number),
                    type="Collection",
                    label={"none": [f"{start + 1}–{last}"]},
                )
            )
        return _json(Collection(id=whole, items=items, **fields))
    if page:
        chosen = members[(page - 1) * page_size : page * page_size]
        fields["partOf"] = [{"id": whole, "type": "Collection"}]
        fields["label"] = {
            lang: [f"{text} ({(page - 1) * page_size + 1}–{(page - 1) * page_size + len(chosen)})" for text in texts]
            for lang, texts in fields["label"].items()
        }
    else:
        chosen = list(members)
    items = []
    for member in chosen:
        own = member.base or base
        tail = member.id.rpartition("/")[2]
        # A sub-collection without a label has the label of its own document (the folder's name).
        fallback = folder_label(tail) if member.kind == "Collection" else tail
        ref: dict[str, Any] = {"label": _lang(member.label) or {"none": [plain_text(fallback)]}}
        if member.thumbnail is not None:
            ref["thumbnail"] = [_thumbnail(own, member.thumbnail)]
        if member.kind == "Manifest":
            items.append(ManifestRef(id=manifest_url(own, member.id), type="Manifest", **ref))
        else:
            items.append(CollectionRef(id=collection_url(own, member.id), type="Collection", **ref))
    return _json(Collection(id=collection_url(base, path, page), items=items, **fields))


# -- shared ------------------------------------------------------------------------------------


def _common(description: Description, base: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if description.label:
        fields["label"] = _lang(description.label)
    if description.summary:
        fields["summary"] = _lang(description.summary)
    if description.metadata:
        fields["metadata"] = [_pair(entry) for entry in description.metadata]
    if description.required_statement is not None:
        fields["requiredStatement"] = _pair(description.required_statement)
    if description.rights:
        fields["rights"] = description.rights
    if description.provider:
        fields["provider"] = [_agent(agent, base) for agent in description.provider]
    if description.homepage:
        # A homepage MUST have a label: the object's own, when the description gives none.
        fields["homepage"] = [
            _link(link) | {"label": _lang(link.label or description.label or (("none", ("Homepage",)),))}
            for link in description.homepage
        ]
    if description.see_also:
        fields["seeAlso"] = [_link(link) for link in description.see_also]
    return fields


def _lang(value: LanguageMap) -> dict[str, list[str]]:
    return {language: list(texts) for language, texts in value}


def _pair(entry: MetadataEntry) -> KeyValueString:
    return KeyValueString(label=_lang(entry.label), value=_lang(entry.value))


def _link(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {"id": link.id, "type": link.type}
    if link.label:
        out["label"] = _lang(link.label)
    if link.format:
        out["format"] = link.format
    if link.profile:
        out["profile"] = link.profile
    if link.language:
        out["language"] = list(link.language)
    return out


def _agent(agent: Agent, base: str) -> Provider:
    fields: dict[str, Any] = {"id": agent.id, "type": "Agent", "label": _lang(agent.label)}
    if agent.homepage:
        fields["homepage"] = [
            Homepage(**_link(link) | {"label": _lang(link.label or agent.label)}) for link in agent.homepage
        ]
    if agent.logo:
        # A logo given as "/iiif/3/..." is on this server.
        fields["logo"] = [
            _link(link) | {"id": base + link.id if link.id.startswith("/") else link.id} for link in agent.logo
        ]
    if agent.see_also:
        fields["seeAlso"] = [_link(link) for link in agent.see_also]
    return Provider(**fields)


def _json(resource: Any) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(resource.jsonld())
    return document
