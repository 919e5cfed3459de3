"""Restricted images (docs/access.md): rules from descriptions, login, sessions, tokens, the probe,
the degraded tier, and the attack cases of group F (attack-cases.md): probe without token (F01),
probe vs reality in every tier (F02), forged / expired / revoked tokens (F03), token service
reflection (F04), CORS preflight with credentials (F05), restricted image without cookie (F06),
tier bypass through the memo, the protocol, the memory and disk tiers, other spellings, the 2.1
API and HEAD (F07), a forged trusted header or X-Forwarded-* from elsewhere (F09), logout (F10)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iiifserver.web.auth import SESSION_COOKIE
from iiifserver.web.auth_signing import Signer
from iiifserver.web.auth_users import add_user
from tests.presentation.conftest import make_image, write
from tests.web.conftest import Http
from tests.web.test_fast_path import uvicorn_scope

SECRET = "s" * 40
TRUSTED = "10.9.8.7"
OUTSIDER = "203.0.113.9"
TILE = "/iiif/3/book%2Fp1/0,0,128,128/128,/0/default.jpg"  # full resolution: restricted tier only
PROBE = "/auth/2/probe/book%2Fp1"


@pytest.fixture
def site(tree: tuple[Path, Path], client: Callable[..., Http], tmp_path: Path) -> tuple[Http, Path, Path]:
    images, manifests = tree
    make_image(images / "open.tif", 400, 300)
    make_image(images / "book" / "p1.tif", 800, 600, (10, 200, 10))
    make_image(images / "book" / "p2.tif", 800, 600)
    make_image(images / "locked.tif", 300, 300)
    write(manifests / "book.yaml", "label: {en: [Book]}\naccess: restricted\ndegraded_max: 200\n")
    write(manifests / "locked.yaml", "label: {en: [Locked]}\npages: [{image: locked, access: restricted}]\n")
    users = tmp_path / "users.toml"
    add_user(users, "ann", "correct horse")
    http = client(
        images,
        manifests,
        auth_secret=SECRET,
        auth_users_file=str(users),
        auth_trusted_header="X-Remote-User",
        disk_cache_mb=64,
        trusted_proxies=TRUSTED,
    )
    return http, images, manifests


def login(http: Http, **kwargs: Any) -> str:
    """A session cookie header value for ann."""
    response = http.request(
        "POST",
        "/auth/login",
        headers={"content-type": "application/x-www-form-urlencoded"},
        **kwargs,
        content="user=ann&password=correct+horse&origin=http%3A%2F%2Ftestserver",
    )
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    return cookie.split(";")[0]


def token(http: Http, cookie: str, version: str = "2", origin: str = "http://testserver") -> dict[str, Any]:
    response = http.get(f"/auth/{version}/token?messageId=m1&origin={origin}", headers={"cookie": cookie})
    assert response.status_code == 200
    return message_of(response.text)


def message_of(page: str) -> dict[str, Any]:
    import json

    data = re.search(r'<script type="application/json" id="d">(.*?)</script>', page, re.S)
    assert data is not None
    parsed: dict[str, Any] = json.loads(data.group(1))
    return parsed


def test_open_image_unchanged(site: tuple[Http, Path, Path]) -> None:
    http, *_ = site
    response = http.get("/iiif/3/open/info.json")
    assert response.status_code == 200
    assert "service" not in response.json()
    assert response.headers["cache-control"].startswith("public")


def test_restricted_info_json_401_with_services(site: tuple[Http, Path, Path]) -> None:  # F06
    http, *_ = site
    response = http.get("/iiif/3/book%2Fp1/info.json")
    assert response.status_code == 401
    doc = response.json()
    assert doc["@context"][0] == "http://iiif.io/api/auth/2/context.json"
    # Denied: the degraded tier's document, as Authentication 1.0 viewers expect.
    assert doc["id"].endswith("/iiif/3/book%2Fp1;degraded")
    assert doc["maxWidth"] <= 200
    locked = http.get("/iiif/3/locked/info.json")
    assert locked.status_code == 401
    assert locked.json()["id"].endswith("/iiif/3/locked")
    probe, login_1 = doc["service"]
    assert probe["type"] == "AuthProbeService2"
    assert probe["id"].endswith(PROBE)
    access = probe["service"][0]
    assert (access["type"], access["profile"]) == ("AuthAccessService2", "active")
    assert {s["type"] for s in access["service"]} == {"AuthAccessTokenService2", "AuthLogoutService2"}
    assert login_1["profile"] == "http://iiif.io/api/auth/1/login"
    assert {s["profile"] for s in login_1["service"]} == {
        "http://iiif.io/api/auth/1/token",
        "http://iiif.io/api/auth/1/logout",
    }
    assert "private" in response.headers["cache-control"]
    v2 = http.get("/iiif/2/book%2Fp1/info.json")
    assert v2.status_code == 401
    assert v2.json()["service"][1]["@type"] == "AuthCookieService1"
    cookie = login(http)
    ok = http.get("/iiif/3/book%2Fp1/info.json", headers={"cookie": cookie})
    assert ok.status_code == 200
    assert ok.json()["width"] == 800
    assert ok.json()["id"].endswith("/iiif/3/book%2Fp1")
    assert ok.json()["maxWidth"] > 800
    assert "private" in ok.headers["cache-control"]
    # Authentication 1.0: info.json with the token as a bearer.
    tok = token(http, cookie, "1")["message"]["accessToken"]
    assert http.get("/iiif/2/book%2Fp1/info.json", headers={"authorization": f"Bearer {tok}"}).status_code == 200


def test_folder_default_and_page_rule(site: tuple[Http, Path, Path]) -> None:
    http, *_ = site
    assert http.get("/iiif/3/book%2Fp2/full/64,/0/default.jpg").status_code == 401  # the object's rule
    assert http.get("/iiif/3/locked/full/64,/0/default.jpg").status_code == 401  # a page's rule
    assert http.get("/iiif/3/locked;degraded/info.json").status_code == 404  # no degraded tier


def test_probe_without_and_with_token(site: tuple[Http, Path, Path]) -> None:  # F01, F03
    http, *_ = site
    response = http.get(PROBE)
    assert response.status_code == 200
    body = response.json()
    assert (body["type"], body["status"]) == ("AuthProbeResult2", 401)
    assert body["substitute"][0]["id"].endswith("/iiif/3/book%2Fp1;degraded")
    assert body["heading"]
    assert body["note"]
    assert http.get("/auth/2/probe/open").json()["status"] == 200
    assert http.get("/auth/2/probe/nothing").json()["status"] == 404
    cookie = login(http)
    message = token(http, cookie)
    assert message["origin"] == "http://testserver"
    tok = message["message"]
    assert (tok["type"], tok["messageId"]) == ("AuthAccessToken2", "m1")
    assert 0 < tok["expiresIn"] <= 600
    good = http.get(PROBE, headers={"authorization": f"Bearer {tok['accessToken']}"})
    assert good.json()["status"] == 200
    forged = tok["accessToken"][:-3] + ("AAA" if not tok["accessToken"].endswith("AAA") else "BBB")
    assert http.get(PROBE, headers={"authorization": f"Bearer {forged}"}).json()["status"] == 401
    assert http.get(PROBE, headers={"authorization": "Bearer x.y"}).json()["status"] == 401
    # A cookie is not a token: the probe reads the bearer only (2.0 section 5).
    assert http.get(PROBE, headers={"cookie": cookie}).json()["status"] == 401


def test_expired_token_and_session(site: tuple[Http, Path, Path]) -> None:  # F03
    http, *_ = site
    auth = http.app.state.auth
    session, _ = auth.new_session("ann")
    past = str(int(time.time()) - 5)
    expired = auth.signer.sign("token", session.user, session.sid, str(session.expires), past)
    assert http.get(PROBE, headers={"authorization": f"Bearer {expired}"}).json()["status"] == 401
    old = auth.signer.sign("session", "ann", "sid", past)
    assert http.get(TILE, headers={"cookie": f"{SESSION_COOKIE}={old}"}).status_code == 401
    # Signed with another secret: forged.
    other = Signer("t" * 40).sign("session", "ann", "sid", str(int(time.time()) + 999))
    assert http.get(TILE, headers={"cookie": f"{SESSION_COOKIE}={other}"}).status_code == 401


def test_logout_revokes(site: tuple[Http, Path, Path]) -> None:  # F10
    http, *_ = site
    cookie = login(http)
    tok = token(http, cookie)["message"]["accessToken"]
    assert http.get(TILE, headers={"cookie": cookie}).status_code == 200
    out = http.get("/auth/logout", headers={"cookie": cookie})
    assert out.status_code == 200
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert http.get(TILE, headers={"cookie": cookie}).status_code == 401
    assert http.get(PROBE, headers={"authorization": f"Bearer {tok}"}).json()["status"] == 401


def test_login_refuses_wrong_password(site: tuple[Http, Path, Path]) -> None:
    http, *_ = site
    response = http.request(
        "POST",
        "/auth/login",
        headers={"content-type": "application/x-www-form-urlencoded"},
        content="user=ann&password=wrong",
    )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    page = http.get("/auth/login?origin=http://x")
    assert "<form" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_cookie_flags(site: tuple[Http, Path, Path]) -> None:
    http, *_ = site

    def cookie(headers: dict[str, str], client: Any = None) -> str:
        """The session cookie's flags of a login with ``headers`` from ``client``."""
        response = http.request(
            "POST",
            "/auth/login",
            headers={"content-type": "application/x-www-form-urlencoded", **headers},
            content="user=ann&password=correct+horse",
            **({} if client is None else {"client": client}),
        )
        return str(response.headers["set-cookie"]).lower()

    plain = cookie({})
    assert "httponly" in plain
    assert "samesite=lax" in plain
    assert "secure" not in plain
    # Behind a trusted TLS proxy: the cookie must cross sites (viewers elsewhere), so None + Secure.
    https = cookie({"x-forwarded-proto": "https"}, TRUSTED)
    assert "samesite=none" in https
    assert "secure" in https
    assert "httponly" in https
    # The same header from anyone else is not believed (E10): no https flags.
    forged = cookie({"x-forwarded-proto": "https"}, OUTSIDER)
    assert "samesite=lax" in forged


