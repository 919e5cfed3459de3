"""Image API routes and their HTTP headers (specs A1.7, A2, B8; attack cases G01, G04, D07, E10)."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from starlette.requests import Request

import iiifserver.image.render as render_module
from iiifserver.web.urls import public_base
from tests.web.conftest import (
    TRUSTED_PROXY,
    UNTRUSTED_CLIENT,
    Http,
    ImageRoot,
    assert_no_leak,
    make_settings,
    save_pyramid,
    solid,
)

CONTEXT_3 = "http://iiif.io/api/image/3/context.json"
CONTEXT_2 = "http://iiif.io/api/image/2/context.json"
LD_3 = f'application/ld+json;profile="{CONTEXT_3}"'
LD_2 = f'application/ld+json;profile="{CONTEXT_2}"'
PROFILE_LINK_3 = '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
PROFILE_LINK_2 = '<http://iiif.io/api/image/2/level2.json>;rel="profile"'

INFO_3 = "/iiif/3/sample/info.json"
INFO_2 = "/iiif/2/sample/info.json"
IMAGE_3 = "/iiif/3/sample/0,0,512,512/256,/0/default.jpg"
IMAGE_2 = "/iiif/2/sample/0,0,512,512/256,/0/default.jpg"
ODD_ENCODED = "odd%20%22name%22%20%3Cx%3E"
CACHE_CONTROL = "public, max-age=2592000"


def decode(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


# --- info.json bodies and ids ------------------------------------------------------------------


def test_info_v3_body(http: Http) -> None:
    r = http.get(INFO_3)
    assert r.status_code == 200
    doc = r.json()
    assert doc["@context"] == CONTEXT_3
    assert doc["id"] == "http://testserver/iiif/3/sample"
    assert doc["type"] == "ImageService3"
    assert doc["protocol"] == "http://iiif.io/api/image"
    assert doc["profile"] == "level2"
    assert (doc["width"], doc["height"]) == (2000, 1500)
    assert {"maxWidth", "maxHeight", "maxArea"} <= set(doc)
    assert doc["tiles"][0]["width"] == 256


def test_info_v2_body(http: Http) -> None:
    r = http.get(INFO_2)
    assert r.status_code == 200
    doc = r.json()
    assert doc["@context"] == CONTEXT_2
    assert doc["@id"] == "http://testserver/iiif/2/sample"
    assert "id" not in doc
    assert doc["protocol"] == "http://iiif.io/api/image"
    assert doc["profile"][0] == "http://iiif.io/api/image/2/level2.json"
    assert (doc["width"], doc["height"]) == (2000, 1500)


@pytest.mark.parametrize(
    ("version", "identifier"),
    [
        ("3", "sample"),
        ("2", "sample"),
        ("3", "a%2Fb%20c%2Fpage"),
        ("2", "a%2Fb%20c%2Fpage"),
        ("3", "caf%C3%A9"),
        ("3", "alias"),
        ("3", ODD_ENCODED),
    ],
)
def test_info_id_is_the_request_url_without_info_json(http: Http, version: str, identifier: str) -> None:
    r = http.raw(f"/iiif/{version}/{identifier}/info.json")
    assert r.status_code == 200
    doc = r.json()
    # asgi_call sends Host: localhost.
    assert doc["id" if version == "3" else "@id"] == f"http://localhost/iiif/{version}/{identifier}"


def test_escaped_unreserved_identifier_is_decoded(http: Http) -> None:
    """B8: a %-escaped identifier must decode and return 200; the id is the canonical spelling."""
    r = http.raw("/iiif/3/s%61mple/info.json")
    assert r.status_code == 200
    assert r.json()["id"] == "http://localhost/iiif/3/sample"


def test_info_id_follows_host_header(http: Http) -> None:
    r = http.get(INFO_3, headers={"host": "images.example.org:8443"})
    assert r.json()["id"] == "http://images.example.org:8443/iiif/3/sample"


@pytest.mark.parametrize("host", ['evil"><script>', "a b", "x/y", "bad host:99999999"])
def test_info_id_ignores_an_unusable_host_header(http: Http, host: str) -> None:
    r = http.get(INFO_3, headers={"host": host})
    assert r.status_code == 200
    service_id = r.json()["id"]
    # httpx's ASGI transport gives ("testserver", None) as the server address: no ":None" port.
    assert service_id == "http://testserver/iiif/3/sample"


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (("10.0.0.5", 8000), "http://10.0.0.5:8000"),
        (("::1", 8000), "http://[::1]:8000"),  # IPv6 needs brackets
        (("/run/iiif.sock", None), "http://localhost"),  # uvicorn --uds: no port, a path for a host
        (None, "http://localhost"),
    ],
)
def test_public_base_without_a_host_header(
    image_root: ImageRoot, tmp_path: Path, server: tuple[str, int | None] | None, expected: str
) -> None:
    """HTTP/1.0 requests may come without Host: the id falls back to a well-formed address."""
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "path": "/",
        "headers": [],
        "server": server,
        "client": None,
    }
    assert public_base(Request(scope), make_settings(image_root, tmp_path)) == expected


def test_public_url_overrides_host_and_forwarded_headers(make_http: Any) -> None:
    http = make_http(public_url="https://images.example.org/base/")
    forwarded = {"x-forwarded-host": "proxy.example", "x-forwarded-proto": "http", "x-forwarded-prefix": "/p"}
    r = http.get(INFO_3, headers={"host": "other.example", **forwarded}, client=TRUSTED_PROXY)
    assert r.json()["id"] == "https://images.example.org/base/iiif/3/sample"
    r = http.get(INFO_2, headers={"host": "other.example"})
    assert r.json()["@id"] == "https://images.example.org/base/iiif/2/sample"
    r = http.get("/iiif/3/sample", headers={"host": "other.example"})
    assert r.headers["location"] == "https://images.example.org/base/iiif/3/sample/info.json"
    r = http.get(IMAGE_3, headers={"host": "other.example"})
    assert r.headers["link"].startswith("<https://images.example.org/base/iiif/3/sample/0,0,512,512/256,256/")


FORWARDED = {
    "host": "backend:8000",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "images.example.org",
    "x-forwarded-prefix": "/iiif-proxy/",
}


@pytest.mark.parametrize(("url", "key"), [(INFO_3, "id"), (INFO_2, "@id")])
def test_forwarded_headers_honoured_from_a_trusted_proxy(http: Http, url: str, key: str) -> None:
    """E10: X-Forwarded-* shape the public URL only when the peer is a configured proxy."""
    r = http.get(url, headers=FORWARDED, client=TRUSTED_PROXY)
    version = url.split("/")[2]
    assert r.json()[key] == f"https://images.example.org/iiif-proxy/iiif/{version}/sample"
    r = http.get(f"/iiif/{version}/sample", headers=FORWARDED, client=TRUSTED_PROXY)
    assert r.status_code == 303
    assert r.headers["location"] == f"https://images.example.org/iiif-proxy/iiif/{version}/sample/info.json"


@pytest.mark.parametrize("client", [UNTRUSTED_CLIENT, "127.0.0.1"])
def test_forwarded_headers_ignored_from_other_clients(http: Http, client: str) -> None:
    r = http.get(INFO_3, headers=FORWARDED, client=client)
    assert r.json()["id"] == "http://backend:8000/iiif/3/sample"
    r = http.get("/iiif/3/sample", headers=FORWARDED, client=client)
    assert r.headers["location"] == "http://backend:8000/iiif/3/sample/info.json"
    r = http.get(IMAGE_3, headers=FORWARDED, client=client)
    assert "images.example.org" not in r.headers["link"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-forwarded-proto": "javascript"}, "http://backend:8000/iiif/3/sample"),
        ({"x-forwarded-proto": "https, http"}, "https://backend:8000/iiif/3/sample"),
        ({"x-forwarded-prefix": "//evil.example"}, "http://backend:8000/iiif/3/sample"),
        ({"x-forwarded-prefix": "/a b"}, "http://backend:8000/iiif/3/sample"),
        ({"x-forwarded-prefix": "/ok/"}, "http://backend:8000/ok/iiif/3/sample"),
        ({"x-forwarded-host": "first.example, second.example"}, "http://first.example/iiif/3/sample"),
    ],
)
def test_forwarded_header_values_are_validated(http: Http, headers: dict[str, str], expected: str) -> None:
    r = http.get(INFO_3, headers={"host": "backend:8000", **headers}, client=TRUSTED_PROXY)
    assert r.json()["id"] == expected


def test_host_poisoning_does_not_stick(http: Http) -> None:
    """E10: 'send Host: evil then normal' -- the info document is rendered per request."""
    evil = http.get(INFO_3, headers={"host": "evil.example"})
    assert evil.json()["id"] == "http://evil.example/iiif/3/sample"
    normal = http.get(INFO_3)
    assert normal.json()["id"] == "http://testserver/iiif/3/sample"
    # A shared cache that ignored Host still could not confuse the two: their ETags differ.
    assert evil.headers["etag"] != normal.headers["etag"]


# --- content negotiation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "accept", "expected"),
    [
        (INFO_3, None, LD_3),
        (INFO_3, "application/ld+json", LD_3),
        (INFO_3, f'application/ld+json;profile="{CONTEXT_3}"', LD_3),
        (INFO_3, "application/json", "application/json"),
        (INFO_3, "application/json, */*;q=0.1", "application/json"),
        (INFO_3, "*/*", LD_3),
        (INFO_3, "text/html", LD_3),
        (INFO_3, "application/ld+json;q=0, application/json", "application/json"),
        (INFO_3, "application/json, application/ld+json;q=0.5", "application/json"),
        (INFO_3, "application/json;q=0.5, application/ld+json", LD_3),
        (INFO_2, None, "application/json"),
        (INFO_2, "application/json", "application/json"),
        (INFO_2, "*/*", "application/json"),
        (INFO_2, "application/ld+json", LD_2),
        (INFO_2, "application/ld+json, application/json", LD_2),
        (INFO_2, "application/ld+json;q=0.9, application/json", "application/json"),
        (INFO_2, "application/*", "application/json"),
    ],
)
def test_info_content_negotiation(http: Http, url: str, accept: str | None, expected: str) -> None:
    headers = {"accept": accept} if accept is not None else {}
    r = http.get(url, headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == expected
    assert "accept" in r.headers["vary"].lower()


# --- Link headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "link"), [(INFO_3, PROFILE_LINK_3), (INFO_2, PROFILE_LINK_2)])
def test_profile_link_on_info(http: Http, url: str, link: str) -> None:
    assert http.get(url).headers["link"] == link


CANONICAL = [
    ("3", "full/max/0/default.jpg", "full/max/0/default.jpg"),
    ("3", "0,0,2000,1500/1000,/0/default.jpg", "full/1000,750/0/default.jpg"),
    ("3", "pct:50,50,50,50/max/0/color.png", "1000,750,1000,750/max/0/color.png"),
    ("3", "square/100,/!0/gray.webp", "250,0,1500,1500/100,100/!0/gray.webp"),
    ("3", "full/pct:50/90.0/default.jpg", "full/1000,750/90/default.jpg"),
    ("3", "full/,75/360/default.jpg", "full/100,75/0/default.jpg"),
    ("3", "0,0,100,100/^pct:200/0/default.jpg", "0,0,100,100/^200,200/0/default.jpg"),
    ("2", "full/full/0/default.jpg", "full/full/0/default.jpg"),
    ("2", "full/pct:50/0/default.jpg", "full/1000,/0/default.jpg"),
    ("2", "full/1000,750/0/default.jpg", "full/1000,/0/default.jpg"),
    ("2", "full/1000,700/0/default.jpg", "full/1000,700/0/default.jpg"),
    ("2", "0,0,2000,1500/!100,100/0/default.png", "full/100,/0/default.png"),
]


@pytest.mark.parametrize(("version", "request_path", "canonical"), CANONICAL)
def test_canonical_and_profile_links_on_images(http: Http, version: str, request_path: str, canonical: str) -> None:
    """Spec 4.8 (3.0) and the 2.1 canonical forms; both links in one header."""
    r = http.get(f"/iiif/{version}/sample/{request_path}")
    assert r.status_code == 200, r.text
    profile = PROFILE_LINK_3 if version == "3" else PROFILE_LINK_2
    assert r.headers["link"] == f'<http://testserver/iiif/{version}/sample/{canonical}>;rel="canonical", {profile}'


def test_canonical_link_escapes_the_identifier(http: Http) -> None:
    """A13: an identifier echoed into a header is percent-encoded (no quotes or angle brackets)."""
    r = http.raw(f"/iiif/3/{ODD_ENCODED}/full/max/0/default.jpg")
    assert r.status_code == 200
    link = r.headers["link"]
    assert link.startswith(f"<http://localhost/iiif/3/{ODD_ENCODED}/full/max/0/default.jpg>")
    assert "<x>" not in link
    assert '"name"' not in link


@pytest.mark.parametrize(
    ("url", "media_type", "size"),
    [
        ("/iiif/3/sample/0,0,400,300/200,/0/default.jpg", "image/jpeg", (200, 150)),
        ("/iiif/3/sample/0,0,400,300/200,/0/default.png", "image/png", (200, 150)),
        ("/iiif/3/sample/0,0,400,300/200,/0/default.webp", "image/webp", (200, 150)),
        ("/iiif/3/sample/0,0,400,300/200,/0/default.gif", "image/gif", (200, 150)),
        ("/iiif/3/sample/0,0,400,300/200,/0/default.tif", "image/tiff", (200, 150)),
        ("/iiif/3/sample/0,0,400,300/200,/90/default.png", "image/png", (150, 200)),
        ("/iiif/2/sample/full/full/0/default.jpg", "image/jpeg", (2000, 1500)),
    ],
)
def test_image_media_type_and_size(http: Http, url: str, media_type: str, size: tuple[int, int]) -> None:
    r = http.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == media_type
    assert decode(r.content).size == size


# --- base URI redirect ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/iiif/3/sample", "http://localhost/iiif/3/sample/info.json"),
        ("/iiif/2/sample", "http://localhost/iiif/2/sample/info.json"),
        ("/iiif/3/a%2Fb%20c%2Fpage", "http://localhost/iiif/3/a%2Fb%20c%2Fpage/info.json"),
        ("/iiif/3/cafe%CC%81", "http://localhost/iiif/3/caf%C3%A9/info.json"),
        (f"/iiif/3/{ODD_ENCODED}", f"http://localhost/iiif/3/{ODD_ENCODED}/info.json"),
    ],
)
def test_base_uri_redirects_to_absolute_info_json(http: Http, path: str, location: str) -> None:
    r = http.raw(path)
    assert r.status_code == 303
    assert r.headers["location"] == location
    assert r.content == b""
    assert r.headers["access-control-allow-origin"] == "*"
    follow = http.raw(location.removeprefix("http://localhost"))
    assert follow.status_code == 200


# --- CORS ----------------------------------------------------------------------------------------


def _etag(http: Http, url: str) -> str:
    return http.get(url).headers["etag"]


@pytest.mark.parametrize(
    ("method", "url", "headers", "status"),
    [
        ("GET", INFO_3, {}, 200),
        ("GET", INFO_2, {}, 200),
        ("GET", IMAGE_3, {}, 200),
        ("HEAD", IMAGE_3, {}, 200),
        ("GET", "/iiif/3/sample", {}, 303),
        ("GET", INFO_3, {"if-none-match": "ETAG"}, 304),
        ("GET", IMAGE_3, {"if-none-match": "ETAG"}, 304),
        ("GET", "/iiif/3/sample/full/max/0/fancy.jpg", {}, 400),
        ("GET", "/iiif/3/nothere/info.json", {}, 404),
        ("GET", "/not/an/iiif/url", {}, 404),
        ("GET", "/iiif/3/svg/info.json", {}, 500),
        ("POST", INFO_3, {}, 405),
        ("OPTIONS", INFO_3, {}, 204),
        ("OPTIONS", IMAGE_3, {}, 204),
        ("OPTIONS", INFO_2, {}, 204),
        ("OPTIONS", "/iiif/3/nothere/info.json", {}, 204),
        (
            "OPTIONS",
            IMAGE_3,
            {
                "origin": "http://iiif.io",
                "access-control-request-method": "GET",
                "access-control-request-headers": "x-a",
            },
            204,
        ),
    ],
)
def test_cors_on_every_response(http: Http, method: str, url: str, headers: dict[str, str], status: int) -> None:
    """A1.7/B8: Access-Control-Allow-Origin on 2xx, 3xx, 4xx, 5xx and plain OPTIONS (no preflight headers)."""
    if headers.get("if-none-match") == "ETAG":
        headers = {"if-none-match": _etag(http, url)}
    r = http.request(method, url, headers=headers)
    assert r.status_code == status
    assert r.headers["access-control-allow-origin"] == "*"
    if method == "OPTIONS":
        assert "GET" in r.headers["access-control-allow-methods"]
        if "access-control-request-headers" in headers:
            assert r.headers["access-control-allow-headers"] == "x-a"


def test_method_not_allowed_says_what_is_allowed(http: Http) -> None:
    r = http.request("PUT", IMAGE_3)
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]
    assert r.headers["cache-control"] == "no-store"


def test_unexpected_exception_gives_a_generic_500(
    http: Http, image_root: ImageRoot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """G01: 500, generic body, CORS header, nothing cached, no traceback; detail only in the log."""

    def explode(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError(f"internal detail at {image_root.root}")

    monkeypatch.setattr(render_module, "render", explode)
    # A request nobody else makes, so no cache tier can answer it.
    url = "/iiif/3/sample/3,5,97,89/41,/0/default.jpg"
    r = http.get(url, raise_app_exceptions=False)
    assert r.status_code == 500
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("text/plain")
    assert "internal detail" not in r.text
    assert "RuntimeError" not in r.text
    assert_no_leak(image_root, r.content)
    assert "internal detail" in caplog.text
    assert caplog.text.count("RuntimeError: internal detail") == 1  # logged once, by the endpoint
    monkeypatch.undo()
    # The failure was not cached: the same request now renders.
    assert http.get(url).status_code == 200


# --- HEAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [INFO_3, INFO_2, IMAGE_3, IMAGE_2])
def test_head_has_the_get_headers_and_no_body(http: Http, url: str) -> None:
    get = http.get(url)
    head = http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "etag", "last-modified", "link", "cache-control", "access-control-allow-origin"):
        assert head.headers[name] == get.headers[name], name


# --- conditional requests (G04) ------------------------------------------------------------------


def _shifted(http_date: str, seconds: int) -> str:
    return format_datetime(parsedate_to_datetime(http_date) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("url", [INFO_3, INFO_2, IMAGE_3, IMAGE_2])
@pytest.mark.parametrize(
    ("make_headers", "status"),
    [
        (lambda tag, lm: {"if-none-match": tag}, 304),
        (lambda tag, lm: {"if-none-match": f"W/{tag}"}, 304),
        (lambda tag, lm: {"if-none-match": f'"nope", {tag}'}, 304),
        (lambda tag, lm: {"if-none-match": "*"}, 304),
        (lambda tag, lm: {"if-none-match": '"nope"'}, 200),
        (lambda tag, lm: {"if-modified-since": lm}, 304),
        (lambda tag, lm: {"if-modified-since": _shifted(lm, 3600)}, 304),
        (lambda tag, lm: {"if-modified-since": _shifted(lm, -3600)}, 200),
        (lambda tag, lm: {"if-modified-since": "yesterday-ish"}, 200),
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        (lambda tag, lm: {"if-none-match": '"nope"', "if-modified-since": lm}, 200),
    ],
)
def test_conditional_get(http: Http, url: str, make_headers: Any, status: int) -> None:
    first = http.get(url)
    tag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    r = http.get(url, headers=make_headers(tag, last_modified))
    assert r.status_code == status
    assert r.headers["etag"] == tag
    assert r.headers["access-control-allow-origin"] == "*"
    if status == 304:
        assert r.content == b""
        assert r.headers["cache-control"] == CACHE_CONTROL
        assert r.headers["last-modified"] == last_modified
    else:
        assert r.content == first.content


def test_conditional_head(http: Http) -> None:
    tag = http.head(IMAGE_3).headers["etag"]
    assert http.head(IMAGE_3, headers={"if-none-match": tag}).status_code == 304


def test_etags_are_stable_and_follow_the_representation(http: Http) -> None:
    assert _etag(http, IMAGE_3) == _etag(http, IMAGE_3)
    # 2.1 and 3.0 info documents differ (context, ids); so do two formats of one region.
    assert _etag(http, INFO_3) != _etag(http, INFO_2)
    assert _etag(http, IMAGE_3) != _etag(http, IMAGE_3.replace(".jpg", ".png"))
    assert _etag(http, IMAGE_3) != _etag(http, IMAGE_3.replace("256,", "128,"))
    # The same canonical request through either API version is the same bytes: one ETag is right.
    assert http.get(IMAGE_3).content == http.get(IMAGE_2).content


def test_replaced_source_gets_a_new_etag_and_new_pixels(make_http: Any, image_root: ImageRoot) -> None:
    """D07 / G04: os.replace of the source file -> new ETag, 200 for the old one, new pixels."""
    http = make_http(source_check_interval=0)  # check the file on every request
    image_url = "/iiif/3/mutable/full/60,/0/default.png"
    info_url = "/iiif/3/mutable/info.json"
    before = http.get(image_url)
    before_info = http.get(info_url)
    assert before.status_code == 200
    assert ImageStat.Stat(decode(before.content).convert("RGB")).mean[0] > 150  # red
    assert before_info.json()["width"] == 600

    new_file = image_root.root / ".mutable-next.tif"
    save_pyramid(solid(500, 300, (30, 30, 220)), new_file)
    st = (image_root.root / "mutable.tif").stat()
    # Same mtime as the old file: only the inode tells the versions apart.
    os.utime(new_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new_file, image_root.root / "mutable.tif")

    after = http.get(image_url, headers={"if-none-match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    red, _, blue = ImageStat.Stat(decode(after.content).convert("RGB")).mean
    assert blue > 150
    assert red < 100
    after_info = http.get(info_url, headers={"if-none-match": before_info.headers["etag"]})
    assert after_info.status_code == 200
    assert after_info.headers["etag"] != before_info.headers["etag"]
    assert after_info.json()["width"] == 500
    # And the new version is itself cacheable.
    again = http.get(image_url, headers={"if-none-match": after.headers["etag"]})
    assert again.status_code == 304


# --- Cache-Control -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [INFO_3, INFO_2, IMAGE_3])
def test_success_uses_the_cache_control_setting(http: Http, make_http: Any, url: str) -> None:
    assert http.get(url).headers["cache-control"] == CACHE_CONTROL
    custom = make_http(cache_control="public, max-age=60")
    assert custom.get(url).headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/iiif/3/sample", 303),
        ("/iiif/3/sample/full/full/0/default.jpg", 400),
        ("/iiif/3/sample/full/max/0/default.bmp", 400),
        ("/iiif/3/nothere/info.json", 404),
        ("/iiif/3/nothere/full/max/0/default.jpg", 404),
        ("/elsewhere", 404),
        ("/iiif/3/gif/info.json", 500),
        ("/iiif/3/sample/0,0,100,100/^pct:200/0/default.jpg", 501),
    ],
)
def test_errors_and_redirects_are_never_cached(make_http: Any, image_root: ImageRoot, url: str, status: int) -> None:
    http = make_http(allow_upscaling=False)
    r = http.get(url)
    assert r.status_code == status
    assert r.headers["cache-control"] == "no-store"
    assert "etag" not in r.headers
    if status >= 400:
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text.startswith(str(status))
        assert_no_leak(image_root, r.content, url)


def test_error_body_names_the_identifier(http: Http) -> None:
    r = http.get("/iiif/3/nothere/info.json")
    assert r.status_code == 404
    assert "nothere" in r.text


def test_replaced_source_is_noticed_after_the_check_interval(make_http: Any, image_root: ImageRoot) -> None:
    """With source_check_interval, a replaced file is served at most that late, then the new one."""
    http = make_http(source_check_interval=0.3)
    target = image_root.root / "interval.tif"
    save_pyramid(solid(300, 200, (220, 30, 30)), target)
    url = "/iiif/3/interval/full/30,/0/default.png"
    first = http.get(url)
    assert ImageStat.Stat(decode(first.content).convert("RGB")).mean[0] > 150  # red

    new_file = image_root.root / ".interval-next.tif"
    save_pyramid(solid(300, 200, (30, 30, 220)), new_file)
    os.replace(new_file, target)
    within = http.get(url)
    assert within.headers["etag"] == first.headers["etag"]  # still trusted: no stat yet

    time.sleep(0.35)
    after = http.get(url)
    assert after.headers["etag"] != first.headers["etag"]
    assert ImageStat.Stat(decode(after.content).convert("RGB")).mean[2] > 150  # blue
