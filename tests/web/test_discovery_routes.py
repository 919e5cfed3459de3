"""Tests for the Change Discovery log as served (``/iiif/discovery/activity/...``): a harvester reading
from the last page backwards, create/update/delete/move on real files with the server restarted in
between, nothing recorded for an unchanged rebuild, two worker apps sharing the store, and the
headers (media type, CORS, ETag and 304)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.presentation.conftest import make_image, write
from tests.presentation.discovery_shapes import collection_problems, page_problems
from tests.web.conftest import Http

A = "/iiif/discovery/activity"
ALL = f"{A}/all-changes"
P = "http://testserver/iiif/presentation/3"
LD = 'application/ld+json;profile="http://iiif.io/api/discovery/1/context.json"'


@pytest.fixture
def site(tree: tuple[Path, Path], client: Callable[..., Http]) -> Callable[..., Http]:
    """A fresh app (a server start) on the tree each call; all share the cache folder and its store."""
    images, manifests = tree
    make_image(images / "painting.tif", 800, 600)
    make_image(images / "book" / "p1.tif", 300, 400)
    make_image(images / "book" / "p2.tif", 300, 400)
    write(manifests / "painting.yaml", "label: {en: Painting}\npages: [painting]\n")

    def start(**overrides: Any) -> Http:
        return client(images, manifests, **{"discovery_check_interval": 0.0, "discovery_page_size": 3, **overrides})

    return start


@dataclass
class Harvester:
    """An aggregator following section 3.5 of the specification: from the collection's ``last`` page
    backwards along ``prev``, newest first, stopping at the first activity it has already processed
    (by position) or older than its last visit; every document checked against the shapes."""

    http: Http
    last_crawl: str | None = None
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    requests: int = 0

    def harvest(self) -> list[dict[str, Any]]:
        collection = self._get(ALL)
        assert collection_problems(collection) == []
        new: list[dict[str, Any]] = []
        url: str | None = collection["last"]["id"]
        crawl_started = None
        while url is not None:
            page = self._get(url.removeprefix("http://testserver"))
            if page["orderedItems"]:
                assert page_problems(page) == []
            for item in reversed(page["orderedItems"]):
                crawl_started = crawl_started or item["endTime"]
                if self.last_crawl is not None and _time(item["endTime"]) <= _time(self.last_crawl):
                    url = None
                    break
                identity = (item["type"], item["object"]["id"], item["endTime"])
                assert identity not in self.seen, f"seen twice: {identity}"
                self.seen.add(identity)
                new.append(item)
            else:
                url = page.get("prev", {}).get("id")
        if crawl_started is not None:
            self.last_crawl = crawl_started
        return list(reversed(new))  # oldest first, as the log has them

    def _get(self, path: str) -> Any:
        self.requests += 1
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def changes(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    out = []
    for item in items:
        entry = (item["type"], item["object"]["type"], item["object"]["id"].removeprefix(P))
        if "target" in item:
            entry += (item["target"]["id"].removeprefix(P),)
        out.append(entry)
    return out


def touch_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_harvest_create_update_delete_move_across_restarts(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    harvester = Harvester(site())
    first = changes(harvester.harvest())
    assert sorted(first) == sorted(
        [
            ("Create", "Collection", "/collection"),
            ("Create", "Manifest", "/book/manifest"),
            ("Create", "Manifest", "/painting/manifest"),
        ]
    )
    # Nothing changed, server restarted: nothing new.
    harvester.http = site()
    assert harvester.harvest() == []

    # A description changes (a real change of the document): an Update, seen after a restart; the
    # top collection shows its members' labels, so it changed too.
    write(manifests / "painting.yaml", "label: {en: A painting}\npages: [painting]\n")
    harvester.http = site()
    assert changes(harvester.harvest()) == [
        ("Update", "Collection", "/collection"),
        ("Update", "Manifest", "/painting/manifest"),
    ]

    # A new page in the book folder: its manifest really changed.
    make_image(images / "book" / "p3.tif", 300, 400)
    assert changes(harvester.harvest()) == [("Update", "Manifest", "/book/manifest")]

    # A description file renamed, content unchanged: a Move (the collection lists another id: Update).
    os.rename(manifests / "painting.yaml", manifests / "renamed.yaml")
    harvester.http = site()
    assert changes(harvester.harvest()) == [
        ("Update", "Collection", "/collection"),
        ("Move", "Manifest", "/painting/manifest", "/renamed/manifest"),
    ]

    # Deleted while the server was down: recorded at the next start, remembered afterwards.
    (manifests / "renamed.yaml").unlink()
    (images / "painting.tif").unlink()  # else the loose image would be published on its own
    harvester.http = site()
    assert changes(harvester.harvest()) == [
        ("Update", "Collection", "/collection"),
        ("Delete", "Manifest", "/renamed/manifest"),
    ]
    harvester.http = site()
    assert harvester.harvest() == []

    # A new harvester reading the whole log sees each change exactly once, in order.
    everything = Harvester(site())
    assert len(everything.harvest()) == 10
    assert everything.requests == 1 + 4  # the collection and four pages of (at most) three


def test_an_unchanged_rebuild_records_nothing(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    http = site()
    harvester = Harvester(http)
    harvester.harvest()
    before = http.get(f"{P.removeprefix('http://testserver')}/book/manifest").headers["etag"]
    # The files are touched and rewritten with the same content: new source versions, so the
    # manifest is rebuilt under a new key, but its document is the same bytes: no Update.
    touch_later(images / "book" / "p1.tif")
    write(manifests / "painting.yaml", "label: {en: Painting}\npages: [painting]\n")
    touch_later(manifests / "painting.yaml")
    after = http.get(f"{P.removeprefix('http://testserver')}/book/manifest").headers["etag"]
    assert after != before  # rebuilt
    assert harvester.harvest() == []
    assert site().get(ALL).json()["totalItems"] == 3


def test_an_image_replaced_by_another_size_is_an_update(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    images, _ = tree
    harvester = Harvester(site())
    harvester.harvest()
    make_image(images / "painting.tif", 900, 600)
    assert changes(harvester.harvest()) == [("Update", "Manifest", "/painting/manifest")]


def test_a_description_error_is_not_a_delete(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    _, manifests = tree
    harvester = Harvester(site())
    harvester.harvest()
    write(manifests / "painting.yaml", "label: {en: Painting}\npages: [no-such-image]\n")
    # Its manifest is an error now (the collection still lists it: no change there either).
    assert harvester.harvest() == []
    write(manifests / "painting.yaml", "label: {en: Painting}\npages: [painting]\n")
    assert harvester.harvest() == []


def test_two_workers_sharing_the_store_record_each_change_once(
    site: Callable[..., Http], tree: tuple[Path, Path]
) -> None:
    _, manifests = tree
    one, two = site(), site()  # two worker processes' apps: one cache folder, one store
    one.get(ALL)
    two.get(ALL)
    write(manifests / "new.yaml", "label: {en: New}\npages: [painting]\n")
    for _ in range(3):
        two.get(ALL)
        one.get(ALL)
    items = Harvester(one).harvest()
    assert changes(items).count(("Create", "Manifest", "/new/manifest")) == 1
    assert len(items) == 5  # three first Creates, the new manifest and the collection's Update
    assert one.get(ALL).json() == two.get(ALL).json()


def test_the_store_can_be_reset(site: Callable[..., Http], tmp_path: Path) -> None:
    http = site()
    first = http.get(ALL)
    assert first.json()["totalItems"] == 3
    store = tmp_path / "cache" / "discovery" / "changes.sqlite3"
    assert store.is_file()
    http.app.state.changes.close()
    shutil.rmtree(store.parent)
    again = site().get(ALL)
    assert again.json()["totalItems"] == 3  # everything recorded again, as new
    assert again.headers["etag"] != first.headers["etag"]


def test_the_store_can_live_elsewhere(site: Callable[..., Http], tmp_path: Path) -> None:
    elsewhere = tmp_path / "kept" / "log.sqlite3"
    assert site(discovery_store=str(elsewhere)).get(ALL).json()["totalItems"] == 3
    assert elsewhere.is_file()


def test_headers_and_conditional_requests(site: Callable[..., Http]) -> None:
    http = site()
    for path in (ALL, f"{A}/page/0"):
        response = http.get(path, headers={"origin": "https://aggregator.example.org"})
        assert response.status_code == 200
        assert response.headers["content-type"] == LD
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["cache-control"] == "public, max-age=60"
        tag = response.headers["etag"]
        again = http.get(path, headers={"if-none-match": tag})
        assert again.status_code == 304
        assert again.content == b""
        assert http.get(path, headers={"accept": "application/json"}).headers["content-type"] == "application/json"
        assert http.head(path).content == b""


def test_a_full_page_keeps_its_etag_and_the_last_page_changes(
    site: Callable[..., Http], tree: tuple[Path, Path]
) -> None:
    _, manifests = tree
    http = site(discovery_page_size=2)
    first_page = http.get(f"{A}/page/0")
    last_page = http.get(f"{A}/page/1")
    assert "next" not in last_page.json()
    # A new label: the manifest's Update and the collection's (it shows its members' labels).
    write(manifests / "painting.yaml", "label: {en: Changed}\npages: [painting]\n")
    assert http.get(ALL).json()["totalItems"] == 5
    assert http.get(f"{A}/page/0").headers["etag"] == first_page.headers["etag"]
    grown = http.get(f"{A}/page/1")
    assert grown.headers["etag"] != last_page.headers["etag"]
    assert len(grown.json()["orderedItems"]) == 2
    assert grown.json()["next"]["id"].endswith("/page/2")
    assert len(http.get(f"{A}/page/2").json()["orderedItems"]) == 1


def test_public_url_makes_the_ids(site: Callable[..., Http]) -> None:
    http = site(public_url="https://iiif.example.org/base")
    document = http.get(ALL).json()
    assert document["id"] == "https://iiif.example.org/base/iiif/discovery/activity/all-changes"
    page = http.get(f"{A}/page/0").json()
    assert all(item["object"]["id"].startswith("https://iiif.example.org/base/") for item in page["orderedItems"])


@pytest.mark.parametrize(
    "path", [f"{A}/page/1", f"{A}/page/-1", f"{A}/page/x", f"{A}/page/", f"{A}/page/١", f"{A}/other", f"{A}/"]
)
def test_unknown_pages_are_404(site: Callable[..., Http], path: str) -> None:
    assert site().get(path).status_code == 404


def test_the_top_collection_links_to_the_log(site: Callable[..., Http]) -> None:
    top = site().get("/iiif/presentation/3/collection").json()
    assert {"id": "http://testserver/iiif/discovery/activity/all-changes", "type": "OrderedCollection"} in top[
        "service"
    ]


def test_changes_made_while_down_are_recorded_at_start_up(
    site: Callable[..., Http], tree: tuple[Path, Path], portal: Any
) -> None:
    _, manifests = tree
    site().get(ALL)
    write(manifests / "late.yaml", "label: {en: Late}\npages: [painting]\n")
    http = site()
    store = http.app.state.changes.store

    async def start_and_stop() -> None:
        async with http.app.router.lifespan_context(http.app):
            for _ in range(500):  # no request: the start-up check records it
                if store.state().total >= 5:
                    break
                await asyncio.sleep(0.02)

    portal.call(start_and_stop)
    assert [a.object_id for a in store.read(3, 10)] == ["", "late"]


def test_a_worker_does_not_compare_while_another_does(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    _, manifests = tree
    one, two = site(), site()
    one.get(ALL)
    write(manifests / "new.yaml", "label: {en: New}\npages: [painting]\n")
    claim = one.app.state.changes.store.claim_comparison()  # worker one is comparing
    assert claim is not None
    assert two.get(ALL).json()["totalItems"] == 3  # two serves the log as it stands
    one.app.state.changes.store.release_comparison(claim)
    assert two.get(ALL).json()["totalItems"] == 5


def test_comparisons_are_rate_limited(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    _, manifests = tree
    http = site(discovery_check_interval=3600.0)
    assert http.get(ALL).json()["totalItems"] == 3
    write(manifests / "new.yaml", "label: {en: New}\npages: [painting]\n")
    assert http.get(ALL).json()["totalItems"] == 3  # not compared again within the interval
    assert site(discovery_check_interval=3600.0).get(ALL).json()["totalItems"] == 5  # a new start compares


def test_a_failing_comparison_serves_the_log_as_it_stands(
    site: Callable[..., Http],
    tree: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, manifests = tree
    http = site()
    assert http.get(ALL).json()["totalItems"] == 3
    write(manifests / "new.yaml", "label: {en: New}\npages: [painting]\n")

    def broken(snapshot: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(http.app.state.changes.store, "record", broken)
    response = http.get(ALL)
    assert response.status_code == 200
    assert response.json()["totalItems"] == 3
    assert "comparing the catalogue with the log failed" in caplog.text
    monkeypatch.undo()
    assert http.get(ALL).json()["totalItems"] == 5  # recorded at the next comparison


def test_host_poisoning_reaches_neither_the_log_nor_other_clients(site: Callable[..., Http]) -> None:
    """Attack case E10: the log stores catalogue ids; each answer makes its URLs from its own request
    (forwarded headers only from trusted proxies), and a strange Host records no change."""
    http = site()
    normal = http.get(f"{A}/page/0")
    evil = http.get(f"{A}/page/0", headers={"host": "evil.example"})
    assert all(i["object"]["id"].startswith("http://evil.example/") for i in evil.json()["orderedItems"])
    assert evil.headers["etag"] != normal.headers["etag"]
    forged = http.get(f"{A}/page/0", headers={"x-forwarded-host": "evil.example"}, client="203.0.113.9")
    assert "evil" not in forged.text
    again = http.get(f"{A}/page/0")
    assert again.content == normal.content
    assert again.json()["orderedItems"][-1]["object"]["id"].startswith("http://testserver/")
    assert http.get(ALL).json()["totalItems"] == 3


def test_an_empty_server_still_has_a_valid_log(tree: tuple[Path, Path], client: Callable[..., Http]) -> None:
    http = client(*tree, discovery_check_interval=0.0)
    page = http.get(f"{A}/page/0").json()
    assert page_problems(page) == []  # at least one item: the top collection's Create
    assert changes(page["orderedItems"]) == [("Create", "Collection", "/collection")]


def test_a_description_moved_into_a_folder_is_a_move(site: Callable[..., Http], tree: tuple[Path, Path]) -> None:
    _, manifests = tree
    harvester = Harvester(site())
    harvester.harvest()
    (manifests / "paintings").mkdir()
    os.rename(manifests / "painting.yaml", manifests / "paintings" / "painting.yaml")
    assert changes(harvester.harvest()) == [
        ("Update", "Collection", "/collection"),
        ("Create", "Collection", "/collection/paintings"),
        ("Move", "Manifest", "/painting/manifest", "/paintings/painting/manifest"),
    ]
