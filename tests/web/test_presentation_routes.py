"""Tests for iiifserver.web.presentation_routes: media type, CORS, ETag / Last-Modified / 304,
rebuild when a description or an image changes, errors that name the file and field while other
objects keep serving, public URLs, and hostile paths."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.presentation.conftest import make_image, write
from tests.web.conftest import Http

P = "/iiif/presentation/3"
LD = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'


@pytest.fixture
def site(tree: tuple[Path, Path], client: Callable[..., Http]) -> tuple[Path, Path, Http]:
    images, manifests = tree
    make_image(images / "painting.tif", 800, 600)
    make_image(images / "book" / "p1.tif", 300, 400)
    make_image(images / "book" / "p2.tif", 300, 400)
    write(manifests / "painting.yaml", "label: {en: Painting}\n")
    write(
        manifests / "broken.yaml", "label: x\nrights: https://creativecommons.org/licenses/by/4.0/\npages: [painting]\n"
    )
    return images, manifests, client(images, manifests)


def test_manifest_headers(site: tuple[Path, Path, Http]) -> None:
    *_, http = site
    response = http.get(f"{P}/painting/manifest", headers={"origin": "https://viewer.example.org"})
    assert response.status_code == 200
    assert response.headers["content-type"] == LD
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["etag"].startswith('"')
    assert len(response.headers["etag"]) > 20
    assert response.headers["last-modified"].endswith("GMT")
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["vary"] == "Accept"
    assert response.json()["id"] == "http://testserver/iiif/presentation/3/painting/manifest"


def test_plain_json_when_asked(site: tuple[Path, Path, Http]) -> None:
    *_, http = site
    response = http.get(f"{P}/painting/manifest", headers={"accept": "application/json"})
    assert response.headers["content-type"] == "application/json"


def test_head_has_no_body(site: tuple[Path, Path, Http]) -> None:
    *_, http = site
    response = http.head(f"{P}/collection")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == LD


@pytest.mark.parametrize("path", [f"{P}/painting/manifest", f"{P}/book/manifest", f"{P}/collection"])
def test_conditional_requests(site: tuple[Path, Path, Http], path: str) -> None:
    *_, http = site
    first = http.get(path)
    tag, modified = first.headers["etag"], first.headers["last-modified"]
    again = http.get(path, headers={"if-none-match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    assert http.get(path, headers={"if-none-match": '"other"'}).status_code == 200
    assert http.get(path, headers={"if-modified-since": modified}).status_code == 304
    assert http.get(path, headers={"if-modified-since": "Mon, 01 Jan 1990 00:00:00 GMT"}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2).
    assert http.get(path, headers={"if-none-match": '"other"', "if-modified-since": modified}).status_code == 200


def test_rebuilt_when_the_description_changes(site: tuple[Path, Path, Http]) -> None:
    _, manifests, http = site
    first = http.get(f"{P}/painting/manifest")
    path = manifests / "painting.yaml"
    write(path, "label: {en: Painting, fr: Tableau}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000_000))
    second = http.get(f"{P}/painting/manifest")
    assert second.json()["label"] == {"en": ["Painting"], "fr": ["Tableau"]}
    assert second.headers["etag"] != first.headers["etag"]
    assert http.get(f"{P}/painting/manifest", headers={"if-none-match": first.headers["etag"]}).status_code == 200


def test_rebuilt_when_an_image_changes(site: tuple[Path, Path, Http]) -> None:
    images, _, http = site
    first = http.get(f"{P}/book/manifest")
    assert first.json()["items"][1]["width"] == 300
    replacement = make_image(images / ".p2-new.tif", 640, 480)
    os.replace(replacement, images / "book" / "p2.tif")
    second = http.get(f"{P}/book/manifest")
    assert (second.json()["items"][1]["width"], second.json()["items"][1]["height"]) == (640, 480)
    assert second.headers["etag"] != first.headers["etag"]


def test_new_folder_appears_in_the_collection(site: tuple[Path, Path, Http]) -> None:
    images, _, http = site
    before = [i["id"] for i in http.get(f"{P}/collection").json()["items"]]
    make_image(images / "letters" / "l1.tif", 100, 100)
    after = [i["id"] for i in http.get(f"{P}/collection").json()["items"]]
    assert "http://testserver/iiif/presentation/3/letters/manifest" in after
    assert "http://testserver/iiif/presentation/3/letters/manifest" not in before


def test_bad_description_names_file_and_field_and_others_serve(site: tuple[Path, Path, Http]) -> None:
    *_, http = site
    response = http.get(f"{P}/broken/manifest")
    assert response.status_code == 500
    assert "broken.yaml" in response.text
    assert "'rights'" in response.text
    assert "Creative Commons" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["access-control-allow-origin"] == "*"
    assert http.get(f"{P}/painting/manifest").status_code == 200
    assert http.get(f"{P}/collection").status_code == 200


def test_missing_image_names_the_page(site: tuple[Path, Path, Http]) -> None:
    _, manifests, http = site
    write(manifests / "gaps.yaml", "label: Gaps\npages: [painting, lost/page]\n")
    response = http.get(f"{P}/gaps/manifest")
    assert response.status_code == 500
    assert "gaps.yaml" in response.text
    assert "pages[1].image" in response.text
    assert "lost/page" in response.text


def test_no_filesystem_path_leaks(site: tuple[Path, Path, Http], tree: tuple[Path, Path]) -> None:
    images, manifests, http = site
    for path in (f"{P}/broken/manifest", f"{P}/nothing/manifest", f"{P}/collection/nothing"):
        text = http.get(path).text
        assert str(images) not in text
        assert str(manifests) not in text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{P}/nothing/manifest", 404),
        (f"{P}/collection/nothing", 404),
        (f"{P}/painting", 404),
        (f"{P}/painting/canvas/1", 404),
        (f"{P}/", 404),
        (f"{P}/%2E%2E/manifest", 404),
        (f"{P}/a/../painting/manifest", 404),
        (f"{P}/%00/manifest", 404),
        (f"{P}/%0A/manifest", 404),
        (f"{P}/%FF/manifest", 404),
        (f"{P}/a%2Fb/manifest", 404),
        (f"{P}//manifest", 404),
        (f"{P}/collection?page=x", 400),
        (f"{P}/collection?page=-1", 400),
        (f"{P}/collection?page=99999999", 400),
        (f"{P}/collection?page=1", 404),
        (f"{P}/" + "a/" * 600 + "manifest", 404),
    ],
)
def test_hostile_and_unknown_paths(site: tuple[Path, Path, Http], path: str, status: int) -> None:
    *_, http = site
    response = http.raw(path)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text


def test_post_is_refused(site: tuple[Path, Path, Http]) -> None:
    *_, http = site
    assert http.request("POST", f"{P}/painting/manifest").status_code == 405


def test_sub_folder_object_and_unicode_ids(tree: tuple[Path, Path], client: Callable[..., Http]) -> None:
    images, manifests = tree
    make_image(images / "fonds" / "café" / "p.tif", 100, 100)
    http = client(images, manifests)
    response = http.raw(f"{P}/fonds/caf%C3%A9/manifest")
    assert response.status_code == 200
    document = response.json()
    assert document["id"].endswith("/iiif/presentation/3/fonds/caf%C3%A9/manifest")
    body = document["items"][0]["items"][0]["items"][0]["body"]
    assert body["service"][0]["id"].endswith("/iiif/3/fonds%2Fcaf%C3%A9%2Fp")
    collection = http.raw(f"{P}/collection/fonds").json()
    assert collection["items"][0]["id"].endswith("/iiif/presentation/3/fonds/caf%C3%A9/manifest")


def test_public_url_and_trusted_forwarded_headers(site: tuple[Path, Path, Http], client: Callable[..., Http]) -> None:
    images, manifests, http = site
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "iiif.museum.example", "x-forwarded-prefix": "/api"}
    trusted = http.get(f"{P}/painting/manifest", headers=forwarded, client="10.9.8.7").json()
    assert trusted["id"] == "https://iiif.museum.example/api/iiif/presentation/3/painting/manifest"
    assert trusted["items"][0]["items"][0]["items"][0]["body"]["service"][0]["id"] == (
        "https://iiif.museum.example/api/iiif/3/painting"
    )
    untrusted = http.get(f"{P}/painting/manifest", headers=forwarded, client="203.0.113.9").json()
    assert untrusted["id"] == "http://testserver/iiif/presentation/3/painting/manifest"
    configured = client(images, manifests, public_url="https://images.example.org/")
    assert configured.get(f"{P}/collection").json()["id"] == "https://images.example.org/iiif/presentation/3/collection"
    # Different bases never share a cached document (or its ETag).
    a = http.get(f"{P}/painting/manifest", headers=forwarded, client="10.9.8.7").headers["etag"]
    b = http.get(f"{P}/painting/manifest").headers["etag"]
    assert a != b


def test_home_lists_the_presentation_api(site: tuple[Path, Path, Http]) -> None:
    *_, http = site
    assert http.get("/").json()["presentation_api"]["3.0"]["collection"] == "/iiif/presentation/3/collection"
