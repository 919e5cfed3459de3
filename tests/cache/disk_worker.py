"""A worker process for the multi-process disk cache test (importable by ``spawn`` children)."""

from __future__ import annotations

import hashlib
import random
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from iiifserver.cache.disk import DiskCache
from iiifserver.cache.entry import Entry

IDENTIFIERS = ("alpha", "beta", "gamma")
KEYS = 24
MAX_BYTES = 56_000  # smaller than all entries together: evictions run while the other process works


def key_for(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:40]


def identifier_for(n: int) -> str:
    return IDENTIFIERS[n % len(IDENTIFIERS)]


def body_for(n: int) -> bytes:
    # Distinct, verifiable content of varied length (up to 6.2 KB, under the 7 KB entry limit).
    seed = hashlib.sha256(f"body{n}".encode()).digest()
    return seed * (10 + 8 * n)


def media_for(n: int) -> str:
    return "image/jpeg" if n % 2 else "image/webp"


Outcome = tuple[int, int, int, int]


def run(root: str, seed: int, operations: int, barrier: Barrier) -> Outcome:
    """Random puts, gets and the odd purge; returns (hits, misses, bad reads, entries evicted)."""
    cache = DiskCache(Path(root), MAX_BYTES)
    rng = random.Random(seed)
    hits = misses = bad = 0
    barrier.wait()
    for _ in range(operations):
        n = rng.randrange(KEYS)
        action = rng.random()
        if action < 0.45:
            cache.put(identifier_for(n), key_for(n), Entry(body_for(n), media_for(n), identifier_for(n)))
        elif action < 0.99:
            got = cache.get(identifier_for(n), key_for(n))
            if got is None:
                misses += 1
            elif got == Entry(body_for(n), media_for(n), identifier_for(n)):
                hits += 1
            else:
                bad += 1
        else:
            cache.purge(identifier_for(n))
    cache.wait_for_eviction(30)
    return hits, misses, bad, cache.stats.evicted


def main(root: str, seed: int, operations: int, barrier: Barrier, results: Queue[Outcome]) -> None:
    results.put(run(root, seed, operations, barrier))
