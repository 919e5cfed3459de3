"""Shared tier against a real redis-server: round trips, integrity, outages and reconnection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pyvips
import redis

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.cache import shared as shared_module
from iiifserver.cache.entry import Entry
from iiifserver.cache.shared import SharedCache, decode_entry, encode_entry
from iiifserver.config import Settings
from iiifserver.image import probe as probe_module
from iiifserver.image.service import ImageService
from iiifserver.image.source_info import SourceInfo
from tests.redis_server import REDIS_SERVER, RedisServer, free_port

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

REGION = "/iiif/3/img/100,50,300,200/150,/0/default.jpg"


def key(n: int) -> str:
    return f"{n:040x}"


def entry(identifier: str = "img", body: bytes = b"jpeg bytes " * 100) -> Entry:
    return Entry(body, "image/jpeg", identifier)


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


def test_round_trip(tier: SharedCache) -> None:
    stored = entry("book/page 1")
    assert tier.get("book/page 1", key(1)) is None
    assert tier.put("book/page 1", key(1), stored)
    assert tier.get("book/page 1", key(1)) == stored
    assert tier.get("book/page 2", key(1)) is None  # another identifier's key space
    stats = tier.stats
    assert (stats.hits, stats.misses, stats.writes, stats.corrupt, stats.up) == (1, 2, 1, 0, True)


def test_entries_are_bound_to_their_key(tier: SharedCache, raw: Any) -> None:
    tier.put("img", key(1), entry(body=b"one" * 50))
    tier.put("img", key(2), entry(body=b"two" * 50))
    first, second = tier.entry_key("img", key(1)), tier.entry_key("img", key(2))
    one, two = raw.get(first), raw.get(second)
    raw.set(first, two)
    raw.set(second, one)
    assert tier.get("img", key(1)) is None
    assert tier.get("img", key(2)) is None
    assert tier.stats.corrupt == 2
    assert raw.exists(first, second) == 0  # deleted, not served again


def test_truncated_and_damaged_values_miss(tier: SharedCache, raw: Any) -> None:
    tier.put("img", key(1), entry())
    tier.put("img", key(2), entry())
    name1, name2 = tier.entry_key("img", key(1)), tier.entry_key("img", key(2))
    raw.set(name1, raw.get(name1)[:-1])
    value = bytearray(raw.get(name2))
    value[-10] ^= 0xFF
    raw.set(name2, bytes(value))
    assert tier.get("img", key(1)) is None
    assert tier.get("img", key(2)) is None
    assert tier.stats.corrupt == 2
    assert raw.exists(name1, name2) == 0


def test_value_format_checks_identifier_and_length() -> None:
    data = encode_entry(entry("a"), key(7))
    assert decode_entry(data, "a", key(7)) == entry("a")
    assert decode_entry(data, "b", key(7)) is None
    assert decode_entry(data, "a", key(8)) is None
    assert decode_entry(data + b"x", "a", key(7)) is None
    assert decode_entry(data[:20], "a", key(7)) is None


def test_facts_round_trip_and_binding(tier: SharedCache, raw: Any) -> None:
    assert tier.get_facts("img|v1") is None
    assert tier.put_facts("img|v1", b'{"width": 5}')
    assert tier.get_facts("img|v1") == b'{"width": 5}'
    assert tier.get_facts("img|v2") is None
    names = sorted(raw.keys("t:f:*"))
    assert len(names) == 1
    raw.set(names[0], raw.get(names[0])[:-2])
    assert tier.get_facts("img|v1") is None


def test_large_entries_and_ttl(redis_server: RedisServer, raw: Any) -> None:
    tier = SharedCache(redis_server.url, max_entry_bytes=1000, ttl=60, prefix="t:")
    try:
        assert not tier.put("img", key(1), entry(body=b"x" * 1001))
        assert tier.put("img", key(2), entry(body=b"x" * 1000))
        assert tier.stats.too_large == 1
        assert 0 < raw.ttl(tier.entry_key("img", key(2))) <= 60
    finally:
        tier.close()


def test_purge_by_identifier_and_all(tier: SharedCache) -> None:
    for n, identifier in enumerate(["a", "a", "b"]):
        tier.put(identifier, key(n), entry(identifier))
    assert tier.purge("a") == 2
    assert tier.get("b", key(2)) is not None
    assert tier.purge(None) == 1
    assert tier.get("b", key(2)) is None


def test_down_at_start_skips_fast_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    tier = SharedCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.1)
    with caplog.at_level(logging.WARNING, logger="iiifserver.cache.shared"):
        assert not tier.ping()
        started = time.monotonic()
        for n in range(50):
            assert tier.get("img", key(n)) is None
            assert not tier.put("img", key(n), entry())
        assert time.monotonic() - started < 0.1  # no network: skipped while down
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    assert not tier.stats.up
    assert tier.stats.skipped == 100
    tier.close()


def test_killed_then_back_reconnects_in_the_background(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_module, "RECONNECT_FIRST", 0.05)
    monkeypatch.setattr(shared_module, "HEALTH_INTERVAL", 0.05)
    tier = SharedCache(redis_server.url, timeout=0.2)

    async def run_blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def scenario() -> None:
        link = asyncio.create_task(tier.keep_connected(run_blocking))
        try:
            await wait_for(lambda: tier.up)
            assert await run_blocking(tier.put, "img", key(1), entry())
            redis_server.stop()  # SIGKILL: a crash
            assert await run_blocking(tier.get, "img", key(1)) is None
            await wait_for(lambda: not tier.up)
            redis_server.start()  # same port, empty
            await wait_for(lambda: tier.up)
            assert await run_blocking(tier.put, "img", key(1), entry())
            assert await run_blocking(tier.get, "img", key(1)) == entry()
        finally:
            link.cancel()
            with pytest.raises(asyncio.CancelledError):
                await link

    with caplog.at_level(logging.INFO, logger="iiifserver.cache.shared"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unreachable" in m]) == 1
    assert len([m for m in messages if "reachable again" in m]) == 1
    tier.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- through the app: two instances (own disk caches) sharing one Redis ---------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared-images")
    base = pyvips.Image.perlin(640, 480, cell_size=32, seed=5, uchar=True)
    rgb = base.bandjoin([base.rot180(), base.fliphor()]).copy(interpretation="srgb")
    rgb.tiffsave(str(root / "img.tif"), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg")
    return root


def make_app(images: Path, cache: Path, url: str) -> Any:
    # Default settings otherwise: the shared tier takes every render at once (the disk tier waits
    # for a second ask, ``disk_cache_admission``).
    return create_app(
        Settings(images=images, cache=cache, source_check_interval=0.0, shared_cache_url=url, metrics=True)
    )


def service_of(app: Any) -> ImageService:
    result: ImageService = app.state.image_service
    return result


def get(app: Any, path: str) -> tuple[int, bytes]:
    async def one() -> tuple[int, bytes]:
        try:
            status, _, body = await call(app, path)
            return status, body
        finally:
            await service_of(app).drain()

    return asyncio.run(one())


def test_a_region_rendered_by_one_instance_is_a_shared_hit_on_another(
    images: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    a = make_app(images, tmp_path / "a", redis_server.url)
    b = make_app(images, tmp_path / "b", redis_server.url)
    status, body = get(a, REGION)
    assert status == 200
    assert service_of(a).counters.renders == 1
    status, shared_body = get(b, REGION)
    assert (status, shared_body) == (200, body)
    assert service_of(b).counters.renders == 0
    stats = service_of(b).stats()["cache"]
    assert isinstance(stats, dict)
    assert stats["shared"]["hits"] == 1
    # The hit was written to B's disk tier in the background: a third process of host B finds it there.
    b2 = make_app(images, tmp_path / "b", f"redis://127.0.0.1:{free_port()}/0")
    assert get(b2, REGION) == (200, body)
    assert service_of(b2).counters.renders == 0
    metrics = get(b, "/metrics")[1].decode()
    assert 'iiifserver_cache_hits_total{tier="shared"} 1.0' in metrics
    assert "iiifserver_shared_cache_up 1.0" in metrics


def test_requests_succeed_with_redis_down_and_killed(
    images: Path, tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    down = make_app(images, tmp_path / "down", f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="iiifserver.cache.shared"):
        for n in range(5):
            assert get(down, f"/iiif/3/img/{n * 10},0,100,100/50,/0/default.jpg")[0] == 200
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    assert "iiifserver_shared_cache_up 0.0" in get(down, "/metrics")[1].decode()

    live = make_app(images, tmp_path / "live", redis_server.url)
    assert get(live, "/iiif/3/img/0,0,100,100/50,/0/default.jpg")[0] == 200
    redis_server.stop()
    for n in range(1, 5):
        assert get(live, f"/iiif/3/img/{n * 10},0,100,100/50,/0/default.jpg")[0] == 200
    assert not service_of(live).cache.shared.up  # type: ignore[union-attr]


# --- image facts (SourceInfo) shared between instances ---------------------------------------------


def test_facts_a_decoder_refuses_are_a_corrupt_miss_and_deleted(tier: SharedCache, raw: Any) -> None:
    assert tier.put_facts("img|v1", b"written by another version")

    def refuse(blob: bytes) -> int:
        raise ValueError(blob.decode())

    assert tier.load_facts("img|v1", refuse) is None
    assert raw.keys("t:f:*") == []
    stats = tier.stats
    assert (stats.facts_hits, stats.facts_misses, stats.facts_writes, stats.corrupt) == (0, 1, 1, 1)


def pyramid(path: Path, width: int, height: int) -> None:
    """A tiled pyramidal TIFF, written beside ``path`` and renamed over it (a replaced file)."""
    base = pyvips.Image.perlin(width, height, cell_size=32, seed=width, uchar=True)
    rgb = base.bandjoin([base.rot180(), base.fliphor()]).copy(interpretation="srgb")
    temporary = path.with_name("incoming.tmp.tif")
    rgb.tiffsave(str(temporary), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg")
    temporary.replace(path)


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the probe opens (the apps call ``probe_module.probe`` at call time)."""
    opened: list[Path] = []
    real = probe_module.probe

    def counted(path: Path, **limits: int) -> SourceInfo:
        opened.append(path)
        return real(path, **limits)

    monkeypatch.setattr(probe_module, "probe", counted)
    return opened


