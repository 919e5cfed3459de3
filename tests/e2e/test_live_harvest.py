"""A live harvest of the Change Discovery log: the real ``iiifserver serve`` with two worker
processes sharing one store, harvested over HTTP while descriptions change, stopped, changed while
down, and started again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import start_server, stop_server
from tests.presentation.conftest import make_image, write
from tests.presentation.discovery_shapes import collection_problems, page_problems

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class Harvester:
    """Section 3.5 of the specification: from ``last`` backwards along ``prev``, stopping at the
    first activity at or before the newest one seen on the previous visit."""

    def __init__(self) -> None:
        self.newest: str | None = None
        self.seen: set[tuple[str, str, str]] = set()

    def harvest(self, base: str) -> list[tuple[str, str]]:
        with httpx.Client(base_url=base, timeout=30) as http:
            collection = self._get(http, "/iiif/discovery/activity/all-changes")
            assert collection_problems(collection) == []
            found: list[dict[str, Any]] = []
            url: str | None = collection["last"]["id"]
            while url is not None:
                page = self._get(http, url)
                assert page_problems(page) == []
                for item in reversed(page["orderedItems"]):
                    if self.newest is not None and item["endTime"] <= self.newest:
                        url = None
                        break
                    identity = (item["type"], item["object"]["id"], item["endTime"])
                    assert identity not in self.seen, identity
                    self.seen.add(identity)
                    found.append(item)
                else:
                    url = page.get("prev", {}).get("id")
        if found:
            self.newest = found[0]["endTime"]  # same zone and precision throughout: text order is time order
        prefix = f"{base}/iiif/presentation/3"
        return [(item["type"], item["object"]["id"].removeprefix(prefix)) for item in reversed(found)]

    @staticmethod
    def _get(http: httpx.Client, url: str) -> Any:
        response = http.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/ld+json")
        return response.json()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    images, manifests, cache = tmp_path / "img", tmp_path / "manifests", tmp_path / "cache"
    make_image(images / "painting.tif", 640, 480)
    make_image(images / "map.tif", 500, 500)
    write(manifests / "painting.yaml", "label: {en: Painting}\npages: [painting]\n")
    write(manifests / "map.yaml", "label: {en: Map}\npages: [map]\n")
    return images, manifests, cache


def test_live_harvest_across_a_restart(tree: tuple[Path, Path, Path], tmp_path: Path) -> None:
    images, manifests, cache = tree
    flags = ("--manifests", str(manifests), "--discovery-check-interval", "0", "--discovery-page-size", "2")
    harvester = Harvester()
    proc, port = start_server(images, cache, *flags, log=tmp_path / "one.log", workers=2)
    try:
        base = f"http://127.0.0.1:{port}"
        assert sorted(harvester.harvest(base)) == [
            ("Create", "/collection"),
            ("Create", "/map/manifest"),
            ("Create", "/painting/manifest"),
        ]
        write(manifests / "painting.yaml", "label: {en: Oil painting}\npages: [painting]\n")
        # Requests land on either worker; each change is in the log once.
        for _ in range(4):
            httpx.get(f"{base}/iiif/discovery/activity/all-changes", timeout=30)
        assert harvester.harvest(base) == [("Update", "/collection"), ("Update", "/painting/manifest")]
        assert harvester.harvest(base) == []
    finally:
        stop_server(proc)

    (manifests / "map.yaml").unlink()  # while the server is down
    (images / "map.tif").unlink()
    proc, port = start_server(images, cache, *flags, log=tmp_path / "two.log", workers=2)
    try:
        base = f"http://127.0.0.1:{port}"
        assert harvester.harvest(base) == [("Update", "/collection"), ("Delete", "/map/manifest")]
        with httpx.Client(base_url=base, timeout=30) as http:
            top = http.get("/iiif/presentation/3/collection").json()
            assert {"id": f"{base}/iiif/discovery/activity/all-changes", "type": "OrderedCollection"} in top["service"]
            assert http.get("/iiif/discovery/activity/all-changes").json()["totalItems"] == 7
    finally:
        stop_server(proc)
