"""Reading stored tiles: blocking and from the page cache only, checked against the version,
and the descriptors the server keeps; what reading costs (a note, not an assertion).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips

from iiifserver.errors import SourceChanged
from iiifserver.image.jpeg_splice import EOI, SOI
from iiifserver.image.tiff_directory import read_tile_index
from iiifserver.image.tile_files import TileFiles, open_and_read, read_stored_tile, read_stored_tile_if_cached
from tests.image.pyramids import (
    Pyramid,
    first_whole_tile,
    open_fd,
    version_of,
)

# -- reading without blocking, and the descriptors the server keeps --------------------------------


def test_read_if_cached_equals_the_blocking_read(q90_pages: Pyramid) -> None:
    grid, index = first_whole_tile(q90_pages)
    with open_fd(q90_pages.path) as fd:
        blocking = read_stored_tile(fd, grid, index)  # also brings the bytes into the page cache
        assert read_stored_tile_if_cached(fd, grid, index) == blocking


def test_open_and_read_checks_the_version_on_the_descriptor(q85_pages: Pyramid, tmp_path: Path) -> None:
    grid, index = first_whole_tile(q85_pages)
    copy = tmp_path / "copy.tif"
    shutil.copyfile(q85_pages.path, copy)
    tile, fd = open_and_read(copy, version_of(copy), grid, index)
    try:
        assert tile.startswith(SOI)
        assert tile.endswith(EOI)
    finally:
        os.close(fd)
    stale = dataclasses.replace(version_of(copy), mtime_ns=version_of(copy).mtime_ns - 1)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(SourceChanged):
        open_and_read(copy, stale, grid, index)
    assert len(os.listdir("/proc/self/fd")) == open_before  # the refused descriptor was closed


def test_tile_files_adopt_read_and_evict(q90_pages: Pyramid, q85_pages: Pyramid) -> None:
    files = TileFiles(max_open=1)
    grid, index = first_whole_tile(q90_pages)
    version = version_of(q90_pages.path)
    assert files.read_if_cached(q90_pages.path, version, grid, index) is None  # no descriptor yet
    tile, fd = open_and_read(q90_pages.path, version, grid, index)
    files.adopt(q90_pages.path, version, fd)
    assert files.read_if_cached(q90_pages.path, version, grid, index) == tile
    # A second descriptor for the same version (a concurrent first read) is closed, not kept.
    _, twin = open_and_read(q90_pages.path, version, grid, index)
    files.adopt(q90_pages.path, version, twin)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(twin)
    # Over max_open, the least recently used descriptor is closed.
    grid85, index85 = first_whole_tile(q85_pages)
    version85 = version_of(q85_pages.path)
    _, fd85 = open_and_read(q85_pages.path, version85, grid85, index85)
    files.adopt(q85_pages.path, version85, fd85)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    assert files.read_if_cached(q90_pages.path, version, grid, index) is None
    assert files.read_if_cached(q85_pages.path, version85, grid85, index85) is not None
    files.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd85)


# -- timing note (not an assertion) ----------------------------------------------------------


def test_timing_note(q90_pages: Pyramid, record_property: Callable[[str, object], None]) -> None:
    """Prints what the index and a tile read cost here; for the benchmark pyramids see the
    module's report (12000x9000: ~0.3 ms per index, 40000x25000: ~0.4 ms)."""
    path, levels = q90_pages.path, q90_pages.info.levels
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        stored = read_tile_index(path, levels)
    index_ms = (time.perf_counter() - start) / runs * 1e3
    grid = stored.levels[0]
    assert grid is not None
    whole = range(grid.tile_count)
    with open_fd(path) as fd:
        start = time.perf_counter()
        for _ in range(5):
            for i in whole:
                read_stored_tile(fd, grid, i)
        tile_us = (time.perf_counter() - start) / (5 * len(whole)) * 1e6
        data = read_stored_tile(fd, grid, whole[0])
        start = time.perf_counter()
        for _ in range(20):
            pyvips.Image.jpegload_buffer(data).jpegsave_buffer(Q=80)
        decode_encode_us = (time.perf_counter() - start) / 20 * 1e6
    note = (
        f"read_tile_index {index_ms:.2f} ms ({len(levels)} levels); read_stored_tile {tile_us:.0f} us "
        f"(avg {sum(grid.bytecounts) / grid.tile_count / 1024:.1f} KiB); libvips decode+encode Q80 "
        f"{decode_encode_us:.0f} us"
    )
    record_property("timing", note)
    print(note)
