"""The demo collection's descriptions (``manifests/`` in the repository) on the demo images:
every manifest and collection builds and validates against the Presentation 3.0 schema, and the
demo shows the features it is there to show (a book with ranges, a multilingual painting, an album)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from tests.presentation.conftest import REPO, schema_errors
from tests.web.conftest import Http

P = "/iiif/presentation/3"


@pytest.fixture(scope="module")
def demo(demo_images: Path, client: Callable[..., Http]) -> Http:
    return client(demo_images, REPO / "manifests")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, portal: object) -> Callable[..., Http]:
    from dataclasses import replace

    from iiifserver.app import create_app
    from iiifserver.config import Settings

    def make(images: Path, manifests: Path) -> Http:
        settings = Settings(images=images, manifests=manifests, cache=tmp_path_factory.mktemp("cache"))
        return Http(create_app(replace(settings, disk_cache_mb=0)), portal)  # type: ignore[arg-type]

    return make


def _walk(http: Http, url: str, seen: dict[str, dict[str, object]]) -> None:
    document = http.get(url.removeprefix("http://testserver")).json()
    seen[url] = document
    for item in document.get("items", []):
        if item["type"] in ("Collection", "Manifest") and item["id"] not in seen:
            _walk(http, item["id"], seen)


def test_every_demo_document_is_valid(demo: Http, schema_validator: jsonschema.Draft7Validator) -> None:
    seen: dict[str, dict[str, object]] = {}
    _walk(demo, f"http://testserver{P}/collection", seen)
    manifests = [url for url, doc in seen.items() if doc["type"] == "Manifest"]
    assert len(manifests) >= 7  # built without the large panorama
    for url, document in seen.items():
        assert schema_errors(schema_validator, document) == [], url


def test_demo_book_has_pages_ranges_and_paging(demo: Http) -> None:
    book = demo.get(f"{P}/book-of-hours/manifest").json()
    assert book["behavior"] == ["paged"]
    assert len(book["items"]) == 8
    assert book["items"][1]["label"] == {"none": ["fol. 1r"]}
    assert book["items"][0]["behavior"] == ["non-paged"]
    labels = [r["label"]["en"][0] for r in book["structures"]]
    assert labels == ["Calendar", "Hours of the Virgin"]
    assert [r["label"]["fr"][0] for r in book["structures"][1]["items"]] == ["Matines", "Laudes"]
    assert book["rights"].startswith("http://rightsstatements.org/")


def test_demo_painting_is_multilingual(demo: Http) -> None:
    painting = demo.get(f"{P}/painting/manifest").json()
    assert set(painting["label"]) == {"fr", "en", "nl"}
    assert all(set(entry["label"]) == {"fr", "en", "nl"} for entry in painting["metadata"])
    assert painting["provider"][0]["logo"][0]["id"].startswith("http://testserver/iiif/3/_assets%2Flogo/")
    logo = demo.get(painting["provider"][0]["logo"][0]["id"].removeprefix("http://testserver"))
    assert logo.status_code == 200
    assert logo.headers["content-type"] == "image/png"
    assert painting["navDate"] == "1890-01-01T00:00:00Z"


def test_demo_album_uses_its_folder(demo: Http) -> None:
    album = demo.get(f"{P}/album/manifest").json()
    assert album["behavior"] == ["individuals"]
    assert [c["label"] for c in album["items"]] == [{"none": [f"Photo {n}"]} for n in range(1, 6)]
    assert "/album%2Fphoto-3/" in album["thumbnail"][0]["id"]
