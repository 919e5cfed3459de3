"""What a worker gives its image service: the probe (through the shared tier), the timed render,
the stored-tile index, the object store, the tile cache's tiers and the purge watcher."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any, cast

import pytest
import pyvips

from iiifserver.cache.shared import SharedCache
from iiifserver.cache.tiered import TileCache
from iiifserver.concurrency import Lane
from iiifserver.config import Settings
from iiifserver.errors import SourceDamaged
from iiifserver.image import operations
from iiifserver.image import probe as probe_module
from iiifserver.image import render as render_module
from iiifserver.image.block_cache import BlockCache
from iiifserver.image.object_store import ObjectPath, ObjectStore
from iiifserver.image.planner import Plan
from iiifserver.image.source_info import SourceFormat, SourceInfo, SourceVersion

MIB = 1024 * 1024


def settings_of(images: Path, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(images=images, cache=tmp_path / "cache", **overrides)


def probed(path: Path, settings: Settings) -> SourceInfo:
    return probe_module.probe(
        path, plain_max_pixels=settings.plain_max_pixels, max_source_pixels=settings.max_source_pixels
    )


class CountedProbe:
    """A ``probe()`` for ``probe_through_shared``: the real probe of ``path``, counted; ``during``
    runs inside it (a file replaced while it is probed)."""

    def __init__(self, path: Path, settings: Settings, during: Any = None) -> None:
        self.path, self.settings, self.during = path, settings, during
        self.calls = 0

    def __call__(self) -> SourceInfo:
        self.calls += 1
        info = probed(self.path, self.settings)
        if self.during is not None:
            self.during()
        return info


def refuse() -> SourceInfo:
    raise AssertionError("the shared tier should have answered")


@pytest.fixture
def images(tmp_path: Path, picture: Path) -> Path:
    """A fresh image root holding ``pic.tif`` (a 512x384 tiled pyramid)."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copyfile(picture, root / "pic.tif")
    return root


def object_path(size: int = 1000) -> ObjectPath:
    """An object version whose store has no block cache: any read through it fails."""
    return ObjectPath("bucket", "key.tif", '"etag"', size, ObjectStore(1.0))


# -- the probe through the shared tier ----------------------------------------------------------


def test_facts_probed_once_are_read_from_the_shared_tier(images: Path, tmp_path: Path, tier: SharedCache) -> None:
    settings = settings_of(images, tmp_path)
    path = images / "pic.tif"
    first = CountedProbe(path, settings)
    info = operations.probe_through_shared(tier, settings, path, first)
    assert first.calls == 1
    assert (info.width, info.height) == (512, 384)
    assert operations.probe_through_shared(tier, settings, path, refuse) == info
    stats = tier.stats
    assert (stats.facts_misses, stats.facts_writes, stats.facts_hits) == (1, 1, 1)


def test_a_replaced_file_and_other_limits_are_other_names(images: Path, tmp_path: Path, tier: SharedCache) -> None:
    settings = settings_of(images, tmp_path)
    path = images / "pic.tif"
    operations.probe_through_shared(tier, settings, path, CountedProbe(path, settings))
    # Stricter limits decide differently whether a file is served: not the same facts.
    strict = settings_of(images, tmp_path, max_source_pixels=settings.max_source_pixels - 1)
    again = CountedProbe(path, strict)
    operations.probe_through_shared(tier, strict, path, again)
    assert again.calls == 1
    pyvips.Image.black(300, 200, bands=3).tiffsave(str(images / "new.tif"), tile=True, pyramid=True)
    os.replace(images / "new.tif", path)
    replaced = CountedProbe(path, settings)
    info = operations.probe_through_shared(tier, settings, path, replaced)
    assert replaced.calls == 1
    assert (info.width, info.height) == (300, 200)


def test_facts_of_a_file_replaced_while_probed_are_not_shared(images: Path, tmp_path: Path, tier: SharedCache) -> None:
    settings = settings_of(images, tmp_path)
    path = images / "pic.tif"

    def replace() -> None:
        shutil.copyfile(path, images / "copy.tif")
        os.replace(images / "copy.tif", path)

    operations.probe_through_shared(tier, settings, path, CountedProbe(path, settings, during=replace))
    assert tier.stats.facts_writes == 0
    after = CountedProbe(path, settings)
    operations.probe_through_shared(tier, settings, path, after)
    assert after.calls == 1  # nothing was filed: probed again, and shared this time
    assert tier.stats.facts_writes == 1


