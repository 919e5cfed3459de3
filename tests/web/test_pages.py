"""The HTML pages and the viewer assets: served, secured, cached; unknown objects are a 404 page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from iiifserver.web.assets import PACKAGES, Assets
from iiifserver.web.pages import describe_service
from tests.web.conftest import TRUSTED_PROXY, Http

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def config_of(body: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="iiif-page-config">(.*?)</script>', body, re.S)
    assert match is not None
    return dict(json.loads(match.group(1)))


def test_root_is_html_for_browsers_and_json_for_others(http: Http) -> None:
    r = http.get("/", headers=HTML)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in r.text
    assert config_of(r.text)["collectionUrl"] == "http://testserver/iiif/presentation/3/collection"
    r = http.get("/")
    assert r.headers["content-type"] == "application/json"
    assert r.json()["service"] == "iiifserver"


@pytest.mark.parametrize("kind", ["objects", "embed", "mirador", "uv"])
def test_object_pages(http: Http, kind: str) -> None:
    r = http.get(f"/{kind}/sample", headers=HTML)
    assert r.status_code == 200, r.text
    config = config_of(r.text)
    assert config["manifest"] == "http://testserver/iiif/presentation/3/sample/manifest"
    assert config["page"] == kind
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors *" in csp  # viewer pages may be embedded anywhere
    assert "x-frame-options" not in r.headers
    # No inline script: the only <script> without src is the JSON configuration.
    assert re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", r.text) == []
    for src in re.findall(r'<script src="([^"]+)"', r.text):
        asset = http.get(src)
        assert asset.status_code == 200, src
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_landing_page_is_not_framable(http: Http) -> None:
    r = http.get("/", headers=HTML)
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "SAMEORIGIN"


def test_object_id_with_a_slash(make_http: Any, tmp_path: Path) -> None:
    (tmp_path / "manifests" / "a").mkdir(parents=True)
    (tmp_path / "manifests" / "a" / "b-c.yaml").write_text("label: {en: Two pages}\npages:\n  - {image: sample}\n")
    http = make_http()
    r = http.get("/objects/a/b-c", headers=HTML)
    assert r.status_code == 200
    assert config_of(r.text)["manifest"] == "http://testserver/iiif/presentation/3/a/b-c/manifest"


@pytest.mark.parametrize("path", ["/objects/nope", "/mirador/nope", "/uv/no/such/thing", "/embed/", "/objects/%0Ax"])
def test_unknown_object_is_a_404_page(http: Http, path: str) -> None:
    r = http.get(path, headers=HTML)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert 'data-i18n="notFound"' in r.text


def test_not_found_page_escapes_the_identifier(http: Http) -> None:
    r = http.get("/objects/%3Cscript%3Ealert(1)%3C%2Fscript%3E", headers=HTML)
    assert r.status_code == 404
    assert "<script>alert" not in r.text
    assert "&lt;script&gt;" in r.text


def test_page_config_cannot_close_its_script_element(make_http: Any) -> None:
    http = make_http(public_url="https://example.org/</script><script>x()")
    r = http.get("/", headers=HTML)
    assert "</script><script>x()" not in r.text
    assert config_of(r.text)["base"] == "https://example.org/</script><script>x()"


def test_public_url_prefix_reaches_assets_and_links(make_http: Any) -> None:
    http = make_http(public_url="https://images.example.org/iiif-base")
    r = http.get("/objects/sample", headers=HTML)
    assert 'src="/iiif-base/viewers/openseadragon@' in r.text
    config = config_of(r.text)
    assert config["pages"]["mirador"] == "https://images.example.org/iiif-base/mirador/"
    assert "https://images.example.org" in r.headers["content-security-policy"]


@pytest.mark.skipif(not Assets().installed(), reason="viewer assets not installed (scripts/install.sh)")
@pytest.mark.parametrize(
    "path",
    [
        "/viewers/openseadragon/openseadragon.min.js",
        "/viewers/openseadragon/images/zoomin_rest.png",
        "/viewers/mirador/mirador.min.js",
        "/viewers/uv/uv.css",
        "/viewers/uv/umd/UV.js",
        "/viewers/site/deepzoom.js",
    ],
)
def test_allowed_assets_unversioned(http: Http, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=3600"
    assert r.headers["x-content-type-options"] == "nosniff"
    again = http.get(path, headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/viewers/mirador/mirador.es.js",  # in dist, but not on the allow-list
        "/viewers/mirador/../package.json",
        "/viewers/mirador/%2E%2E/package.json",
        "/viewers/uv/umd/../../package.json",
        "/viewers/uv/umd/%2e%2e%2F%2e%2e%2Fpackage.json",
        "/viewers/openseadragon/images/../../../../../../etc/passwd",
        "/viewers/openseadragon@0.0.1/openseadragon.min.js",  # not the installed version
        "/viewers/site/../pages.py",
        "/viewers/site/.hidden.js",
        "/viewers/axe-core/axe.min.js",  # test tool, never served
        "/viewers/nothing/x.js",
    ],
)
def test_assets_refuse_everything_else(http: Http, path: str) -> None:
    r = http.raw(path)
    assert r.status_code == 404
    assert b"package" not in r.content


def test_allow_list_patterns() -> None:
    uv = next(p for p in PACKAGES if p.name == "uv")
    assert uv.allows("umd/UV.js")
    assert not uv.allows("umd/x/UV.js")
    assert not uv.allows("umd/..")
    assert not uv.allows("esm/index.js")
    assert not uv.allows("")


# -- behind a proxy's prefix (X-Forwarded-Prefix from a trusted proxy) ---------------------------

PREFIXED = {**HTML, "x-forwarded-prefix": "/museum/iiif"}


def test_prefix_reaches_the_not_found_page_and_the_home_link(http: Http) -> None:
    r = http.get("/objects/nope", headers=PREFIXED, client=TRUSTED_PROXY)
    assert r.status_code == 404
    assert '<a href="/museum/iiif/" data-i18n="backHome">' in r.text
    assert 'class="site-name" href="/museum/iiif/"' in r.text
    assert 'href="/"' not in r.text
    # From anyone else the header is ignored (attack case E10).
    r = http.get("/objects/nope", headers=PREFIXED)
    assert '<a href="/" data-i18n="backHome">' in r.text


def test_prefix_reaches_every_page_home_link(http: Http) -> None:
    for path in ("/", "/objects/sample", "/uv/sample", "/mirador/sample"):
        r = http.get(path, headers=PREFIXED, client=TRUSTED_PROXY)
        assert r.status_code == 200, path
        assert 'href="/"' not in r.text, path
        assert config_of(r.text)["home"] == "http://testserver/museum/iiif/"


def test_the_service_description_gives_each_api_its_path(http: Http) -> None:
    described = describe_service()
    assert set(described) == {"service", "image_api", "presentation_api", "change_discovery_api"}
    assert described["image_api"]["2.1"] == "/iiif/2/{identifier}/info.json"
    assert described["presentation_api"]["3.0"]["manifest"] == "/iiif/presentation/3/{object}/manifest"
    assert described["change_discovery_api"] == {"1.0": "/iiif/discovery/activity/all-changes"}
    assert http.get("/").json() == described  # what ``/`` answers a client that is not a browser


def test_prefix_reaches_the_json_description(http: Http) -> None:
    described = http.get("/", headers={"x-forwarded-prefix": "/museum/iiif"}, client=TRUSTED_PROXY).json()
    assert described["image_api"]["3.0"] == "/museum/iiif/iiif/3/{identifier}/info.json"
    assert described["presentation_api"]["3.0"]["collection"] == "/museum/iiif/iiif/presentation/3/collection"
    assert described["service"] == "iiifserver"
    plain = http.get("/", headers={"x-forwarded-prefix": "/museum/iiif"}).json()
    assert plain["image_api"]["3.0"] == "/iiif/3/{identifier}/info.json"
