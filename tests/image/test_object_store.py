"""The object store client, the block cache and identifier resolution in s3:// roots, against a
running SeaweedFS (no mocks of the storage API)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pyvips

from iiifserver.config import load_settings, object_root, settings_from_json, uses_object_storage
from iiifserver.errors import NotFound, SourceChanged
from iiifserver.image.block_cache import BlockCache, ObjectReader
from iiifserver.image.object_sources import ObjectSource, make_source, parse_roots
from iiifserver.image.object_store import ObjectPath, ObjectStore, StorageUnavailable, parse_object_url
from iiifserver.image.probe import probe, set_opened_budget
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.source_info import SourceFormat
from iiifserver.image.sources import FilesystemSource, RootedSource
from tests.image.pyramids import jpeg_pyramid, plan_for
from tests.object_storage import Place, new_place, put, use_store


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://bucket/a/b", ("bucket", "a/b")), ("s3://bucket", ("bucket", "")), ("s3://bucket/a/", ("bucket", "a"))],
)
def test_object_urls_parse(url: str, expected: tuple[str, str]) -> None:
    assert parse_object_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3:///a", "s3://b/a/../c", "s3://b/a//c", "http://b/a"])
def test_malformed_object_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_object_url(url)


@pytest.mark.parametrize("where", ["env", "toml"])
def test_an_s3_url_survives_settings_loading_and_the_hand_over_to_workers(where: str, tmp_path: Path) -> None:
    if where == "env":
        settings = load_settings(environ={"IIIFSERVER_IMAGES": "s3://bucket/a/b"})
    else:
        (tmp_path / "s.toml").write_text('images = "s3://bucket/a/b"\nimage_roots = "x=s3://other/p"\n')
        settings = load_settings(tmp_path / "s.toml", environ={})
    assert object_root(settings.images) == "s3://bucket/a/b"
    assert object_root(settings_from_json(settings.to_json()).images) == "s3://bucket/a/b"
    assert uses_object_storage(settings)
    assert object_root(Path("images")) is None
    assert not uses_object_storage(load_settings(environ={"IIIFSERVER_IMAGE_ROOTS": "a=/srv/a"}))


def test_roots_parse_and_refuse_what_they_cannot_mean() -> None:
    assert parse_roots(" a=s3://b/p , museum/x=/srv/x ") == {"a": "s3://b/p", "museum/x": "/srv/x"}
    for bad in ("a", "=s3://b", "a=", "../a=/x", "a=/x,a=/y", "a=s3://"):
        with pytest.raises(ValueError, match="image_roots"):
            parse_roots(bad)


@pytest.fixture
def place(seaweedfs: Any, monkeypatch: pytest.MonkeyPatch) -> Place:
    use_store(monkeypatch, seaweedfs)
    return new_place(seaweedfs)


def _store(tmp_path: Path, *, max_bytes: int = 1 << 30, block_size: int = 1 << 20) -> ObjectStore:
    return ObjectStore(2.0, BlockCache(tmp_path / "blocks", max_bytes, block_size))


def test_identifiers_resolve_like_files(place: Place, seaweedfs: Any, tmp_path: Path) -> None:
    put(seaweedfs, place.bucket, place.key("a/page.tif"), b"II*\x00tiff")
    put(seaweedfs, place.bucket, place.key("café.jpg"), b"\xff\xd8\xffjpeg")
    bucket, prefix = parse_object_url(place.url)
    source = ObjectSource(_store(tmp_path), bucket, prefix)
    found = source.resolve("a/page")
    assert (found.name, str(found.path)) == ("a/page.tif", f"{place.url}/a/page.tif")
    assert found.version.etag
    assert found.version.size == 8
    assert source.resolve("a/page.tif").version == found.version
    assert source.resolve("cafe\u0301").name == "café.jpg"  # NFD asked, NFC stored
    for missing in ("a/nothing", "a//page", "a/../a/page", "./a/page", "a/page/"):
        with pytest.raises(NotFound):
            source.resolve(missing)
    assert source.recheck(found) is found  # unchanged: one HEAD, the same file


def test_a_replaced_object_is_a_new_version_and_old_reads_are_refused(
    place: Place, seaweedfs: Any, tmp_path: Path
) -> None:
    put(seaweedfs, place.bucket, place.key("x.tif"), b"A" * 5000)
    store = _store(tmp_path, block_size=1024)
    source = make_source(place.url, {}, store)
    old = source.resolve("x")
    put(seaweedfs, place.bucket, place.key("x.tif"), b"B" * 5000)
    new = source.recheck(old)
    assert new.version != old.version
    assert new.version.token != old.version.token
    assert isinstance(old.path, type(new.path))
    with pytest.raises(SourceChanged):  # If-Match the old ETag: 412
        store.read(old.path, 0, 10)  # type: ignore[arg-type]
    assert store.read(new.path, 4990, 10) == b"B" * 10  # type: ignore[arg-type]


def test_the_block_cache_reads_ranges_across_blocks_keeps_versions_apart_and_stays_bounded(
    place: Place, seaweedfs: Any, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 40  # 10240 bytes: ten blocks of 1 KiB
    put(seaweedfs, place.bucket, place.key("y.tif"), body)
    store = _store(tmp_path, max_bytes=4096, block_size=1024)
    cache = store.block_cache
    assert isinstance(cache, BlockCache)
    path = make_source(place.url, {}, store).resolve("y").path
    reader = ObjectReader(path, cache)  # type: ignore[arg-type]
    assert reader.read(1000, 3000) == body[1000:4000]  # blocks 0-3: the whole bound
    fetched = cache.fetched
    assert ObjectReader(path, cache).read(1000, 1000) == body[1000:2000]  # type: ignore[arg-type]
    assert cache.fetched == fetched  # from the blocks on disk, no request
    assert reader.read(10000, 1000) == body[10000:]  # short only at the end
    ObjectReader(path, cache).read(0, len(body))  # type: ignore[arg-type]
    assert cache.nbytes <= 4096
    assert sum(f.stat().st_size for f in (tmp_path / "blocks").rglob("*") if f.is_file()) <= 4096
    put(seaweedfs, place.bucket, place.key("y.tif"), body[::-1])
    newer = make_source(place.url, {}, store).resolve("y").path
    assert ObjectReader(newer, cache).read(0, 100) == body[::-1][:100]  # type: ignore[arg-type]


def test_rooted_sources_route_by_prefix_and_name_files_by_the_whole_identifier(
    place: Place, seaweedfs: Any, tmp_path: Path
) -> None:
    put(seaweedfs, place.bucket, place.key("obj1.tif"), b"II*\x00one")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "obj1.tif").write_bytes(b"II*\x00two")
    store = _store(tmp_path)
    source = make_source(tmp_path / "local", parse_roots(f"museum-a={place.url}"), store)
    assert isinstance(source, RootedSource)
    remote, local = source.resolve("museum-a/obj1"), source.resolve("obj1")
    assert (remote.name, remote.version.size) == ("museum-a/obj1.tif", 7)
    assert (local.name, isinstance(local.path, Path)) == ("obj1.tif", True)
    assert source.recheck(remote) == remote
    with pytest.raises(NotFound):
        source.resolve("museum-b/obj1")
    only = RootedSource(None, {"a": FilesystemSource(tmp_path / "local")})
    with pytest.raises(NotFound):
        only.resolve("obj1")


def test_a_dead_endpoint_answers_unavailable_within_the_timeout(
    place: Place, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nobody listens
    store = ObjectStore(0.5, BlockCache(tmp_path, 1 << 20))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        store.head(place.bucket, place.key("x.tif"))
    assert time.monotonic() - started < 2.0
    assert caught.value.retry_after > 0


def test_a_render_or_probe_whose_reads_fail_is_unavailable_not_damage(
    place: Place, seaweedfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store going away between a version check and the reads: 503 (retry), never 500."""
    pyramid = jpeg_pyramid(
        pyvips.Image.black(600, 400, bands=3).linear(1, [200, 30, 30]).cast("uchar"), tmp_path / "p.tif"
    )
    body = pyramid.path.read_bytes()
    put(seaweedfs, place.bucket, place.key("p.tif"), body)
    live = make_source(place.url, {}, _store(tmp_path / "live")).resolve("p").path
    assert isinstance(live, ObjectPath)
    assert probe(live, plain_max_pixels=10**8, max_source_pixels=10**9) == pyramid.info
    plan = plan_for(pyramid, "0,0,300,300/150,/0/default.png")
    assert render(live, SourceFormat.TIFF, plan, EncodeOptions()) == render(
        pyramid.path, SourceFormat.TIFF, plan, EncodeOptions()
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nobody listens: every read fails
    dead = replace(live, store=_store(tmp_path / "dead"))
    with pytest.raises(StorageUnavailable):
        probe(dead, plain_max_pixels=10**8, max_source_pixels=10**9)
    set_opened_budget()  # this thread's opened levels (the live store's) are dropped
    with pytest.raises(StorageUnavailable):
        render(dead, SourceFormat.TIFF, plan, EncodeOptions())


def test_an_unwritable_block_cache_still_serves_reads(place: Place, seaweedfs: Any, tmp_path: Path) -> None:
    put(seaweedfs, place.bucket, place.key("z.tif"), b"0123456789" * 300)
    (tmp_path / "not-a-folder").write_text("a file where the cache folder should be")
    store = ObjectStore(2.0, BlockCache(tmp_path / "not-a-folder", 1 << 20, 1024))
    path = make_source(place.url, {}, store).resolve("z").path
    assert isinstance(path, ObjectPath)
    assert ObjectReader(path, store.block_cache).read(1020, 10) == b"0123456789"
    assert ObjectReader(path, store.block_cache).read(2990, 100) == b"0123456789"


def test_put_stores_an_object_that_head_and_read_then_see(place: Place, tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.put(place.bucket, place.key("new.tif"), b"II*\x00" + b"x" * 100)
    head = store.head(place.bucket, place.key("new.tif"))
    assert head is not None
    assert head.size == 104
    assert store.read(store.path(place.bucket, place.key("new.tif"), head), 0, 4) == b"II*\x00"
    assert store.head(place.bucket, place.key("absent.tif")) is None
