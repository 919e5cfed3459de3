"""allocator: glibc's malloc arenas limited in a server process."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from iiifserver import allocator

# Eight threads each allocate once: glibc gives each new thread an arena of its own until the
# limit; malloc_stats() then lists every arena on stderr ("Arena N:").
_SCRIPT = """
import ctypes, ctypes.util, sys, threading
from iiifserver import allocator
print(allocator.limit_arenas(int(sys.argv[1])))
start = threading.Barrier(8)
def work():
    start.wait()
    keep = [bytearray(300_000) for _ in range(20)]
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
"""


def _arenas(limit: int) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(limit)], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip(), sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_limit_holds_the_arenas_new_threads_would_make() -> None:
    said, unlimited = _arenas(0)
    assert said == "False"  # 0 leaves glibc's default
    assert unlimited > 2  # the threads do make arenas of their own without a limit
    said, limited = _arenas(2)
    assert said == "True"
    assert limited <= 2


def test_no_limit_is_asked_for_zero() -> None:
    assert allocator.limit_arenas(0) is False
    assert allocator.limit_arenas(-1) is False