def test_files_outside_the_root_missing_or_damaged_are_probed_and_never_shared(
    images: Path, tmp_path: Path, tier: SharedCache, picture: Path
) -> None:
    settings = settings_of(images, tmp_path)
    outside = CountedProbe(picture, settings)
    operations.probe_through_shared(tier, settings, picture, outside)
    assert outside.calls == 1
    missing = images / "gone.tif"
    with pytest.raises(FileNotFoundError):
        operations.probe_through_shared(tier, settings, missing, CountedProbe(missing, settings))
    broken = images / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(SourceDamaged):
        operations.probe_through_shared(tier, settings, broken, CountedProbe(broken, settings))
    stats = tier.stats
    assert (stats.facts_misses, stats.facts_writes) == (1, 0)  # only the broken file was looked up


def test_probe_reads_headers_with_the_settings_limits(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(images, tmp_path, plain_max_pixels=123_456, max_source_pixels=654_321)
    seen: list[dict[str, int]] = []
    real = probe_module.probe

    def counted(path: Path | ObjectPath, **limits: Any) -> SourceInfo:
        seen.append(limits)
        return real(path, **limits)

    monkeypatch.setattr(probe_module, "probe", counted)
    info = operations.Probe(settings)(images / "pic.tif")
    assert info.width == 512
    assert seen == [{"plain_max_pixels": 123_456, "max_source_pixels": 654_321}]


def test_probe_goes_through_the_shared_tier_for_files_only(
    images: Path, tmp_path: Path, tier: SharedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(images, tmp_path)
    info = operations.Probe(settings, tier)(images / "pic.tif")
    opened: list[Path | ObjectPath] = []

    def counted(path: Path | ObjectPath, **limits: Any) -> SourceInfo:
        opened.append(path)
        return info

    monkeypatch.setattr(probe_module, "probe", counted)
    assert operations.Probe(settings, tier)(images / "pic.tif") == info  # another instance's probe
    assert opened == []
    remote = object_path()
    assert operations.Probe(settings, tier)(remote) == info
    assert opened == [remote]  # an object is probed by its ETag, never named in the shared tier
    assert (tier.stats.facts_hits, tier.stats.facts_misses) == (1, 1)


# -- the render and the stored-tile index -------------------------------------------------------


def test_render_tells_its_seconds_even_when_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(*args: Any) -> bytes:
        calls.append(args)
        if len(calls) == 2:
            raise SourceDamaged("bad tile")
        return b"jpeg"

    monkeypatch.setattr(render_module, "render", fake)
    encode = render_module.EncodeOptions(jpeg_quality=91)
    seconds: list[float] = []
    render = operations.Render(encode, seconds.append)
    plan = cast(Plan, object())
    version = SourceVersion(1, 2, 3, 4)
    assert render(Path("a.tif"), SourceFormat.TIFF, plan, version, None) == b"jpeg"
    assert calls == [(Path("a.tif"), SourceFormat.TIFF, plan, encode, version, None)]
    with pytest.raises(SourceDamaged):
        render(Path("a.tif"), SourceFormat.TIFF, plan, version, None)
    assert len(seconds) == 2
    assert all(0.0 <= s < 5.0 for s in seconds)
    assert operations.Render(encode)(Path("b.tif"), SourceFormat.TIFF, plan, version, None) == b"jpeg"
    assert len(seconds) == 2  # nobody listens: nothing told


def test_blocking_ops_encode_with_the_settings(images: Path, tmp_path: Path) -> None:
    settings = settings_of(images, tmp_path, jpeg_quality=77, webp_quality=66, jpeg_chroma_subsampling=False)
    ops = operations.blocking_ops(settings, None)
    assert isinstance(ops.render, operations.Render)
    assert ops.render.encode == render_module.EncodeOptions(77, 66, False)
    assert ops.render.rendered is None
    assert isinstance(ops.tile_index, operations.TileIndex)
    assert ops.tile_index.passthrough == settings.tile_passthrough


def test_tile_index_of_tiled_tiffs_only(images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_of(images, tmp_path)
    index = operations.TileIndex(passthrough=False)  # files are indexed with passthrough off too
    info = probed(images / "pic.tif", settings)
    stored = index(images / "pic.tif", info)
    assert stored is not None
    assert len(stored.levels) == len(info.levels)
    pyvips.Image.black(300, 200, bands=3).tiffsave(str(images / "strip.tif"), tile=False)
    assert index(images / "strip.tif", probed(images / "strip.tif", settings)) is None
    with caplog.at_level(logging.WARNING, logger=operations.__name__):
        assert index(images / "gone.tif", info) is None  # unreadable: no passthrough, no error
    assert "no stored-tile index" in caplog.text


def test_tile_index_of_an_object_only_for_passthrough(images: Path, tmp_path: Path) -> None:
    info = probed(images / "pic.tif", settings_of(images, tmp_path))
    # Off: not read at all (a read through this store would fail).
    assert operations.TileIndex(passthrough=False)(object_path(), info) is None


# -- the object store and the tile cache --------------------------------------------------------


def test_object_store_only_for_object_roots(tmp_path: Path) -> None:
    assert operations.object_store(settings_of(tmp_path, tmp_path)) is None
    settings = Settings(
        images=Path("s3://bucket/prefix"), block_cache=tmp_path / "blocks", workers=4, block_cache_mb=64
    )
    store = operations.object_store(settings)
    assert store is not None
    assert store.timeout == settings.storage_timeout
    blocks = store.block_cache
    assert isinstance(blocks, BlockCache)
    assert (blocks.folder, blocks.max_bytes) == (settings.block_cache, 16 * MIB)  # this worker's share


def test_object_store_for_an_institution_in_object_storage(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, tmp_path)
    folders = tmp_path / "folders.toml"
    folders.write_text('[institutions.lille]\nimages = "/srv/lille"\n')
    assert operations.object_store(settings, folders) is None
    bucket = tmp_path / "bucket.toml"
    bucket.write_text('[institutions.nord]\nimages = "s3://archives/nord"\n')
    assert operations.object_store(settings, bucket) is not None
    broken = tmp_path / "broken.toml"
    broken.write_text("[institutions.nord]\nimages = 5\n")
    assert operations.object_store(settings, broken) is None  # the Deployment reports the error


def test_tile_cache_has_the_tiers_the_settings_ask_for(tmp_path: Path) -> None:
    io = Lane("io", 1, 10, 1.0)
    off = settings_of(tmp_path, tmp_path, memory_cache_mb=0, disk_cache_mb=0, shared_cache_url="")
    assert operations.tile_cache(off, io) is None
    memory_only = operations.tile_cache(settings_of(tmp_path, tmp_path, memory_cache_mb=3, disk_cache_mb=0), io)
    assert memory_only is not None
    assert (memory_only.memory.max_bytes, memory_only.disk, memory_only.shared) == (3 * MIB, None, None)
    settings = settings_of(
        tmp_path,
        tmp_path,
        memory_cache_mb=0,
        disk_cache_mb=5,
        shared_cache_url="redis://127.0.0.1:1/0",
        shared_cache_prefix="p:",
        shared_cache_ttl=60,
        tile_threads=3,
        heavy_threads=2,
    )
    every = operations.tile_cache(settings, io)
    assert every is not None
    assert every.memory.max_bytes == 0  # stores nothing: the disk tier answers every hit
    assert every.disk is not None
    assert (every.disk.root, every.disk.max_bytes) == (settings.cache, 5 * MIB)
    shared = every.shared
    assert shared is not None
    try:
        assert (shared.url, shared.prefix, shared.ttl) == ("redis://127.0.0.1:1/0", "p:", 60)
        # A connection for each lane thread that may call it: io (4) + tile (3) + heavy (2) + 2.
        assert shared._client.connection_pool.max_connections == 11
    finally:
        shared.close()


def test_watch_purges_keeps_watching_after_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Cache:
        calls = 0

        async def check_generation(self) -> bool:
            self.calls += 1
            if self.calls == 1:
                raise OSError("generation file unreadable")
            return False

    real_sleep = asyncio.sleep

    async def no_wait(_seconds: float) -> None:
        await real_sleep(0)

    cache = Cache()

    async def watch() -> None:
        monkeypatch.setattr(asyncio, "sleep", no_wait)  # a second between checks: none here
        watcher = asyncio.create_task(operations.watch_purges(cast(TileCache, cache)))
        while cache.calls < 3:
            await real_sleep(0)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher

    asyncio.run(watch())
    assert cache.calls >= 3
    assert "purge watcher" in caplog.text
