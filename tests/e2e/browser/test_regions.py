"""Citing regions: content-state links open the viewers on the region; region URLs return exactly it."""

from __future__ import annotations

import io
import json
import urllib.request
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page

from tests.e2e.browser.conftest import Watch, content_state_param, wait_until
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e
BOOK = "book-of-hours"

VIEW = """() => {
  const v = window.iiifViewer, item = v.world.getItemAt(0);
  const r = item.viewportToImageRectangle(v.viewport.getBounds(true));
  return {x: r.x, y: r.y, w: r.width, h: r.height, page: v.currentPage()};
}"""


def get(url: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def manifest(live_server: LiveServer, object_id: str) -> dict[str, Any]:
    return dict(json.loads(get(f"{live_server.base}/iiif/presentation/3/{object_id}/manifest")[1]))


def region_state(manifest_json: dict[str, Any], canvas_index: int, region: tuple[int, int, int, int]) -> str:
    canvas = manifest_json["items"][canvas_index]["id"]
    state = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "type": "Annotation",
        "motivation": ["contentState"],
        "target": {
            "id": f"{canvas}#xywh={','.join(map(str, region))}",
            "type": "Canvas",
            "partOf": [{"id": manifest_json["id"], "type": "Manifest"}],
        },
    }
    return content_state_param(state)


def assert_shows(view: dict[str, float], region: tuple[int, int, int, int]) -> None:
    """The viewport contains the region and fits it: one side matches, the other has margin."""
    x, y, w, h = region
    tolerance = 0.02 * max(w, h)
    assert view["x"] <= x + tolerance, (view, region)
    assert view["y"] <= y + tolerance, (view, region)
    assert view["x"] + view["w"] >= x + w - tolerance, (view, region)
    assert view["y"] + view["h"] >= y + h - tolerance, (view, region)
    assert abs(view["w"] - w) <= tolerance or abs(view["h"] - h) <= tolerance, (view, region)


def open_deep_zoom(page: Page, url: str) -> Watch:
    watch = Watch(url)
    watch.attach(page)
    page.goto(url)
    page.wait_for_selector("body[data-opened]")
    page.wait_for_timeout(300)
    return watch


def test_content_state_link_opens_the_page_on_the_region(page: Page, live_server: LiveServer) -> None:
    book = manifest(live_server, BOOK)
    region = (300, 400, 500, 350)
    watch = open_deep_zoom(page, f"{live_server.base}/objects/{BOOK}?iiif-content={region_state(book, 2, region)}")
    view = page.evaluate(VIEW)
    assert view["page"] == 2
    assert_shows(view, region)
    # The region is selected: its URL and a link back to it are offered.
    service = book["items"][2]["items"][0]["items"][0]["body"]["service"][0]["id"]
    assert page.input_value("#region-url") == f"{service}/300,400,500,350/max/0/default.jpg"
    assert page.input_value("#state-url").startswith(f"{live_server.base}/objects/{BOOK}?iiif-content=")
    watch.assert_clean()


