"""Each viewer in a real browser: embedded from another origin, and our own pages.

A screenful of tiles: at least ``SCREENFUL`` distinct tile responses (region ``x,y,w,h``) with
status 200 before any interaction; with 256-pixel tiles that covers the 1280×800 window's
viewer area at the home zoom of the demo images.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.browser.conftest import OtherOrigin, Watch, host_of, not_blank, wait_until, zoom_in
from tests.e2e.conftest import LiveServer, start_server, stop_server

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
    if name in ("osd", "mirador"):
        # The snippets set crossOriginPolicy (Mirador: osdConfig): tiles are fetched in CORS mode,
        # so OpenSeadragon may draw them with WebGL (no "tainted" warning, checked by Watch).
        assert watch.tile_origins, "no tile requested"
        assert set(watch.tile_origins) == {other_origin.base}, set(watch.tile_origins)


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
    # UV 4.4 would ask for "/images/data:…" (a data: URI made a path): our UV page prevents it.
    assert not [url for url in watch.requested if "/images/data:" in url], "a data: URI requested as a path"


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


@pytest.fixture(scope="module")
def nested_server(demo_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose top collection holds a sub-collection (a folder of folders) and an object."""
    root = tmp_path_factory.mktemp("nested")
    images = root / "images"
    letters = images / "archive" / "letters"
    letters.mkdir(parents=True)
    source = demo_images / "painting.tif"
    for n in (1, 2):
        shutil.copy(source, letters / f"p{n}.tif")
    shutil.copy(source, images / "loose.tif")
    (root / "manifests").mkdir()
    extra = ("--manifests", str(root / "manifests"))
    proc, port = start_server(images, root / "cache", *extra, log=root / "server.log", workers=1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


def test_landing_page_sub_collection_cards_link_and_show_a_thumbnail(page: Page, nested_server: str) -> None:
    watch = Watch(nested_server)
    watch.attach(page)
    page.goto(nested_server + "/")
    page.wait_for_selector("#items li.item-collection")
    card = page.locator("#items li.item-collection")
    assert card.count() == 1
    link = card.get_by_role("link", name="Archive", exact=True)
    assert link.get_attribute("href") == f"{nested_server}/collections/archive"
    thumbnail = card.locator("img")
    assert thumbnail.count() == 1
    thumbnail.scroll_into_view_if_needed()
    wait_until(page, lambda: bool(thumbnail.evaluate("img => img.complete && img.naturalWidth > 0")), "its thumbnail")
    assert "/iiif/3/archive%2Fletters%2Fp1/" in str(thumbnail.get_attribute("src"))
    link.click()
    page.wait_for_selector("#items li.item-manifest")
    assert page.locator("#items h2").all_inner_texts() == ["Letters"]
    watch.assert_clean()
