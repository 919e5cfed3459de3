"""Tile cache: immutable rendered responses, in memory and on disk, keyed by request and source version.

Owns: the cache key, the memory tier (per process), the disk tier (shared by worker processes),
the single-flight map that makes identical concurrent renders run once, and the tiered facade.
Must not know: IIIF request grammar, HTTP frameworks, pyvips. Callers hand it opaque canonical
strings and encoded bytes.
"""

from iiifserver.cache.disk import DiskCache, DiskStats, PurgeResult
from iiifserver.cache.disk_eviction import ScanResult
from iiifserver.cache.entry import Entry
from iiifserver.cache.keys import cache_key, identifier_digest
from iiifserver.cache.memory import MemoryCache, MemoryStats
from iiifserver.cache.singleflight import SingleFlight
from iiifserver.cache.tiered import TileCache

__all__ = [
    "DiskCache",
    "DiskStats",
    "Entry",
    "MemoryCache",
    "MemoryStats",
    "PurgeResult",
    "ScanResult",
    "SingleFlight",
    "TileCache",
    "cache_key",
    "identifier_digest",
]