def test_drawn_region_gives_exact_region_url_and_a_link_back(page: Page, live_server: LiveServer) -> None:
    watch = open_deep_zoom(page, f"{live_server.base}/objects/{BOOK}")
    page.click("#select-toggle")
    box = page.locator("#osd").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 120, cy - 90)
    page.mouse.down()
    page.mouse.move(cx + 40, cy + 30, steps=5)
    page.mouse.move(cx + 80, cy + 60, steps=5)
    page.mouse.up()
    page.wait_for_selector("#cite-output:not([hidden])")
    x, y, w, h = (int(page.input_value(f"#region-{k}")) for k in "xywh")
    assert w > 50
    assert h > 50
    url = page.input_value("#region-url")
    assert url.endswith(f"/{x},{y},{w},{h}/max/0/default.jpg")

    # The region URL is canonical (the server's own Link header names it) and returns exactly
    # that region: same size, the same pixels as the crop of the full image.
    headers, body = get(url)
    assert headers["link"].split(">")[0].lstrip("<") == url
    region = Image.open(io.BytesIO(body)).convert("RGB")
    assert region.size == (w, h)
    base = url.rsplit("/", 4)[0]
    _, full_body = get(f"{base}/full/max/0/default.jpg")
    full = Image.open(io.BytesIO(full_body)).convert("RGB")
    crop = full.crop((x, y, x + w, y + h))
    diff = np.abs(np.asarray(region, dtype=np.int16) - np.asarray(crop, dtype=np.int16))
    assert diff.mean() < 4.0, diff.mean()  # two JPEG encodings of the same pixels (fine print)
    # Losslessly (PNG), the region and the crop are the same pixels.
    _, region_png = get(url.replace("default.jpg", "default.png"))
    _, full_png = get(f"{base}/full/max/0/default.png")
    exact = np.asarray(Image.open(io.BytesIO(region_png)).convert("RGB"), dtype=np.int16)
    full_crop = np.asarray(Image.open(io.BytesIO(full_png)).convert("RGB").crop((x, y, x + w, y + h)), dtype=np.int16)
    assert exact.shape == full_crop.shape
    assert np.abs(exact - full_crop).max() <= 1

    citation = page.input_value("#citation")
    assert "Book of hours" in citation
    assert "rightsstatements.org" in citation
    state_url = page.input_value("#state-url")
    assert state_url in citation

    page.goto("about:blank")
    open_deep_zoom(page, state_url)
    assert_shows(page.evaluate(VIEW), (x, y, w, h))
    watch.assert_clean()


def test_region_typed_with_the_keyboard(page: Page, live_server: LiveServer) -> None:
    open_deep_zoom(page, f"{live_server.base}/objects/{BOOK}")
    page.focus("#region-x")
    for value in ("100", "200", "640", "480"):
        page.keyboard.type(value)
        page.keyboard.press("Tab")
    page.focus("#region-h")
    page.keyboard.press("Enter")
    page.wait_for_selector("#cite-output:not([hidden])")
    assert page.input_value("#region-url").endswith("/100,200,640,480/max/0/default.jpg")
    page.wait_for_timeout(1500)  # the animated zoom
    assert_shows(page.evaluate(VIEW), (100, 200, 640, 480))


def test_a_bad_content_state_still_opens_the_object(page: Page, live_server: LiveServer) -> None:
    open_deep_zoom(page, f"{live_server.base}/objects/{BOOK}?iiif-content=not-base64!")
    assert page.evaluate(VIEW)["page"] == 0
    assert page.inner_text("#status") == "The link's view could not be read; showing the whole object."


def test_mirador_opens_a_content_state_link_on_the_region(page: Page, live_server: LiveServer) -> None:
    book = manifest(live_server, BOOK)
    region = (300, 400, 500, 350)
    watch = Watch(live_server.base)
    watch.attach(page)
    page.goto(f"{live_server.base}/mirador/{BOOK}?iiif-content={region_state(book, 2, region)}")
    wait_until(page, lambda: any("book%2Fpage-03/" in url for url in watch.ok_tiles()), "tiles of the third page")
    state = page.evaluate(
        """() => {
          const s = window.miradorInstance.store.getState();
          const id = Object.keys(s.windows)[0];
          return {canvas: s.windows[id].canvasId, viewer: s.viewers[id]};
        }"""
    )
    assert state["canvas"] == book["items"][2]["id"]
    viewer = state["viewer"]
    assert abs(viewer["x"] - 550) < 5, viewer  # the region's centre
    assert abs(viewer["y"] - 575) < 5, viewer
    assert 1 / viewer["zoom"] >= region[2] - 1  # the whole region's width is visible
    watch.assert_clean()


def test_uv_opens_a_content_state_link_on_the_canvas(page: Page, live_server: LiveServer) -> None:
    book = manifest(live_server, BOOK)
    watch = Watch(live_server.base)
    watch.attach(page)
    page.goto(f"{live_server.base}/uv/{BOOK}?iiif-content={region_state(book, 2, (300, 400, 500, 350))}")
    wait_until(page, lambda: any("book%2Fpage-03/" in url for url in watch.ok_tiles()), "tiles of the third page")
    watch.assert_clean()
