"""HTML pages for people: the landing page, a deep-zoom page per object, Mirador and Universal Viewer.

Owns: the page routes, their security headers (Content-Security-Policy, framing) and filling the
templates in ``web/pages/`` (``string.Template``; the page's configuration goes in as JSON inside
a non-executed ``<script type="application/json">``, so no inline script is needed and the CSP
can forbid them); and the JSON service description ``/`` gives everyone else (``describe_service``:
the APIs' paths). The pages are static HTML + JS that fetch the Presentation JSON themselves, so
this module knows only the manifest and collection URLs, never their contents.

Routes (object identifiers may contain ``/``, so the viewer comes *before* the object in the
path: ``/objects/a/b/mirador`` could not tell the object ``a/b`` in Mirador from an object
named ``a/b/mirador``):

- ``/``: the landing page (HTML for browsers; the JSON service description for everyone else),
  ``/collections/{path}`` a sub-collection;
- ``/objects/{object}``: deep zoom (OpenSeadragon) with region citing; ``/embed/{object}`` the
  same without chrome, for iframes; ``/mirador/{object}``, ``/uv/{object}``.

Must not know: how manifests are built (``ObjectExists`` is injected).
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from iiifserver.config import Settings
from iiifserver.web.assets import Assets
from iiifserver.web.urls import public_base

TEMPLATES = Path(__file__).resolve().parent / "pages"
PRESENTATION = "/iiif/presentation/3"
ObjectExists = Callable[[str], Awaitable[bool]]
# A request -> the collection path its landing page shows ("" for the top collection; another
# for a request sent to an institution's own host).
HostCollection = Callable[[Request], str]
VIEWERS = ("objects", "embed", "mirador", "uv")
MAX_OBJECT_CHARS = 1024


def manifest_path(object_id: str) -> str:
    """Path of an object's manifest (the object id keeps its ``/``; everything else is encoded)."""
    return f"{PRESENTATION}/{quote(object_id, safe='/')}/manifest"


def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text(encoding="utf-8"))