def test_token_service_reflection(site: tuple[Http, Path, Path]) -> None:  # F04
    http, *_ = site
    cookie = login(http)
    evil_id = "</script><script>alert(1)</script>"
    from urllib.parse import quote

    page = http.get(
        f"/auth/2/token?messageId={quote(evil_id)}&origin=https://viewer.example.org", headers={"cookie": cookie}
    )
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert message_of(page.text)["message"]["messageId"] == evil_id
    assert "'*'" not in page.text
    assert '"*"' not in page.text
    assert "postMessage(d.message,d.origin)" in page.text
    assert page.headers["cache-control"] == "no-store"
    bad = http.get(f"/auth/2/token?messageId=1&origin={quote('javascript:alert(1)')}", headers={"cookie": cookie})
    assert bad.status_code == 200
    sent = message_of(bad.text)
    assert sent["origin"] == ""
    assert sent["message"]["profile"] == "invalidOrigin"
    assert "accessToken" not in bad.text
    anonymous = message_of(http.get("/auth/2/token?messageId=1&origin=https://v.example").text)
    assert anonymous["message"]["type"] == "AuthAccessTokenError2"
    assert anonymous["message"]["profile"] == "missingAspect"


def test_token_service_allowed_origins(tree: tuple[Path, Path], client: Callable[..., Http], tmp_path: Path) -> None:
    images, manifests = tree
    users = tmp_path / "users.toml"
    add_user(users, "ann", "correct horse")
    http = client(
        images,
        manifests,
        auth_secret=SECRET,
        auth_users_file=str(users),
        auth_allowed_origins="https://viewer.example.org",
    )
    cookie = login(http)
    ok = token(http, cookie, origin="https://viewer.example.org")
    assert ok["message"]["type"] == "AuthAccessToken2"
    evil = token(http, cookie, origin="https://evil.example")
    assert evil["message"]["profile"] == "invalidOrigin"
    assert "accessToken" not in evil["message"]
    assert evil["origin"] == "https://evil.example"  # the error goes to the asker only, never "*"


