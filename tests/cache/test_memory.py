"""Memory tier: bounded in bytes, least recently used out first, purge by identifier."""

from __future__ import annotations

from iiifserver.cache.entry import Entry
from iiifserver.cache.memory import ENTRY_OVERHEAD, MemoryCache, entry_size


def key(n: int) -> str:
    return f"{n:040x}"


def entry(size: int, identifier: str = "img") -> Entry:
    return Entry(b"x" * size, "image/jpeg", identifier)


def test_hit_and_miss_counters() -> None:
    cache = MemoryCache(1_000_000)
    stored = entry(100)
    assert cache.put(key(1), stored)
    assert cache.get(key(1)) is stored
    assert cache.get(key(2)) is None
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)
    assert stats.bytes == entry_size(stored) == 100 + len("image/jpeg") + len("img") + ENTRY_OVERHEAD


def test_bounded_in_bytes_not_entries() -> None:
    cache = MemoryCache(100_000)
    for n in range(200):
        cache.put(key(n), entry(5_000))
    stats = cache.stats
    assert stats.bytes <= 100_000
    assert stats.entries == 100_000 // entry_size(entry(5_000))
    assert stats.evictions == 200 - stats.entries
    # The survivors are the newest ones.
    assert all(cache.get(key(n)) is not None for n in range(200 - stats.entries, 200))


def test_least_recently_used_goes_first() -> None:
    size = 1_000
    cache = MemoryCache(10 * entry_size(entry(size)) + 10)
    for n in range(10):
        cache.put(key(n), entry(size))
    assert cache.get(key(0)) is not None  # 0 is now the most recent; 1 the least
    cache.put(key(10), entry(size))
    assert key(1) not in cache
    assert all(key(n) in cache for n in (0, *range(2, 11)))
    assert cache.stats.evictions == 1


def test_entry_larger_than_an_eighth_is_not_stored() -> None:
    cache = MemoryCache(80_000)
    small = entry(10_000 - ENTRY_OVERHEAD - 20)
    assert cache.put(key(1), small)
    assert not cache.put(key(2), entry(10_001))
    assert key(2) not in cache
    assert cache.get(key(1)) is small


def test_zero_bytes_means_off() -> None:
    cache = MemoryCache(0)
    assert not cache.put(key(1), entry(1))
    assert cache.get(key(1)) is None


def test_purge_by_identifier_keeps_others_and_their_order() -> None:
    size = 1_000
    cache = MemoryCache(10 * entry_size(entry(size, "keep")) + 10)
    cache.put(key(1), entry(size, "keep"))
    cache.put(key(2), entry(size, "drop"))
    cache.put(key(3), entry(size, "keep"))
    cache.put(key(4), entry(size, "drop"))
    assert cache.purge("drop") == 2
    assert key(2) not in cache
    assert key(4) not in cache
    assert cache.stats.bytes == 2 * entry_size(entry(size, "keep"))
    # The purge did not refresh anything: 1 is still the least recently used.
    for n in range(5, 14):
        cache.put(key(n), entry(size, "keep"))
    assert key(1) not in cache
    assert key(3) in cache
    assert cache.purge("nothing-here") == 0


def test_purge_all_and_clear() -> None:
    cache = MemoryCache(1_000_000)
    for n in range(5):
        cache.put(key(n), entry(10, f"id{n}"))
    assert cache.purge(None) == 5
    assert len(cache) == 0
    assert cache.stats.bytes == 0
    cache.put(key(1), entry(10))
    assert cache.clear() == 1
