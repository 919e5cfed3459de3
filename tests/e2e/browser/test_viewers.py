"""Each viewer in a real browser: embedded from another origin, and our own pages.

A screenful of tiles: at least ``SCREENFUL`` distinct tile responses (region ``x,y,w,h``) with
status 200 before any interaction; with 256-pixel tiles that covers the 1280×800 window's
viewer area at the home zoom of the demo images.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.browser.conftest import OtherOrigin, Watch, host_of, not_blank, wait_until, zoom_in
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e
SCREENFUL = 6


def check_viewer(page: Page, watch: Watch, selector: str, *, manifest: bool = True) -> None:
    wait_until(page, lambda: len(set(watch.ok_tiles())) >= SCREENFUL, f"{SCREENFUL} tiles")
    if manifest:
        assert watch.manifests, "the manifest was not requested"
        assert all(status in (200, 304) for _, status in watch.manifests), watch.manifests
    page.wait_for_timeout(500)
    assert not_blank(page.screenshot()), "the screenshot is blank"
    before = watch.scales(sorted(set(watch.ok_tiles())))
    count = len(watch.tiles)
    zoom_in(page, selector)

    def deeper() -> bool:
        new = [url for url, status in watch.tiles[count:] if status == 200]
        tiles = [url for url in new if url in watch.ok_tiles()]
        return bool(tiles) and min(watch.scales(tiles)) < min(before)

    wait_until(page, deeper, "deeper tiles after zooming in")
    page.wait_for_timeout(500)
    assert watch.failures == [], watch.failures
    assert watch.console_errors == [], watch.console_errors


@pytest.mark.parametrize(
    ("name", "selector"),
    [
        ("osd", "#iiif-osd"),
        ("mirador", "#iiif-mirador .openseadragon-canvas"),
        ("uv", "#iiif-uv .openseadragon-canvas"),
    ],
)
def test_viewer_embedded_from_another_origin(
    page: Page, live_server: LiveServer, other_origin: OtherOrigin, name: str, selector: str
) -> None:
    watch = Watch(live_server.base)
    watch.attach(page)
    page.goto(f"{other_origin.base}/{name}.html")
    check_viewer(page, watch, selector)
    # No CDN, nothing else: only the embedding page's server and the IIIF server.
    assert watch.hosts <= {host_of(other_origin.base), host_of(live_server.base)}, watch.hosts


def test_iframe_embedded_from_another_origin(page: Page, live_server: LiveServer, other_origin: OtherOrigin) -> None:
    watch = Watch(live_server.base)
    watch.attach(page)
    page.goto(f"{other_origin.base}/iframe.html")
    check_viewer(page, watch, "iframe")
    frame = page.frame_locator("iframe")
    assert frame.locator("#osd .openseadragon-canvas").count() == 1
    assert watch.hosts <= {host_of(other_origin.base), host_of(live_server.base)}, watch.hosts


@pytest.mark.parametrize(
    ("path", "selector"),
    [
        ("/objects/painting", "#osd"),
        ("/objects/book-of-hours", "#osd"),
        ("/embed/album", "#osd"),
        ("/mirador/book-of-hours", "#mirador .openseadragon-canvas"),
        ("/uv/painting", "#uv .openseadragon-canvas"),
    ],
)
def test_own_viewer_pages(page: Page, live_server: LiveServer, path: str, selector: str) -> None:
    watch = Watch(live_server.base)
    watch.attach(page)
    page.goto(live_server.base + path)
    check_viewer(page, watch, selector)
    assert watch.hosts <= {host_of(live_server.base)}, watch.hosts


def test_landing_page_lists_objects_with_thumbnails(page: Page, live_server: LiveServer) -> None:
    watch = Watch(live_server.base)
    watch.attach(page)
    page.goto(live_server.base + "/")
    page.wait_for_selector("#items li")
    titles = page.locator("#items h2").all_inner_texts()
    assert "Abstract composition no. 7" in titles
    assert page.locator("#items img").count() >= 3
    page.locator("#items img").first.scroll_into_view_if_needed()
    wait_until(page, lambda: any(status == 200 for _, status in watch.tiles), "a thumbnail")
    link = page.get_by_role("link", name="Abstract composition no. 7", exact=True)
    assert link.get_attribute("href") == f"{live_server.base}/objects/painting"
    link.click()
    page.wait_for_selector("body[data-opened]")
    watch.assert_clean()