def test_cors_preflight_with_authorization(site: tuple[Http, Path, Path]) -> None:  # F05
    http, *_ = site
    response = http.options(
        PROBE,
        headers={
            "origin": "https://viewer.example.org",
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert response.headers.get("access-control-allow-credentials") is None  # never * with credentials
    probe = http.get(PROBE, headers={"origin": "https://viewer.example.org"})
    assert probe.headers["access-control-allow-origin"] == "*"
    assert probe.headers.get("access-control-allow-credentials") is None


TIER_SPELLINGS = [
    TILE,
    "/iiif/3/book%2Fp1/full/max/0/default.jpg",
    "/iiif/3/book%2Fp1/full/800,/0/default.jpg",
    "/iiif/3/book%2Fp1/pct:0,0,50,50/max/0/default.png",
    "/iiif/3/book%2Fp1/0,0,128,128/128,128/0/gray.jpg",
    "/iiif/3/book%2Fp1.tif/0,0,128,128/128,/0/default.jpg",  # the name with its extension
    "/iiif/2/book%2Fp1/0,0,128,128/128,/0/default.jpg",
    "/iiif/2/book%2Fp1/full/full/0/default.jpg",
]


def test_tier_bypass(site: tuple[Http, Path, Path]) -> None:  # F07
    http, *_ = site
    cookie = login(http)
    for path in TIER_SPELLINGS:  # warm every tier (memory, disk, memo) as an authorised user
        for _ in range(2):
            ok = http.get(path, headers={"cookie": cookie})
            assert ok.status_code == 200, path
            assert ok.headers["cache-control"] == "private, no-store"
    for path in TIER_SPELLINGS:
        anonymous = http.get(path)
        assert anonymous.status_code == 401, path
        assert not anonymous.headers["content-type"].startswith("image/")
        assert http.head(path).status_code == 401
        assert http.get(path + "?cache=recache").status_code in (400, 401, 404)
        # The protocol's own answers (memo, memory tier, page cache) never answer it.
        assert http.app.answer_in_protocol(uvicorn_scope(path)) is None  # type: ignore[attr-defined]
    assert http.app.state.memo.stats()["entries"] == 0


def test_no_route_hands_out_the_source_file(site: tuple[Http, Path, Path]) -> None:  # F13
    """No URL returns a source file as stored: not the file's own path under the server, not the
    identifier with its extension, not a static route; a TIFF output of a restricted image is as
    restricted as any other format, and even authorised it is a render, not the file."""
    http, images, _ = site
    source = (images / "book" / "p1.tif").read_bytes()
    for path in (
        "/book/p1.tif",
        "/images/book/p1.tif",
        "/iiif/3/book%2Fp1.tif",
        "/iiif/3/book/p1.tif",
        "/static/..%2F..%2Fbook%2Fp1.tif",
        "/iiif/3/open.tif",
        "/open.tif",
    ):
        r = http.get(path)
        if r.status_code in (301, 302, 303, 307, 308):  # the base URI of an image: its info.json
            r = http.get(r.headers["location"].removeprefix("http://testserver"))
            assert r.headers["content-type"].startswith("application/ld+json"), path
        else:
            assert r.status_code in (400, 401, 404), (path, r.status_code)
        assert not r.headers.get("content-type", "").startswith("image/"), path
        assert r.content != source
    restricted_tiff = "/iiif/3/book%2Fp1/full/max/0/default.tif"
    assert http.get(restricted_tiff).status_code == 401
    authorised = http.get(restricted_tiff, headers={"cookie": login(http)})
    assert authorised.status_code == 200
    assert authorised.headers["content-type"] == "image/tiff"
    assert authorised.content != source  # encoded anew from the pixels, whatever the request
    assert http.get("/iiif/3/open/full/max/0/default.tif").content != (images / "open.tif").read_bytes()


def test_keys_carry_the_tier(site: tuple[Http, Path, Path], client: Callable[..., Http]) -> None:  # F07
    """Every tier keeps restricted entries apart: a fresh app on the same disk tier, with the
    image made open, renders anew (it never finds the restricted entry under the open key)."""
    http, images, manifests = site
    cookie = login(http)
    restricted = http.get(TILE, headers={"cookie": cookie})
    assert restricted.status_code == 200
    write(manifests / "book.yaml", "label: {en: [Book]}\n")
    other = client(images, manifests, disk_cache_mb=64)
    opened = other.get(TILE)
    assert opened.status_code == 200
    assert opened.headers["etag"] != restricted.headers["etag"]


@pytest.mark.parametrize("warm", ["cold", "memory", "memo", "disk"])
def test_probe_status_equals_real_status(site: tuple[Http, Path, Path], warm: str) -> None:  # F02
    http, *_ = site
    cookie = login(http)
    tok = token(http, cookie)["message"]["accessToken"]
    if warm != "cold":
        for _ in range(2):
            assert http.get(TILE, headers={"cookie": cookie}).status_code == 200
    if warm == "disk":
        http.app.state.image_service.cache.memory.clear()
    for headers, probe_headers in (({}, {}), ({"cookie": cookie}, {"authorization": f"Bearer {tok}"})):
        real = http.get(TILE, headers=headers).status_code
        assert http.get(PROBE, headers=probe_headers).json()["status"] == real
    for path in ("/iiif/3/open/0,0,64,64/64,/0/default.jpg", "/iiif/3/nothing/full/max/0/default.jpg"):
        identifier = path.split("/")[3]
        assert http.get(f"/auth/2/probe/{identifier}").json()["status"] == http.get(path).status_code


def test_trusted_header_only_from_trusted_proxies(site: tuple[Http, Path, Path]) -> None:  # F09
    http, *_ = site
    forged = {"x-remote-user": "ann", "x-forwarded-for": TRUSTED}
    assert http.get(TILE, headers=forged, client=OUTSIDER).status_code == 401
    assert http.get(TILE, headers=forged, client="127.0.0.1").status_code == 401
    page = http.get("/auth/login", headers=forged, client=OUTSIDER)
    assert "set-cookie" not in page.headers
    assert "<form" in page.text
    assert http.get(PROBE, headers=forged, client=OUTSIDER).json()["status"] == 401
    assert http.get(TILE, headers={"x-remote-user": "ann"}, client=TRUSTED).status_code == 200
    sso = http.get("/auth/login", headers={"x-remote-user": "ann"}, client=TRUSTED)
    assert SESSION_COOKIE in sso.headers["set-cookie"]


def _width(body: bytes) -> int:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(body)) as image:
        return int(image.width)


def test_degraded_tier(site: tuple[Http, Path, Path]) -> None:
    """The degraded tier is an image of its own, 800x600 scaled to 200 px on its longer side:
    every request is in its pixels, and nothing finer than them is served."""
    http, *_ = site
    d = "/iiif/3/book%2Fp1;degraded"
    info = http.get(f"{d}/info.json")
    assert info.status_code == 200
    doc = info.json()
    assert doc["id"].endswith(d)
    assert (doc["width"], doc["height"], doc["maxWidth"], doc["maxHeight"]) == (200, 150, 200, 150)
    assert all(size["width"] <= 200 for size in doc["sizes"])
    assert doc["tiles"][0]["scaleFactors"][0] == 1
    assert doc["service"][0]["type"] == "AuthProbeService2"
    for path, width in (
        (f"{d}/full/max/0/default.jpg", 200),
        (f"{d}/full/200,/0/default.jpg", 200),
        (f"{d}/0,0,100,75/100,/0/default.jpg", 100),
        (f"{d}/0,0,512,512/128,/0/default.png", 128),
        ("/iiif/2/book%2Fp1;degraded/full/full/0/default.jpg", 200),
    ):
        response = http.get(path)
        assert response.status_code == 200, path
        assert _width(response.content) == width, path
        assert response.headers["cache-control"].startswith("private")
    link = http.get(f"{d}/0,0,100,75/100,/0/default.jpg").headers["link"]
    assert f"{d}/0,0,100,75/max/0/default.jpg" in link  # canonical, in the tier's own pixels
    assert http.get(f"{d}/full/400,/0/default.jpg").status_code in (400, 403)
    assert http.get(f"{d}/0,0,10,10/100,/0/default.jpg").status_code in (400, 403)
    assert http.get("/iiif/3/open;degraded/info.json").status_code == 404


def test_degraded_tier_refuses_upscaling(tree: tuple[Path, Path], client: Callable[..., Http]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 800, 600)
    write(manifests / "p.yaml", "label: {en: [P]}\naccess: restricted\ndegraded_max: 200\n")
    http = client(images, manifests, auth_secret=SECRET, allow_upscaling=True)
    assert http.get("/iiif/3/p;degraded/full/^200,/0/default.jpg").status_code == 200
    assert http.get("/iiif/3/p;degraded/full/^400,/0/default.jpg").status_code == 403
    assert http.get("/iiif/3/p;degraded/0,0,10,10/^100,/0/default.jpg").status_code == 403


def test_rules_follow_the_descriptions(site: tuple[Http, Path, Path]) -> None:
    http, _, manifests = site
    path = "/iiif/3/open/0,0,64,64/64,/0/default.jpg"
    for _ in range(2):
        assert http.get(path).status_code == 200
    assert http.app.state.memo.stats()["entries"] > 0
    write(manifests / "open.yaml", "label: {en: [Now restricted]}\naccess: restricted\n")
    http.portal.call(http.app.state.auth.load)
    assert http.app.state.memo.stats()["entries"] == 0
    assert http.get(path).status_code == 401
    assert http.app.answer_in_protocol(uvicorn_scope(path)) is None  # type: ignore[attr-defined]


def test_rules_follow_presentation_rescans_and_scan_nothing_of_their_own(site: tuple[Http, Path, Path]) -> None:
    """The follower reads the rules from catalogues presentation requests scanned; on its own it
    rescans only every ``access_rules_interval`` (60 s), never every source check: a rescan walks
    the whole image root, and doing it each second cost a tenth of a core and the tail latency."""
    http, _, manifests = site
    path = "/iiif/3/open/0,0,64,64/64,/0/default.jpg"
    assert http.get(path).status_code == 200
    presentation = http.app.state.presentation
    scans: list[float] = []
    scan = presentation._scan

    def counted() -> Any:
        scans.append(time.monotonic())
        return scan()

    presentation._scan = counted
    with http.portal.wrap_async_context_manager(http.app.router.lifespan_context(http.app)):
        time.sleep(1.0)  # the start-up work (the rules' first read, Change Discovery's check) scans
        started = len(scans)
        time.sleep(2.5)  # two of the follower's rounds, and the source check interval is long past
        assert len(scans) == started
        write(manifests / "open.yaml", "label: {en: [Now restricted]}\naccess: restricted\n")
        assert http.get("/iiif/presentation/3/collection").status_code == 200  # rescans, for its own reasons
        rescans = len(scans)
        assert rescans > started
        deadline = time.monotonic() + 5
        while http.get(path).status_code != 401:
            assert time.monotonic() < deadline, "the rules did not follow the rescan"
            time.sleep(0.1)
        assert len(scans) == rescans  # the rules came from those rescans' catalogue


def test_bad_rules_are_description_errors() -> None:
    from iiifserver.presentation.description import DescriptionError, parse_object

    with pytest.raises(DescriptionError, match="access"):
        parse_object({"pages": ["a"], "access": "secret"}, "x.yaml")
    with pytest.raises(DescriptionError, match="degraded_max"):
        parse_object({"pages": [{"image": "a", "degraded_max": -1}]}, "x.yaml")
    parsed = parse_object({"pages": [{"image": "a", "access": "restricted", "degraded_max": 300}]}, "x.yaml")
    assert (parsed.pages[0].access, parsed.pages[0].degraded_max) == ("restricted", 300)


def test_manifests_carry_the_services(site: tuple[Http, Path, Path]) -> None:
    http, _, manifests = site
    http.portal.call(http.app.state.auth.load)  # as the app's start-up does (no lifespan here)
    book = http.get("/iiif/presentation/3/book/manifest").json()
    assert book["@context"][0] == "http://iiif.io/api/auth/2/context.json"
    assert book["@context"][-1] == "http://iiif.io/api/presentation/3/context.json"
    body = book["items"][0]["items"][0]["items"][0]["body"]
    probe, *image_services = body["service"]
    assert probe["type"] == "AuthProbeService2"
    assert probe["id"].endswith(PROBE)
    assert {s.get("type") or s.get("@type") for s in image_services} == {"ImageService3", "ImageService2"}
    for service in image_services:
        assert service["service"][0]["profile"] == "http://iiif.io/api/auth/1/login"
    # Thumbnails show the degraded tier (anyone may see them), never the restricted one.
    for thumbnail in [*book["thumbnail"], book["items"][0]["thumbnail"][0]]:
        assert ";degraded/full/" in thumbnail["id"]
        assert max(thumbnail["width"], thumbnail["height"]) <= 200
        assert http.get(thumbnail["id"].replace("http://testserver", "")).status_code == 200
    locked = http.get("/iiif/presentation/3/locked/manifest").json()
    assert "thumbnail" not in locked  # no degraded tier: no thumbnail at all
    assert "thumbnail" not in locked["items"][0]
    opened = http.get("/iiif/presentation/3/open/manifest").json()
    assert opened["@context"] == "http://iiif.io/api/presentation/3/context.json"
    assert [s.get("type") or s.get("@type") for s in opened["items"][0]["items"][0]["items"][0]["body"]["service"]] == [
        "ImageService3",
        "ImageService2",
    ]
    # A folder default changes the rules, not the object's description: the manifest follows.
    write(manifests / "_collection.yaml", "label: {en: [Top]}\naccess: restricted\n")
    http.portal.call(http.app.state.auth.load)
    opened = http.get("/iiif/presentation/3/open/manifest").json()
    assert opened["items"][0]["items"][0]["items"][0]["body"]["service"][0]["type"] == "AuthProbeService2"
