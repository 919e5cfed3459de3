"""axe-core on the pages (no serious or critical violation) and the three interface languages."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.browser.conftest import axe, wait_until
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("path", "ready"),
    [
        ("/", "#items li"),
        ("/objects/book-of-hours", "body[data-opened]"),
        ("/embed/painting", "body[data-opened]"),
        ("/objects/no-such-object", "main.not-found"),
    ],
)
def test_our_pages_have_no_serious_violations(page: Page, live_server: LiveServer, path: str, ready: str) -> None:
    page.goto(live_server.base + path)
    page.wait_for_selector(ready)
    page.wait_for_timeout(500)
    assert axe(page) == []


def test_region_panel_with_output_has_no_serious_violations(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.base + "/objects/book-of-hours")
    page.wait_for_selector("body[data-opened]")
    page.click("#use-view")
    page.wait_for_selector("#cite-output:not([hidden])")
    assert axe(page) == []


@pytest.mark.parametrize(("path", "viewer"), [("/mirador/painting", "#mirador canvas"), ("/uv/painting", "#uv canvas")])
def test_viewer_pages_chrome_has_no_serious_violations(
    page: Page, live_server: LiveServer, path: str, viewer: str
) -> None:
    """Scoped to our own header: Mirador's and UV's insides are theirs (docs/viewers.md)."""
    page.goto(live_server.base + path)
    page.wait_for_selector(viewer)
    assert axe(page, ".site-header") == []
    assert page.get_attribute("html", "lang") == "en"


@pytest.mark.parametrize(
    ("locale", "lang", "heading"), [("fr-FR", "fr", "Citer une zone"), ("nl-BE", "nl", "Een gebied citeren")]
)
def test_browser_language_and_switch(
    browser: Browser, live_server: LiveServer, locale: str, lang: str, heading: str
) -> None:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(live_server.base + "/objects/painting")
        page.wait_for_selector("body[data-opened]")
        assert page.get_attribute("html", "lang") == lang
        assert page.inner_text("#cite-heading") == heading
        assert axe(page) == []
        # The switch: English, kept across pages.
        page.select_option("#lang-select", "en")
        assert page.get_attribute("html", "lang") == "en"
        assert page.inner_text("#cite-heading") == "Cite a region"
        page.goto(live_server.base + "/")
        page.wait_for_selector("#items li")
        assert page.get_attribute("html", "lang") == "en"
        wait_until(page, lambda: page.inner_text("#collection-title") == "Demonstration collection", "English title")
    finally:
        context.close()


def test_keyboard_reaches_every_control(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.base + "/objects/painting")
    page.wait_for_selector("body[data-opened]")
    reached = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
    for control in ("lang-select", "select-toggle", "use-view", "region-x", "region-y", "region-w", "region-h"):
        assert control in reached, (control, reached)
