"""Viewer assets (``iiifserver.web.assets``): the file-system work of a request runs through the
I/O lane it is given; allow-listed files answer with an ETag and a 304 on a match; the rest 404."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from iiifserver.web.assets import AssetPackage, Assets


class RecordingLane:
    """Runs jobs in a separate thread, as the server's I/O lane does, and remembers what ran where."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.threads: set[int] = set()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        def job() -> Any:
            self.threads.add(threading.get_ident())
            return fn(*args)

        self.jobs.append(getattr(fn, "__name__", repr(fn)))
        return await asyncio.to_thread(job)


def _package(tmp_path: Path) -> AssetPackage:
    root = tmp_path / "site"
    root.mkdir()
    (root / "page.js").write_text("console.log(1);\n")
    (root / "secret.txt").write_text("no\n")
    return AssetPackage("site", root, ("*.js",), None)


def _get(assets: Assets, path: str, headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    async def get() -> httpx.Response:
        # httpx, not asgi_call: FileResponse streams, and stops at the first http.disconnect.
        transport = httpx.ASGITransport(app=Starlette(routes=assets.routes()))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers or [])

    response = asyncio.run(get())
    return response.status_code, dict(response.headers), response.content


def test_lookup_runs_in_the_io_lane_off_the_loop(tmp_path: Path) -> None:
    lane = RecordingLane()
    assets = Assets((_package(tmp_path),), run_io=lane.run)
    status, headers, body = _get(assets, "/viewers/site/page.js")
    assert status == 200
    assert body == b"console.log(1);\n"
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert lane.jobs == ["lookup"]
    assert threading.get_ident() not in lane.threads


def test_etag_match_is_304_and_versioned_url_is_immutable(tmp_path: Path) -> None:
    assets = Assets((_package(tmp_path),), run_io=RecordingLane().run)
    status, headers, _ = _get(assets, f"/viewers/site@{assets.versions['site']}/page.js")
    assert status == 200
    assert "immutable" in headers["cache-control"]
    status, again, body = _get(assets, "/viewers/site/page.js", [("if-none-match", headers["etag"])])
    assert (status, body) == (304, b"")
    assert again["etag"] == headers["etag"]
    assert again["cache-control"] == "public, max-age=3600"


def test_unlisted_missing_and_other_version_are_404(tmp_path: Path) -> None:
    lane = RecordingLane()
    assets = Assets((_package(tmp_path),), run_io=lane.run)
    for path in ("/viewers/site/secret.txt", "/viewers/site/gone.js", "/viewers/site@0/page.js", "/viewers/x/a.js"):
        status, headers, _ = _get(assets, path)
        assert status == 404, path
        assert headers["cache-control"] == "no-store"
    assert len(lane.jobs) == 4


def test_a_file_removed_after_resolving_is_404(tmp_path: Path) -> None:
    package = _package(tmp_path)
    assets = Assets((package,))
    resolved = assets.resolve("site", "page.js")
    assert resolved is not None
    (package.root / "page.js").unlink()
    assert assets.lookup("site", "page.js") is None