def _json_for_html(value: Any) -> str:
    # Inside <script type="application/json">: '<' escaped so no '</script>' or '<!--' can close it.
    return orjson.dumps(value).decode().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Pages:
    def __init__(
        self, settings: Settings, assets: Assets, exists: ObjectExists, host_collection: HostCollection | None = None
    ) -> None:
        self.settings = settings
        self.host_collection = host_collection
        self.assets = assets
        self.exists = exists
        self.layout = _template("layout.html")
        self.bodies = {name: _template(f"{name}.html") for name in ("landing", "deepzoom", "viewer", "not_found")}

    # -- headers ---------------------------------------------------------------------------

    def csp(self, base: str, *, framable: bool) -> str:
        """Only this server: scripts and styles from it, JSON and images from it (and its public URL).

        ``style-src 'unsafe-inline'``: Mirador (CSS-in-JS) and OpenSeadragon set inline styles.
        ``blob:``/``data:`` images: OpenSeadragon's canvas drawers and UV's bundled icons.
        """
        origin = urlsplit(base)
        public = f"{origin.scheme}://{origin.netloc}" if origin.scheme and origin.netloc else ""
        own = f"'self' {public}".strip()
        ancestors = "*" if framable else "'self'"
        return "; ".join(
            (
                "default-src 'none'",
                f"script-src {own}",
                f"style-src {own} 'unsafe-inline'",
                f"img-src {own} data: blob:",
                f"connect-src {own}",
                f"frame-src {own}",  # the access token service (docs/access.md), an iframe of this server
                f"font-src {own} data:",
                "base-uri 'none'",
                "form-action 'self'",
                f"frame-ancestors {ancestors}",
            )
        )

    def headers(self, base: str, *, framable: bool) -> dict[str, str]:
        headers = {
            "content-security-policy": self.csp(base, framable=framable),
            "x-content-type-options": "nosniff",
            "referrer-policy": "strict-origin-when-cross-origin",
            # Pages are cheap and name the current asset versions: always revalidate.
            "cache-control": "no-cache",
        }
        if not framable:
            headers["x-frame-options"] = "SAMEORIGIN"
        return headers

    # -- rendering -------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        body: str,
        config: dict[str, Any],
        *,
        title: str,
        scripts: tuple[tuple[str, str], ...],
        styles: tuple[tuple[str, str], ...] = (),
        status: int = 200,
        framable: bool = False,
        page_class: str = "",
    ) -> Response:
        base = public_base(request, self.settings)
        config = {
            "base": base,
            "collection": f"{base}{PRESENTATION}/collection",
            "pages": {name: f"{base}/{name}/" for name in VIEWERS},
            "home": f"{base}/",
            **config,
        }
        prefix = urlsplit(base).path  # behind a proxy with X-Forwarded-Prefix

        def url(name: str, file: str) -> str:
            return html.escape(prefix + self.assets.url(name, file))

        tags = [("site", "site.css"), *styles]
        links = "\n".join(f'<link rel="stylesheet" href="{url(n, f)}">' for n, f in tags)
        script_files = [("site", "i18n.js"), *scripts]
        script_tags = "\n".join(f'<script src="{url(n, f)}"></script>' for n, f in script_files)
        page = self.layout.substitute(
            title=html.escape(title),
            styles=links,
            config=_json_for_html(config),
            body=body,
            scripts=script_tags,
            page_class=html.escape(page_class),
            home=html.escape(prefix + "/"),
        )
        return HTMLResponse(page, status_code=status, headers=self.headers(base, framable=framable))

    def not_found(self, request: Request, what: str) -> Response:
        # The way home keeps the prefix of a proxy (X-Forwarded-Prefix) or of the public URL.
        home = urlsplit(public_base(request, self.settings)).path + "/"
        body = self.bodies["not_found"].substitute(what=html.escape(what), home=html.escape(home))
        return self.render(request, body, {"page": "not_found"}, title="Not found", scripts=(), status=404)

    # -- endpoints -------------------------------------------------------------------------

    async def landing(self, request: Request) -> Response:
        path = request.path_params.get("path", "")
        if not path and self.host_collection is not None:  # an institution's own host: its collection
            path = self.host_collection(request)
        collection = f"{PRESENTATION}/collection" + (f"/{quote(path, safe='/')}" if path else "")
        base = public_base(request, self.settings)
        body = self.bodies["landing"].substitute()
        config = {"page": "landing", "collectionUrl": f"{base}{collection}", "collectionPath": path}
        return self.render(
            request, body, config, title="iiifserver", scripts=(("site", "manifest.js"), ("site", "landing.js"))
        )

    async def viewer(self, request: Request) -> Response:
        kind = request.url.path.split("/")[1]
        object_id: str = request.path_params["object"]
        if not object_id or len(object_id) > MAX_OBJECT_CHARS or any(ord(c) < 32 for c in object_id):
            return self.not_found(request, object_id[:200])
        if not await self.exists(object_id):
            return self.not_found(request, object_id)
        base = public_base(request, self.settings)
        config: dict[str, Any] = {
            "page": kind,
            "object": object_id,
            "objectPath": quote(object_id, safe="/"),
            "manifest": f"{base}{manifest_path(object_id)}",
        }
        title = f"{object_id} · iiifserver"
        if kind in ("objects", "embed"):
            config["osdImages"] = urlsplit(base).path + self.assets.url("openseadragon", "images/")
            body = self.bodies["deepzoom"].substitute()
            scripts: tuple[tuple[str, str], ...] = (
                ("openseadragon", "openseadragon.min.js"),
                ("site", "contentstate.js"),
                ("site", "manifest.js"),
                ("site", "deepzoom.js"),
            )
            return self.render(
                request, body, config, title=title, scripts=scripts, framable=True, page_class=f"page-{kind}"
            )
        body = self.bodies["viewer"].substitute(viewer_id=kind)
        if kind == "mirador":
            scripts = (("mirador", "mirador.min.js"), ("site", "contentstate.js"), ("site", "mirador-page.js"))
            return self.render(
                request, body, config, title=title, scripts=scripts, framable=True, page_class="page-mirador"
            )
        scripts = (("uv", "umd/UV.js"), ("site", "contentstate.js"), ("site", "manifest.js"), ("site", "uv-page.js"))
        return self.render(
            request,
            body,
            config,
            title=title,
            scripts=scripts,
            styles=(("uv", "uv.css"),),
            framable=True,
            page_class="page-uv",
        )


def _prefixed(value: Any, prefix: str) -> Any:
    """Every absolute path (a string starting with ``/``) in a JSON value, with ``prefix`` before it."""
    if isinstance(value, str):
        return prefix + value if value.startswith("/") else value
    if isinstance(value, dict):
        return {key: _prefixed(item, prefix) for key, item in value.items()}
    if isinstance(value, list):
        return [_prefixed(item, prefix) for item in value]
    return value


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html first; curl, viewers and monitors get the JSON description."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept


def describe_service() -> dict[str, Any]:
    """The APIs this server offers and their paths, as ``/`` answers a client that is not a browser."""
    return {
        "service": "iiifserver",
        "image_api": {"3.0": "/iiif/3/{identifier}/info.json", "2.1": "/iiif/2/{identifier}/info.json"},
        "presentation_api": {
            "3.0": {
                "collection": "/iiif/presentation/3/collection",
                "manifest": "/iiif/presentation/3/{object}/manifest",
            }
        },
        "change_discovery_api": {"1.0": "/iiif/discovery/activity/all-changes"},
    }


def routes(
    settings: Settings,
    assets: Assets,
    exists: ObjectExists,
    host_collection: HostCollection | None = None,
) -> list[Route]:
    pages = Pages(settings, assets, exists, host_collection)

    async def home(request: Request) -> Response:
        if wants_html(request):
            return await pages.landing(request)
        # Paths as the client must send them: behind a proxy's prefix, with it.
        return JSONResponse(_prefixed(describe_service(), urlsplit(public_base(request, settings)).path))

    out = [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/collections/{path:path}", pages.landing, methods=["GET", "HEAD"]),
        *assets.routes(),
    ]
    for kind in VIEWERS:
        route = Route(f"/{kind}/{{object:path}}", pages.viewer, methods=["GET", "HEAD"])
        # As in image_routes: a decoded newline must reach the check (and get the 404 page).
        route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
        out.append(route)
    return out