def test_facts_probed_by_one_instance_are_read_by_another(
    tmp_path: Path, redis_server: RedisServer, probes: list[Path]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    pyramid(images / "img.tif", 700, 500)
    a = make_app(images, tmp_path / "a", redis_server.url)
    b = make_app(images, tmp_path / "b", redis_server.url)
    status, info_a = get(a, "/iiif/3/img/info.json")
    assert status == 200
    assert len(probes) == 1
    status, info_b = get(b, "/iiif/3/img/info.json")
    assert (status, info_b) == (200, info_a)
    assert len(probes) == 1  # B never opened the file
    # Another identifier of the same file shares its facts too.
    c = make_app(images, tmp_path / "c", redis_server.url)
    status, info_c = get(c, "/iiif/3/img.tif/info.json")
    assert status == 200
    assert orjson.loads(info_c)["width"] == 700
    assert len(probes) == 1
    assert get(b, "/iiif/3/img/0,0,256,256/256,/0/default.jpg")[0] == 200  # B renders from the shared facts
    shared = service_of(b).cache.shared  # type: ignore[union-attr]
    assert shared is not None
    assert (shared.stats.facts_hits, shared.stats.facts_misses) == (1, 0)
    metrics = get(b, "/metrics")[1].decode()
    assert 'iiifserver_cache_hits_total{tier="shared_facts"} 1.0' in metrics
    assert 'iiifserver_cache_misses_total{tier="shared_facts"}' not in metrics
    assert 'iiifserver_cache_misses_total{tier="shared_facts"} 1.0' in get(a, "/metrics")[1].decode()

    # The file is replaced: its new version is another name, probed once and then shared again.
    pyramid(images / "img.tif", 400, 300)
    status, info_b = get(b, "/iiif/3/img/info.json")
    assert (status, orjson.loads(info_b)["width"], orjson.loads(info_b)["height"]) == (200, 400, 300)
    assert len(probes) == 2
    status, info_a = get(a, "/iiif/3/img/info.json")
    assert (status, info_a) == (200, info_b)
    assert len(probes) == 2


def test_a_corrupt_facts_entry_is_probed_again_and_replaced(
    tmp_path: Path, redis_server: RedisServer, raw: Any, probes: list[Path]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    pyramid(images / "img.tif", 700, 500)
    status, info_a = get(make_app(images, tmp_path / "a", redis_server.url), "/iiif/3/img/info.json")
    assert status == 200
    names = raw.keys("iiifserver:f:*")
    assert len(names) == 1
    value = bytearray(raw.get(names[0]))
    value[-3] ^= 0x20  # inside the encoded SourceInfo
    raw.set(names[0], bytes(value))

    b = make_app(images, tmp_path / "b", redis_server.url)
    assert get(b, "/iiif/3/img/info.json") == (200, info_a)
    assert len(probes) == 2
    shared = service_of(b).cache.shared  # type: ignore[union-attr]
    assert shared is not None
    assert (shared.stats.corrupt, shared.stats.facts_misses, shared.stats.facts_writes) == (1, 1, 1)
    # B wrote good facts back: a third instance reads them.
    assert get(make_app(images, tmp_path / "c", redis_server.url), "/iiif/3/img/info.json") == (200, info_a)
    assert len(probes) == 2


def test_facts_of_damaged_sources_are_never_shared(
    tmp_path: Path, redis_server: RedisServer, raw: Any, probes: list[Path]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 100)
    for instance in ("a", "b"):
        status, _ = get(make_app(images, tmp_path / instance, redis_server.url), "/iiif/3/broken/info.json")
        assert status >= 400
    assert len(probes) == 2  # each instance found the damage itself
    assert raw.keys("iiifserver:f:*") == []
