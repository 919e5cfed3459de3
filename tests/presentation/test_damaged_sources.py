"""Damaged sources (a truncated TIFF, a text file named ``.tif``): a 500 naming the identifier, one
log line per source version, left out of collections and folder-built manifests, listed by
``ImageService.damaged()`` and by ``iiifserver manifests validate``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from click.testing import CliRunner

from iiifserver.app import create_app
from iiifserver.cli import main
from iiifserver.config import Settings
from tests.presentation.conftest import make_image, write
from tests.web.conftest import Http

P = "/iiif/presentation/3"
NOT_AN_IMAGE = "not-an-image: it only has the name of one\n"


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    images, manifests = tmp_path / "secret-images", tmp_path / "manifests"
    make_image(images / "good.tif", 120, 80)
    truncated = make_image(tmp_path / "whole.tif", 300, 200).read_bytes()
    (images / "cut.tif").write_bytes(truncated[: len(truncated) // 2])
    write(images / "text.tif", NOT_AN_IMAGE)
    make_image(images / "album" / "p1.tif", 100, 150)
    write(images / "album" / "p2.tif", NOT_AN_IMAGE)
    make_image(images / "album" / "p3.tif", 100, 150)
    write(images / "broken" / "only.tif", NOT_AN_IMAGE)
    manifests.mkdir()
    return images, manifests


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    return _tree(tmp_path)


@pytest.fixture
def http(tree: tuple[Path, Path], tmp_path: Path, portal: anyio.from_thread.BlockingPortal) -> Http:
    images, manifests = tree
    return Http(create_app(Settings(images=images, manifests=manifests, cache=tmp_path / "cache")), portal)


@pytest.mark.parametrize(
    ("identifier", "reason"),
    [("cut", "(truncated)"), ("text", "not a TIFF, JPEG, PNG or JPEG 2000 image")],
)
def test_a_damaged_source_is_a_500_naming_it(http: Http, tree: tuple[Path, Path], identifier: str, reason: str) -> None:
    for url in (f"/iiif/3/{identifier}/info.json", f"/iiif/3/{identifier}/full/max/0/default.jpg"):
        r = http.get(url)
        assert r.status_code == 500, r.text
        assert f"the source {identifier!r} is damaged: " in r.text
        assert reason in r.text
        assert str(tree[0]) not in r.text  # never a path
        assert ".tif" not in r.text
        assert r.headers["cache-control"] == "no-store"


def test_damage_is_logged_once_per_source_version(
    http: Http, tree: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert http.get("/iiif/3/text/info.json").status_code == 500

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "damaged source 'text'" in r.getMessage()]

    assert len(lines()) == 1
    assert str(tree[0]) not in lines()[0]
    # A new version of the file, still damaged: logged again, once.
    write(tree[0] / "text.tif", NOT_AN_IMAGE + "and longer now\n")
    http.app.state.image_service.forget("text")
    for _ in range(2):
        assert http.get("/iiif/3/text/info.json").status_code == 500
    assert len(lines()) == 2


def test_damaged_images_are_left_out_of_collections_and_folder_manifests(http: Http) -> None:
    top = http.get(f"{P}/collection").json()
    ids = [item["id"].rpartition("/iiif/presentation/3/")[2] for item in top["items"]]
    # Loose damaged images and a folder of nothing but damaged images are not listed.
    assert "good/manifest" in ids
    assert "album/manifest" in ids
    assert not {"cut/manifest", "text/manifest", "broken/manifest"} & set(ids), ids
    album = http.get(f"{P}/album/manifest")
    assert album.status_code == 200
    canvases = [c["items"][0]["items"][0]["body"]["service"][0]["id"] for c in album.json()["items"]]
    assert [c.rpartition("/")[2] for c in canvases] == ["album%2Fp1", "album%2Fp3"]
    # Objects with nothing left answer the damaged source's 500, naming it.
    broken = http.get(f"{P}/broken/manifest")
    assert broken.status_code == 500
    assert "the source 'broken/only' is damaged" in broken.text


def test_damaged_lists_identifiers_and_reasons(http: Http, tree: tuple[Path, Path]) -> None:
    service: Any = http.app.state.image_service
    assert service.damaged() == {}
    http.get(f"{P}/collection")
    http.get(f"{P}/album/manifest")
    http.get("/iiif/3/text/info.json")
    damaged = service.damaged()
    assert list(damaged) == ["album/p2", "broken/only", "cut", "text"]
    assert damaged["cut"].endswith("(truncated)")
    assert damaged["text"] == "the file is not a TIFF, JPEG, PNG or JPEG 2000 image"
    # Replaced by a good image: no longer listed, and listed again in its collection.
    make_image(tree[0] / "text.tif", 60, 40)
    service.forget("text")
    assert http.get("/iiif/3/text/info.json").status_code == 200
    assert "text" not in service.damaged()
    top = http.get(f"{P}/collection").json()
    assert any(item["id"].endswith("/text/manifest") for item in top["items"])


def test_validate_lists_damaged_sources(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    result = CliRunner().invoke(
        main, ["manifests", "validate", "-s", f"images={images}", "-s", f"manifests={manifests}"]
    )
    assert result.exit_code == 1
    for identifier in ("album/p2", "broken/only", "cut", "text"):
        assert result.output.count(f"the source {identifier!r} is damaged") == 1, result.output
    assert "4 problem(s)" in result.output
    assert "secret-images" not in result.output


def test_ready_lists_the_damaged_sources_met_and_stays_ready(http: Http, tree: tuple[Path, Path]) -> None:
    assert http.get("/ready").json()["damaged_sources"] == {"count": 0, "listed": {}}
    for identifier in ("cut", "text", "good"):
        http.get(f"/iiif/3/{identifier}/info.json")
    r = http.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] != "not_ready"
    assert body["damaged_sources"]["count"] == 2
    assert sorted(body["damaged_sources"]["listed"]) == ["cut", "text"]
    assert "(truncated)" in body["damaged_sources"]["listed"]["cut"]
    assert str(tree[0]) not in r.text  # reasons, never paths
