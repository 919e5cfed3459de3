"""Browser tests: Debian's Chromium driven by Playwright, a live iiifserver, and a second origin.

The IIIF server is the e2e ``live_server`` (``http://127.0.0.1:PORT``). The second origin is a
small static HTTP server on ``http://localhost:OTHER`` (another host name and port, so another
origin) serving pages made of the embed snippets in ``docs/viewers.md``. Chromium is ``/usr/bin/chromium``
(``scripts/install.sh --test`` installs it with apt); Playwright never downloads a browser.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, sync_playwright

from tests.e2e.conftest import REPO, LiveServer, free_port

CHROMIUM = "/usr/bin/chromium"
# --no-sandbox: root in a container; swiftshader: WebGL without a GPU (UV's OpenSeadragon 6
# draws with WebGL); the rest keeps Chromium off the (closed) network at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
AXE = REPO / "viewers" / "node_modules" / "axe-core" / "axe.min.js"
VIEWERS_DOC = (REPO / "docs" / "viewers.md").read_text(encoding="utf-8")
EXAMPLE = "https://iiif.example.org"

# Console errors and failed requests that are the viewers' own and harmless (docs/viewers.md: "Browser
# tests and the console messages they allow"); anything else fails a test.
ALLOWED_CONSOLE = (
    re.compile(r"Accessing element\.ref was removed in React 19"),  # Mirador 4's bundled MUI
)
ALLOWED_FAILED_URL = (
    re.compile(r"/images/data:image/gif;base64,"),  # UV 4.4: a placeholder data: URI made relative
)
TAINTED = re.compile(r"tainted", re.I)
# A tile: region x,y,w,h and size w,h (or w,). UV 4.4 takes the manifest's ImageService2 when
# one is listed beside the ImageService3, so Image API 2.1 tiles count too.
TILE = re.compile(r"/iiif/[23]/[^/]+/(\d+),(\d+),(\d+),(\d+)/(\d+),(\d*)/0/default\.jpg$")


def snippet(name: str) -> str:
    match = re.search(rf"<!-- embed-snippet: {name} -->\n```html\n(.*?)```", VIEWERS_DOC, re.S)
    assert match is not None, f"docs/viewers.md has no embed snippet {name!r}"
    return match.group(1)


@dataclass
class Watch:
    """What a page did: image responses, failures, console errors."""

    base: str
    tiles: list[tuple[str, int]] = field(default_factory=list)  # (url, status) of /iiif/{3,2}/ images
    manifests: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)
    requested: list[str] = field(default_factory=list)  # every URL asked for, in order
    tile_origins: list[str | None] = field(default_factory=list)  # Origin header of each tile request (CORS mode)

    def attach(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("requestfailed", self._failed)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"page error: {exc}"))

    def _request(self, request: Request) -> None:
        self.hosts.add(urlsplit(request.url).netloc)
        self.requested.append(request.url)
        if TILE.search(request.url):
            self.tile_origins.append(request.headers.get("origin"))

    def _response(self, response: Response) -> None:
        url = response.url
        if response.status >= 400 and not any(p.search(url) for p in ALLOWED_FAILED_URL):
            self.failures.append(f"{response.status} {url}")
        if re.search(r"/iiif/[23]/", url) and re.search(r"\.(jpg|png|webp)$", url):
            self.tiles.append((url, response.status))
        if url.endswith("/manifest"):
            self.manifests.append((url, response.status))

    def _failed(self, request: Request) -> None:
        if not any(p.search(request.url) for p in ALLOWED_FAILED_URL):
            self.failures.append(f"failed {request.url}: {request.failure}")

    def _console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "warning" and TAINTED.search(text):
            # OpenSeadragon drops WebGL for tiles loaded without CORS (crossOriginPolicy unset).
            self.console_errors.append(f"warning: {text}")
            return
        if message.type != "error":
            return
        location = message.location.get("url", "") if message.location else ""
        if any(p.search(text) for p in ALLOWED_CONSOLE):
            return
        if text.startswith("Failed to load resource") and any(p.search(location) for p in ALLOWED_FAILED_URL):
            return
        self.console_errors.append(f"{text} ({location})")

    def assert_clean(self) -> None:
        assert self.failures == [], self.failures
        assert self.console_errors == [], self.console_errors

    def ok_tiles(self) -> list[str]:
        return [url for url, status in self.tiles if status == 200 and TILE.search(url)]

    def scales(self, urls: list[str]) -> list[float]:
        """Full-image pixels per output pixel of each tile: smaller is deeper."""
        out = []
        for url in urls:
            m = TILE.search(url)
            assert m is not None
            out.append(int(m.group(3)) / int(m.group(5)))
        return out


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# until it stops, and later tests that call asyncio.run() would fail.
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "browser tests need Debian's chromium: scripts/install.sh --test installs it"
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class OtherOrigin:
    base: str  # http://localhost:PORT
    root: Path


@pytest.fixture(scope="package")
def other_origin(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtherOrigin]:
    """Pages on another origin embedding the docs' snippets, pointed at the live server."""
    root = tmp_path_factory.mktemp("other-origin")
    for name in ("osd", "mirador", "uv", "iframe"):
        body = snippet(name).replace(EXAMPLE, live_server.base)
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Embedded viewer</title>'
            f'<link rel="icon" href="data:,"></head>\n<body><main><h1>A museum page</h1>\n{body}</main></body></html>\n'
        )
        (root / f"{name}.html").write_text(page, encoding="utf-8")

    def handler(*args: Any, **kwargs: Any) -> _Quiet:
        return _Quiet(*args, directory=str(root), **kwargs)

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost" vs the IIIF server's "127.0.0.1": another origin for the browser.
        yield OtherOrigin(f"http://localhost:{port}", root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def not_blank(png: bytes) -> bool:
    """A screenshot with real content: enough pixel variance, not one flat colour."""
    image = Image.open(io.BytesIO(png)).convert("L")
    return ImageStat.Stat(image).stddev[0] > 12


def axe(page: Page, context: str | None = None) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations (within ``context``, a CSS selector, if given).

    Evaluated through the DevTools protocol, which the pages' CSP does not restrict.
    """
    page.evaluate(AXE.read_text(encoding="utf-8"))
    target = json.dumps(context) if context else "document"
    results = page.evaluate(f"() => axe.run({target}, {{resultTypes: ['violations']}})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def content_state_param(state: dict[str, Any]) -> str:
    """Content State 1.0 'content-state-encoded': encodeURIComponent, then base64url, no padding."""
    text = quote(json.dumps(state, separators=(",", ":")), safe="!~*'()")
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def wait_until(page: Page, condition: Any, what: str, timeout: float = 45.0) -> None:
    """Polls ``condition()`` while letting the page's events arrive (Playwright's sync API only
    delivers them inside its own calls, so a plain sleep would see nothing)."""
    for _ in range(int(timeout * 4)):
        if condition():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out waiting for {what}")


def zoom_in(page: Page, selector: str, steps: int = 6) -> None:
    """Wheel-zoom at the centre of the viewer, as a person would."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(steps):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(150)
