"""Fixtures for the web-layer tests: a hostile little image root and in-process clients.

The image root (``<base>/img``) holds:

- ``sample.tif``: 2000x1500 tiled JPEG pyramid with a gradient (x -> red, y -> green);
- ``mutable.tif``: a small pyramid that the conditional-request test replaces (attack case D07);
- ``a/b c/page.tif`` (sub-folder, with a space), ``café.tif`` (NFC name), ``résumé.tif`` stored
  with an NFD name, ``odd "name" <x>.tif`` (characters that must be escaped when echoed);
- ``alias.tif`` -> ``sample.tif`` (a symlink inside the root: allowed); ``loop.tif`` -> itself,
  ``dangling.tif`` -> nothing;
- ``escape.tif`` -> ``<base>/img-private/secret.tif`` (a sibling directory whose name starts with
  the root's: a prefix check would let it through), ``private-dir`` -> ``<base>/img-private``;
- ``dir.tif`` (a directory), ``fifo.tif`` (a FIFO: opening it would block);
- ``fake.tif`` (a real JPEG: plain JPEGs are served), ``svg.tif`` and ``gif.tif`` (refused).

Requests go through httpx's ASGI transport (``Http``) on one event loop in a blocking portal, so
tests stay synchronous (hypothesis-friendly). httpx normalises ``/../`` and re-encodes paths, so
byte-exact raw paths go through ``iiifserver.asgi_call.call`` instead (``Http.raw``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
import pyvips
from starlette.applications import Starlette

from iiifserver import asgi_call
from iiifserver.app import create_app
from iiifserver.config import Settings

TRUSTED_PROXY = "10.9.8.7"
UNTRUSTED_CLIENT = "203.0.113.9"

NFD_NAME = unicodedata.normalize("NFD", "résumé") + ".tif"
ODD_NAME = 'odd "name" <x>.tif'


@dataclass(frozen=True, slots=True)
class ImageRoot:
    base: Path  # parent of the root; holds the sibling and outside folders
    root: Path  # the configured image root
    secret: Path  # a valid TIFF outside the root (in the sibling-prefix folder)

    @property
    def sensitive(self) -> tuple[str, ...]:
        """Strings that must never appear in a response the client did not spell itself."""
        return (str(self.base), str(self.root), str(self.root.resolve()))


def _gradient(width: int, height: int) -> Any:
    xyz = pyvips.Image.xyz(width, height)
    red = xyz[0] * (255.0 / max(1, width - 1))
    green = xyz[1] * (255.0 / max(1, height - 1))
    blue = red * 0 + 128
    return red.bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> Any:
    return (pyvips.Image.black(width, height, bands=3) + list(rgb)).cast("uchar").copy(interpretation="srgb")


def save_pyramid(image: Any, path: Path, tile: int = 256) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.tiffsave(str(path), tile=True, tile_width=tile, tile_height=tile, pyramid=True, compression="jpeg", Q=90)


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> ImageRoot:
    base = tmp_path_factory.mktemp("iiifweb")
    root = base / "img"
    private = base / "img-private"
    root.mkdir()
    private.mkdir()

    save_pyramid(_gradient(2000, 1500), root / "sample.tif")
    save_pyramid(solid(600, 400, (220, 30, 30)), root / "mutable.tif")
    save_pyramid(_gradient(300, 200), root / "a" / "b c" / "page.tif", tile=128)
    save_pyramid(_gradient(300, 200), root / unicodedata.normalize("NFC", "café.tif"), tile=128)
    save_pyramid(_gradient(300, 200), root / NFD_NAME, tile=128)
    save_pyramid(_gradient(300, 200), root / ODD_NAME, tile=128)
    secret = private / "secret.tif"
    save_pyramid(_gradient(300, 200), secret, tile=128)

    os.symlink("sample.tif", root / "alias.tif")
    os.symlink(secret, root / "escape.tif")
    os.symlink(private, root / "private-dir", target_is_directory=True)
    os.symlink("loop.tif", root / "loop.tif")
    os.symlink("missing.tif", root / "dangling.tif")
    (root / "dir.tif").mkdir()
    os.mkfifo(root / "fifo.tif")
    _gradient(64, 48).jpegsave(str(root / "fake.tif"))
    (root / "svg.tif").write_text(
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        '<image href="file:///etc/passwd" width="64" height="64"/></svg>\n'
    )
    (root / "gif.tif").write_bytes(_gradient(64, 48).gifsave_buffer())
    return ImageRoot(base=base, root=root, secret=secret)


def make_settings(image_root: ImageRoot, tmp: Path, **overrides: Any) -> Settings:
    settings = Settings(
        images=image_root.root,
        cache=tmp,
        manifests=tmp / "manifests",
        trusted_proxies=TRUSTED_PROXY,
        tile_threads=4,
        heavy_threads=2,
    )
    return replace(settings, **overrides)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What ``asgi_call.call`` returned, shaped like the parts of ``httpx.Response`` tests use."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """Synchronous front for in-process requests to one app, all on one event loop."""

    def __init__(self, app: Starlette, portal: anyio.from_thread.BlockingPortal) -> None:
        self.app = app
        self.portal = portal

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        client: str = "127.0.0.1",
        raise_app_exceptions: bool = True,
        content: str | bytes | None = None,
    ) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(
                app=self.app, client=(client, 50123), raise_app_exceptions=raise_app_exceptions
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return await http.request(method, url, headers=headers, content=content)

        return self.portal.call(go)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def raw(self, path: str, *, method: str = "GET", headers: list[tuple[str, str]] | None = None) -> RawResponse:
        """Send ``path`` byte-exact (no normalisation of ``..``, no re-encoding)."""
        status, response_headers, body = self.portal.call(
            lambda: asgi_call.call(self.app, path, method=method, headers=headers)
        )
        return RawResponse(status, httpx.Headers(response_headers), body)


@pytest.fixture(scope="session")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as p:
        yield p


@pytest.fixture(scope="session")
def app(image_root: ImageRoot, tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    return create_app(make_settings(image_root, tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def http(app: Starlette, portal: anyio.from_thread.BlockingPortal) -> Http:
    return Http(app, portal)


@pytest.fixture
def make_http(image_root: ImageRoot, tmp_path: Path, portal: anyio.from_thread.BlockingPortal) -> Any:
    """A client for an app with some settings changed (public_url, allow_upscaling, ...)."""

    def make(**overrides: Any) -> Http:
        return Http(create_app(make_settings(image_root, tmp_path, **overrides)), portal)

    return make


class OpenRecorder:
    """Records files opened (Python-level ``open``/``os.open``) outside the image root.

    Audit hooks cannot be removed, so one is installed for the session and does nothing
    unless a test is recording.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False
        self.root = ""
        self.base = ""
        self.outside: list[str] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event != "open" or not args:
            return
        target = args[0]
        if isinstance(target, int) or target is None:
            return
        path = os.fsdecode(target) if isinstance(target, bytes | os.PathLike) else str(target)
        real = os.path.realpath(path)
        if real.startswith(self.base) and os.path.commonpath((self.root, real)) != self.root:
            with self.lock:
                self.outside.append(real)


_RECORDER = OpenRecorder()
_HOOKED = False


@pytest.fixture
def opened_outside(image_root: ImageRoot) -> Iterator[list[str]]:
    """The list of files under the fixture base but outside the image root that got opened."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_RECORDER.hook)
        _HOOKED = True
    _RECORDER.root = str(image_root.root.resolve())
    _RECORDER.base = str(image_root.base.resolve())
    _RECORDER.outside = []
    _RECORDER.active = True
    try:
        yield _RECORDER.outside
    finally:
        _RECORDER.active = False


def assert_no_leak(image_root: ImageRoot, body: bytes | str, sent: str = "") -> None:
    """Error bodies name the identifier at most: no filesystem path, no stack trace."""
    from urllib.parse import unquote

    text = body if isinstance(body, str) else body.decode("utf-8", errors="replace")
    assert "Traceback" not in text
    assert 'File "' not in text
    decoded_sent = unquote(sent)
    for secret in image_root.sensitive:
        if secret in text:
            # Only acceptable if the client itself sent that text (the identifier is echoed).
            assert secret in decoded_sent, f"response leaks {secret!r}: {text[:300]!r}"
