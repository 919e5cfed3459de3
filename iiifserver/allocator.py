"""The C allocator of a server process: how many malloc arenas glibc may make.

Owns: limiting glibc's malloc arenas (``mallopt(M_ARENA_MAX)``) in a worker process, before its
threads start.
Must not know: IIIF, the server.

Why: glibc gives every new thread that allocates an arena of its own, up to eight per core; each
render and I/O thread of a worker then fills and fragments one with decoded pixels and encoded
responses, and memory freed in one arena is not reused by another. Measured on the mixed workload
at c=64 (2 workers, AMD EPYC, ``benchmarks/harness/kind_latency.py``): peak summed RSS of the
server processes 912 and 960 MB with glibc's default, 677 and 699 MB with 2 arenas, throughput
within run-to-run noise (497 and 592 against 569 and 656 requests/s).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # malloc.h


def limit_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas from now on (0: leave the C library's default). False where
    the C library is not glibc or refuses; arenas made before the call stay."""
    if count <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count) == 1)
