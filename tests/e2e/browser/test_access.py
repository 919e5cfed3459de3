"""Restricted images in Chromium (docs/access.md): our deep-zoom page as an IIIF Authorization Flow
2.0 client (probe, degraded substitute, access window, token by postMessage, full image), and
Mirador 4 / Universal Viewer 4 with the Authentication API 1.0 services."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, Request

from iiifserver.web.auth_users import add_user
from tests.e2e.conftest import start_server, stop_server
from tests.web.conftest import save_pyramid, solid

SECRET = "e2e-secret-" + "x" * 32
FULL_TILE = re.compile(r"/iiif/[23]/book%2Fp1/[^/]+/[^/]+/0/default\.jpg$")
DEGRADED_TILE = re.compile(r"/iiif/[23]/book%2Fp1;degraded/[^/]+/[^/]+/0/default\.jpg$")


@dataclass(frozen=True)
class Restricted:
    base: str


@pytest.fixture(scope="module")
def restricted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restricted]:
    root = tmp_path_factory.mktemp("restricted")
    images = root / "images"
    save_pyramid(solid(2400, 1600, (30, 120, 200)), images / "book" / "p1.tif")
    manifests = root / "manifests"
    manifests.mkdir()
    (manifests / "book.yaml").write_text("label: {en: [Restricted book]}\naccess: restricted\ndegraded_max: 300\n")
    users = root / "users.toml"
    add_user(users, "reader", "open sesame")
    extra = ("--manifests", str(manifests), "--auth-secret", SECRET, "--auth-users-file", str(users))
    proc, port = start_server(images, root / "cache", *extra, log=root / "server.log", workers=1)
    try:
        yield Restricted(f"http://127.0.0.1:{port}")
    finally:
        stop_server(proc)


def _record(page: Page) -> list[str]:
    urls: list[str] = []

    def on_request(request: Request) -> None:
        urls.append(request.url)

    page.on("request", on_request)
    return urls


def _log_in(popup: Page) -> None:
    popup.wait_for_load_state()
    popup.fill("input[name=user]", "reader")
    popup.fill("input[name=password]", "open sesame")
    popup.click("button[type=submit]")


def test_deep_zoom_page_is_a_2_0_client(page: Page, restricted_server: Restricted) -> None:
    base = restricted_server.base
    requested = _record(page)
    page.goto(f"{base}/objects/book")
    page.wait_for_selector("body[data-opened=true]")
    bar = page.wait_for_selector("#auth-bar[data-auth=degraded]")
    assert bar.is_visible()
    page.wait_for_function(
        "() => window.iiifViewer.world.getItemAt(0) && window.iiifViewer.world.getItemAt(0).getFullyLoaded()"
    )
    assert any(DEGRADED_TILE.search(url) for url in requested)
    assert not any(FULL_TILE.search(url) for url in requested)  # no full-tier pixel asked for before login
    assert any("/auth/2/probe/book%2Fp1" in url for url in requested)
    with page.expect_popup() as popup_info:
        page.click("#auth-login")
    popup = popup_info.value
    assert popup.url.startswith(f"{base}/auth/login?origin=")
    _log_in(popup)
    popup.wait_for_event("close", timeout=10_000)
    page.wait_for_selector("#auth-bar[data-auth=full]")
    assert any("/auth/2/token?messageId=" in url for url in requested)
    page.wait_for_function(
        "() => window.iiifViewer.world.getItemAt(0) && window.iiifViewer.world.getItemAt(0).getFullyLoaded()"
    )
    page.wait_for_timeout(300)
    assert any(FULL_TILE.search(url) for url in requested)
    token = page.evaluate("() => window.iiifDeepZoom.auth.token")
    assert isinstance(token, str)
    assert len(token) > 20
    assert page.is_visible("#auth-logout")


def test_token_is_posted_only_to_the_asking_origin(page: Page, restricted_server: Restricted) -> None:
    """A page of another origin framing the token service with a forged ``origin`` gets no message."""
    base = restricted_server.base
    page.goto(f"{base}/auth/login")
    page.fill("input[name=user]", "reader")
    page.fill("input[name=password]", "open sesame")
    page.click("button[type=submit]")
    page.wait_for_timeout(200)
    other = page.context.new_page()
    other.goto("about:blank")
    messages = other.evaluate(
        """async (url) => {
            const got = [];
            window.addEventListener('message', (e) => got.push(e.data));
            const frame = document.createElement('iframe');
            frame.src = url;
            document.body.appendChild(frame);
            await new Promise((r) => setTimeout(r, 1500));
            return got;
        }""",
        f"{base}/auth/2/token?messageId=1&origin=https%3A%2F%2Fevil.example",
    )
    assert messages == []


def _statuses(page: Page) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    page.on("response", lambda response: seen.append((response.url, response.status)))
    return seen


def _wait_for(page: Page, seen: list[tuple[str, int]], pattern: re.Pattern[str], timeout_ms: int = 20_000) -> None:
    for _ in range(timeout_ms // 250):
        if any(pattern.search(url) and status == 200 for url, status in seen):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"no 200 for {pattern.pattern}: {seen[-10:]}")


FULL_INFO = re.compile(r"/iiif/[23]/book%2Fp1/info\.json$")
TOKEN_1 = re.compile(r"/auth/1/token\?.*messageId=")


def _login_in_popup(page: Page, base: str, click: Callable[[], None]) -> None:
    with page.expect_popup() as popup_info:
        click()
    popup = popup_info.value
    assert popup.url.startswith(f"{base}/auth/login")
    _log_in(popup)
    popup.wait_for_event("close", timeout=10_000)


def test_mirador_1_0(page: Page, restricted_server: Restricted) -> None:
    """Mirador 4.0.0 (Authentication API 1.0): the 401 info.json is the degraded tier's (its own
    id), which it shows with its login bar; after the login window and the token service
    (postMessage) it asks for info.json with the token and gets the full one (200). It keeps
    drawing the degraded tile source until the page is reloaded; after a reload (the session
    cookie makes info.json 200) it shows the full image."""
    base = restricted_server.base
    seen = _statuses(page)
    page.goto(f"{base}/mirador/book")
    _wait_for(page, seen, DEGRADED_TILE)
    assert not any(FULL_TILE.search(url) and status == 200 for url, status in seen)
    page.get_by_role("button", name=re.compile("continue", re.I)).first.click()
    _login_in_popup(page, base, lambda: page.get_by_role("button", name=re.compile("^log in$", re.I)).first.click())
    _wait_for(page, seen, TOKEN_1)
    _wait_for(page, seen, FULL_INFO)
    page.get_by_role("button", name=re.compile("log out", re.I)).first.wait_for()
    page.reload()
    _wait_for(page, seen, FULL_TILE)


def test_universal_viewer_1_0(page: Page, restricted_server: Restricted) -> None:
    """Universal Viewer 4 (Authentication API 1.0, on the 2.1 info.json): the 401 opens its login
    dialog at once (it draws no degraded image behind it); after the login window and the token
    service it asks for info.json with the token and shows the full image."""
    base = restricted_server.base
    seen = _statuses(page)
    page.goto(f"{base}/uv/book")
    link = page.get_by_text("Log in", exact=True).first
    link.wait_for()
    assert not any(FULL_TILE.search(url) and status == 200 for url, status in seen)
    _login_in_popup(page, base, link.click)
    _wait_for(page, seen, TOKEN_1)
    _wait_for(page, seen, FULL_INFO)
    _wait_for(page, seen, FULL_TILE)
