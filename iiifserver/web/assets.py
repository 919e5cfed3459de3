"""Static viewer assets: OpenSeadragon, Mirador, Universal Viewer and our own page scripts.

Owns: the allow-list of files served under ``/viewers/…`` and their caching. The npm packages
are installed by ``scripts/install.sh`` (``npm ci`` in ``viewers/``) and served straight from
``viewers/node_modules/<package>/<dist folder>``: no copy step that could go stale, and only
the files the pages need are reachable (one pattern list per package; everything else in
``node_modules`` answers 404).

Two spellings of every asset:

- ``/viewers/{name}@{version}/{file}``: what our pages use; the version is the installed
  package's (our own scripts: a hash of their contents), so the answer never changes and is
  cached for a year (``immutable``).
- ``/viewers/{name}/{file}``: for the embed snippets other sites copy, so a viewer upgrade
  does not break them; cached for an hour, revalidated by ETag.

Finding a file and reading its size and date are file-system calls: they run in the I/O lane
given as ``run_io`` (the server's), like every other file access off the tile path; the body is
streamed by Starlette's ``FileResponse``.
Must not know: IIIF, manifests, pages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO = PACKAGE_DIR.parent
NODE_MODULES = REPO / "viewers" / "node_modules"
SITE_DIR = Path(__file__).resolve().parent / "pages" / "static"

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=3600"
RunBlocking = Callable[..., Awaitable[Any]]
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", re.ASCII)
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True, slots=True)
class AssetPackage:
    name: str  # URL name
    root: Path  # folder the files are served from
    patterns: tuple[str, ...]  # allowed relative paths (fnmatch, '*' does not cross '/')
    version_file: Path | None  # package.json whose "version" goes into the URL; None: hash of the files

    def allows(self, relative: str) -> bool:
        parts = relative.split("/")
        if not all(_SEGMENT.fullmatch(p) for p in parts):
            return False  # also refuses '', '.', '..' and anything encoded
        return any(len(parts) == pattern.count("/") + 1 and fnmatchcase(relative, pattern) for pattern in self.patterns)


PACKAGES = (
    AssetPackage(
        "openseadragon",
        NODE_MODULES / "openseadragon" / "build" / "openseadragon",
        ("openseadragon.min.js", "images/*.png"),
        NODE_MODULES / "openseadragon" / "package.json",
    ),
    # The UMD build bundles React, MUI and OpenSeadragon: one self-contained file.
    AssetPackage(
        "mirador", NODE_MODULES / "mirador" / "dist", ("mirador.min.js",), NODE_MODULES / "mirador" / "package.json"
    ),
    # UV.js loads its ~190 webpack chunks from its own folder (publicPath "auto").
    AssetPackage(
        "uv",
        NODE_MODULES / "universalviewer" / "dist",
        ("uv.css", "umd/*.js"),
        NODE_MODULES / "universalviewer" / "package.json",
    ),
    AssetPackage("site", SITE_DIR, ("*.js", "*.css"), None),
)


def package_version(package: AssetPackage) -> str:
    """The installed version (``"missing"`` when ``npm ci`` has not run: pages still load)."""
    if package.version_file is None:
        digest = hashlib.sha256()
        for path in sorted(package.root.glob("*")):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:12]
    try:
        return str(json.loads(package.version_file.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return "missing"


class Assets:
    """Resolves and serves allow-listed files; ``url()`` gives the versioned URL pages use."""

    def __init__(self, packages: tuple[AssetPackage, ...] = PACKAGES, run_io: RunBlocking | None = None) -> None:
        self.packages = {p.name: p for p in packages}
        self.versions = {p.name: package_version(p) for p in packages}  # at start-up, before serving
        self.run_io = run_io  # None: look files up in the caller's thread (tests, one-off uses)

    def url(self, name: str, relative: str) -> str:
        return f"/viewers/{name}@{self.versions[name]}/{relative}"

    def installed(self) -> bool:
        return all(v != "missing" for v in self.versions.values())

    def resolve(self, spec: str, relative: str) -> tuple[Path, bool] | None:
        """``(file, versioned)`` for ``/viewers/{spec}/{relative}``, or None (404)."""
        name, at, version = spec.partition("@")
        package = self.packages.get(name)
        if package is None or (at and version != self.versions[name]) or not package.allows(relative):
            return None
        root = package.root.resolve()
        path = (root / relative).resolve()
        # The segment check already excludes '..'; a symbolic link out of the folder is refused too.
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path, bool(at)

    def lookup(self, spec: str, relative: str) -> tuple[Path, bool, os.stat_result] | None:
        """``resolve`` plus the file's ``stat``: all the file-system work of one request but the body."""
        found = self.resolve(spec, relative)
        if found is None:
            return None
        path, versioned = found
        try:
            return path, versioned, path.stat()
        except OSError:  # removed since resolve() saw it
            return None

    async def endpoint(self, request: Request) -> Response:
        spec, relative = request.path_params["package"], request.path_params["file"]
        if self.run_io is None:
            found = self.lookup(spec, relative)
        else:
            found = await self.run_io(self.lookup, spec, relative)
        if found is None:
            return PlainTextResponse(
                "404 Not Found: no such viewer asset\n",
                status_code=404,
                headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
            )
        path, versioned, stat = found
        tag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        headers = {
            "cache-control": IMMUTABLE if versioned else SHORT,
            "etag": tag,
            "x-content-type-options": "nosniff",
        }
        if tag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=headers)
        media = _TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, headers=headers, stat_result=stat)

    def routes(self) -> list[Route]:
        return [Route("/viewers/{package}/{file:path}", self.endpoint, methods=["GET", "HEAD"])]
