"""Tests for iiifserver.presentation.builder through the service: canvas sizes from the sources,
the painting body and its services, thumbnails, ranges, providers, every description feature in
the output, collection paging, and every document valid against the Presentation 3.0 schema."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from iiifserver.errors import ServiceUnavailable
from iiifserver.image import probe as probe_module
from iiifserver.image.source_registry import SourceRegistry
from tests.presentation.conftest import make_image, schema_errors, write
from tests.web.conftest import Http

P = "/iiif/presentation/3"

RICH = """
label: {fr: Tableau, en: Painting, nl: Schilderij}
summary: {fr: Un résumé, en: A summary}
metadata:
  - label: {fr: Auteur, en: Creator, nl: Maker}
    value: Anonyme
  - label: {en: Date}
    value: {fr: vers 1890, en: circa 1890}
rights: http://rightsstatements.org/vocab/InC/1.0/
requiredStatement:
  label: {en: Attribution, fr: Attribution}
  value: {fr: Musée X, en: X Museum}
provider:
  - label: {fr: Musée X, en: X Museum}
    homepage: https://museum.example.org/
    logo: /iiif/3/_assets%2Flogo/full/100,/0/default.png
    seeAlso: {id: https://museum.example.org/about.json, format: application/json}
  - id: https://partner.example.org/
    label: Partner
    logo: https://partner.example.org/logo.png
homepage: https://museum.example.org/objects/1
seeAlso:
  - {id: https://museum.example.org/objects/1.xml, format: text/xml, profile: http://www.lido-schema.org/}
navDate: 1890-05-01
behavior: [paged]
viewingDirection: right-to-left
thumbnail: 2
pages:
  - {image: big, label: {fr: Recto, en: Front}, summary: Front side, behavior: non-paged}
  - {image: small, label: Back}
ranges:
  - label: {en: All}
    pages: [1]
    ranges:
      - {label: {en: Inner}, pages: "2", behavior: no-nav}
"""


def _get(http: Http, path: str, **kwargs: Any) -> Any:
    response = http.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_manifest_carries_every_description_feature(
    tree: tuple[Path, Path], client: Callable[..., Http], schema_validator: jsonschema.Draft7Validator
) -> None:
    images, manifests = tree
    make_image(images / "big.tif", 1200, 900)
    make_image(images / "small.tif", 300, 500)
    write(manifests / "rich.yaml", RICH)
    http = client(images, manifests, public_url="https://iiif.example.org")
    m = _get(http, f"{P}/rich/manifest")
    assert schema_errors(schema_validator, m) == []
    root = "https://iiif.example.org/iiif/presentation/3/rich"
    assert m["@context"] == "http://iiif.io/api/presentation/3/context.json"
    assert m["id"] == f"{root}/manifest"
    assert m["type"] == "Manifest"
    assert m["label"] == {"fr": ["Tableau"], "en": ["Painting"], "nl": ["Schilderij"]}
    assert m["summary"] == {"fr": ["Un résumé"], "en": ["A summary"]}
    assert m["metadata"] == [
        {"label": {"fr": ["Auteur"], "en": ["Creator"], "nl": ["Maker"]}, "value": {"none": ["Anonyme"]}},
        {"label": {"en": ["Date"]}, "value": {"fr": ["vers 1890"], "en": ["circa 1890"]}},
    ]
    assert m["rights"] == "http://rightsstatements.org/vocab/InC/1.0/"
    assert m["requiredStatement"]["value"] == {"fr": ["Musée X"], "en": ["X Museum"]}
    museum, partner = m["provider"]
    assert museum["id"] == "https://museum.example.org/"
    assert museum["type"] == "Agent"
    assert museum["homepage"][0] == {
        "id": "https://museum.example.org/",
        "type": "Text",
        "label": {"fr": ["Musée X"], "en": ["X Museum"]},
        "format": "text/html",
    }
    assert museum["logo"][0]["id"] == "https://iiif.example.org/iiif/3/_assets%2Flogo/full/100,/0/default.png"
    assert museum["logo"][0]["type"] == "Image"
    assert museum["seeAlso"][0]["type"] == "Dataset"
    assert partner["logo"][0] == {"id": "https://partner.example.org/logo.png", "type": "Image", "format": "image/png"}
    assert m["homepage"][0]["id"] == "https://museum.example.org/objects/1"
    assert m["homepage"][0]["label"] == m["label"]  # a homepage needs a label: the object's
    assert m["seeAlso"][0]["profile"] == "http://www.lido-schema.org/"
    assert m["navDate"] == "1890-05-01T00:00:00Z"
    assert m["behavior"] == ["paged"]
    assert m["viewingDirection"] == "right-to-left"

    first, second = m["items"]
    assert first["id"] == f"{root}/canvas/1"
    assert (first["width"], first["height"]) == (1200, 900)
    assert (second["width"], second["height"]) == (300, 500)
    assert first["label"] == {"fr": ["Recto"], "en": ["Front"]}
    assert first["summary"] == {"none": ["Front side"]}
    assert first["behavior"] == ["non-paged"]
    assert second["label"] == {"none": ["Back"]}

    page = first["items"][0]
    assert page["type"] == "AnnotationPage"
    assert page["id"] == f"{root}/canvas/1/page"
    annotation = page["items"][0]
    assert annotation["motivation"] == "painting"
    assert annotation["target"] == first["id"]
    body = annotation["body"]
    service = "https://iiif.example.org/iiif/3/big"
    assert body["id"] == f"{service}/full/max/0/default.jpg"
    assert (body["type"], body["format"], body["width"], body["height"]) == ("Image", "image/jpeg", 1200, 900)
    v3, v2 = body["service"]
    assert v3["id"] == service
    assert v3["type"] == "ImageService3"
    assert v3["profile"] == "level2"
    assert v3["sizes"][-1] == {"width": 1200, "height": 900}
    assert all(s["width"] <= 1200 for s in v3["sizes"])
    assert v2 == {
        "@id": "https://iiif.example.org/iiif/2/big",
        "@type": "ImageService2",
        "profile": "http://iiif.io/api/image/2/level2.json",
    }

    # thumbnail: 2 -> the second page; a size the server advertises, with its service.
    thumb = m["thumbnail"][0]
    small_sizes = [(s["width"], s["height"]) for s in second["items"][0]["items"][0]["body"]["service"][0]["sizes"]]
    assert (thumb["width"], thumb["height"]) in small_sizes
    assert thumb["id"] == f"https://iiif.example.org/iiif/3/small/full/{thumb['width']},{thumb['height']}/0/default.jpg"
    assert thumb["service"] == [
        {"id": "https://iiif.example.org/iiif/3/small", "type": "ImageService3", "profile": "level2"}
    ]

    (outer,) = m["structures"]
    assert outer["id"] == f"{root}/range/1"
    assert outer["type"] == "Range"
    assert outer["items"][0] == {"id": f"{root}/canvas/1", "type": "Canvas"}
    inner = outer["items"][1]
    assert inner["id"] == f"{root}/range/1-1"
    assert inner["items"] == [{"id": f"{root}/canvas/2", "type": "Canvas"}]
    assert inner["behavior"] == ["no-nav"]


def test_thumbnail_is_a_served_size_that_is_big_enough(tree: tuple[Path, Path], client: Callable[..., Http]) -> None:
    images, manifests = tree
    make_image(images / "wide.tif", 4000, 1000)
    http = client(images, manifests)
    m = _get(http, f"{P}/wide/manifest")
    thumb = m["thumbnail"][0]
    assert max(thumb["width"], thumb["height"]) >= 400
    assert max(thumb["width"], thumb["height"]) < 1000  # not the full image
    response = http.get(thumb["id"].removeprefix("http://testserver"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"


def test_body_size_respects_the_servers_limits(tree: tuple[Path, Path], client: Callable[..., Http]) -> None:
    images, manifests = tree
    make_image(images / "huge.tif", 3000, 2000)
    http = client(images, manifests, max_area=1_500_000)
    m = _get(http, f"{P}/huge/manifest")
    canvas = m["items"][0]
    body = canvas["items"][0]["items"][0]["body"]
    assert (canvas["width"], canvas["height"]) == (3000, 2000)
    assert body["width"] * body["height"] <= 1_500_000
    assert abs(body["width"] / body["height"] - 1.5) < 0.01


def test_folder_default_manifest_is_valid(
    tree: tuple[Path, Path], client: Callable[..., Http], schema_validator: jsonschema.Draft7Validator
) -> None:
    images, manifests = tree
    for n in (1, 2, 10):
        make_image(images / "field_notes" / f"page {n}.tif", 200, 300)
    http = client(images, manifests)
    m = _get(http, f"{P}/field_notes/manifest")
    assert schema_errors(schema_validator, m) == []
    assert m["label"] == {"none": ["Field notes"]}
    assert [c["label"] for c in m["items"]] == [{"none": ["Page 1"]}, {"none": ["Page 2"]}, {"none": ["Page 10"]}]
    body = m["items"][0]["items"][0]["items"][0]["body"]
    assert body["service"][0]["id"] == "http://testserver/iiif/3/field_notes%2Fpage%201"


def test_collections_nest_and_validate(
    tree: tuple[Path, Path], client: Callable[..., Http], schema_validator: jsonschema.Draft7Validator
) -> None:
    images, manifests = tree
    make_image(images / "top.tif", 100, 100)
    make_image(images / "maps" / "north" / "n.tif", 100, 100)
    make_image(images / "maps" / "south.tif", 100, 100)
    write(
        manifests / "_collection.yaml",
        "label: {fr: Nos collections, en: Our collections}\nrights: http://creativecommons.org/publicdomain/mark/1.0/\n",
    )
    http = client(images, manifests)
    top = _get(http, f"{P}/collection")
    assert schema_errors(schema_validator, top) == []
    assert top["id"] == "http://testserver/iiif/presentation/3/collection"
    assert top["label"] == {"fr": ["Nos collections"], "en": ["Our collections"]}
    assert top["rights"] == "http://creativecommons.org/publicdomain/mark/1.0/"
    kinds = [(item["type"], item["id"].removeprefix("http://testserver/iiif/presentation/3/")) for item in top["items"]]
    # maps/ holds an image (an object "maps") and a sub-folder (a collection "maps").
    assert kinds == [("Collection", "collection/maps"), ("Manifest", "maps/manifest"), ("Manifest", "top/manifest")]
    manifest_ref = top["items"][2]
    assert manifest_ref["label"] == {"none": ["Top"]}
    assert manifest_ref["thumbnail"][0]["service"][0]["id"] == "http://testserver/iiif/3/top"
    maps = _get(http, f"{P}/collection/maps")
    assert schema_errors(schema_validator, maps) == []
    assert maps["label"] == {"none": ["Maps"]}
    # maps/north/ holds images and no sub-folder: an object listed in the "maps" collection.
    assert [i["id"].rsplit("/3/", 1)[1] for i in maps["items"]] == ["maps/north/manifest"]
    assert http.get(f"{P}/collection/maps/north").status_code == 404


def test_large_collection_is_split_into_pages(
    tree: tuple[Path, Path], client: Callable[..., Http], schema_validator: jsonschema.Draft7Validator
) -> None:
    images, manifests = tree
    for n in range(1, 6):
        make_image(images / f"item-{n}.tif", 50, 50)
    http = client(images, manifests, collection_page_size=2)
    top = _get(http, f"{P}/collection")
    assert schema_errors(schema_validator, top) == []
    assert [i["id"] for i in top["items"]] == [
        f"http://testserver/iiif/presentation/3/collection?page={n}" for n in (1, 2, 3)
    ]
    assert [i["label"] for i in top["items"]] == [{"none": ["1–2"]}, {"none": ["3–4"]}, {"none": ["5–5"]}]
    seen = []
    for n in (1, 2, 3):
        page = _get(http, f"{P}/collection?page={n}")
        assert schema_errors(schema_validator, page) == []
        assert page["id"].endswith(f"/collection?page={n}")
        assert page["partOf"] == [{"id": "http://testserver/iiif/presentation/3/collection", "type": "Collection"}]
        seen += [i["id"].rsplit("/", 2)[1] for i in page["items"]]
    assert seen == [f"item-{n}" for n in range(1, 6)]
    assert http.get(f"{P}/collection?page=4").status_code == 404


def test_broken_objects_are_left_out_of_collections(tree: tuple[Path, Path], client: Callable[..., Http]) -> None:
    images, manifests = tree
    make_image(images / "ok.tif", 50, 50)
    write(manifests / "broken.yaml", "label: x\nrights: nope\npages: [ok]\n")
    http = client(images, manifests)
    top = _get(http, f"{P}/collection")
    assert [i["id"].rsplit("/", 2)[1] for i in top["items"]] == ["ok"]


def test_a_manifest_of_thousands_of_canvases_opens_each_source_once(
    tree: tuple[Path, Path], client: Callable[..., Http], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack case C14: a folder of 2,000 scans (a register) is one manifest of 2,000 canvases;
    building it reads each file's header once (no pixels), and it is built again from what is
    known (no file opened twice)."""
    images, manifests = tree
    first = make_image(images / "register" / "f0000.tif", 64, 48)
    for n in range(1, 2000):  # distinct files, as a collection is, not links to one
        shutil.copyfile(first, images / "register" / f"f{n:04d}.tif")
    opened: list[str] = []
    real_probe = probe_module.probe

    def counting_probe(path: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_probe(path, **kwargs)

    monkeypatch.setattr(probe_module, "probe", counting_probe)
    http = client(images, manifests)
    manifest = _get(http, f"{P}/register/manifest")
    assert len(manifest["items"]) == 2000
    assert {(c["width"], c["height"]) for c in manifest["items"]} == {(64, 48)}
    assert len(opened) == 2000
    assert len(set(opened)) == 2000  # each source once
    again = _get(http, f"{P}/register/manifest")
    assert again == manifest
    assert len(opened) == 2000  # built again without opening a file


def test_a_busy_server_while_a_manifest_is_built_is_a_503_not_a_bad_description(
    tree: tuple[Path, Path], client: Callable[..., Http], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image the server is too busy to look up now (its I/O queue full) makes the manifest a 503
    to retry, not a 500 blaming the description; the next ask builds it."""
    images, manifests = tree
    for n in range(3):
        make_image(images / "book" / f"p{n}.tif", 64, 48)
    real_find = SourceRegistry.find
    busy = {"book/p1"}

    async def find(self: SourceRegistry, identifier: str) -> Any:
        if identifier in busy:
            raise ServiceUnavailable("server busy (io queue full)", retry_after=1)
        return await real_find(self, identifier)

    monkeypatch.setattr(SourceRegistry, "find", find)
    http = client(images, manifests)
    r = http.get(f"{P}/book/manifest")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert "description" not in r.text
    busy.clear()
    assert len(_get(http, f"{P}/book/manifest")["items"]) == 3
