"""Tests for iiifserver.demo.build: the set is built in order, every demo image is a complete
tiled pyramid with real detail, stored as the plan says (tile size, compression, BigTIFF,
SubIFDs), and building is idempotent (a second call rewrites nothing; damaged or stale files
are rebuilt; a failure leaves nothing behind). Each image's own look: tests/demo/images/."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pyvips

from iiifserver.demo import build as demo
from iiifserver.demo import build_demo
from tests.demo.conftest import (
    CONFORMANCE,
    VALIDATOR_PNG,
    VALIDATOR_TIF,
    Built,
    image_path,
    needs_validator_png,
    pyramid_levels,
    sample_crops,
    tiff_layout,
)


@dataclass(frozen=True, slots=True)
class Expected:
    width: int
    height: int
    bands: int
    interpretation: str
    tile: int
    compression: str  # tifffile's name for the TIFF Compression tag


EXPECTED = {
    "painting.tif": Expected(6000, 4500, 3, "srgb", 256, "JPEG"),
    "manuscript-gray.tif": Expected(3000, 4200, 1, "b-w", 256, "JPEG"),
    "photo-p3.tif": Expected(3000, 2000, 3, "srgb", 256, "ADOBE_DEFLATE"),
    "map-lzw.tif": Expected(4000, 3000, 3, "srgb", 512, "LZW"),
    VALIDATOR_TIF: Expected(1000, 1000, 3, "srgb", 256, "ADOBE_DEFLATE"),
}
SMALL_SET = list(EXPECTED)
# The book pages, the logo and the album photos (built after the images above), by relative name.
EXTRAS = {
    **{f"book/page-{n:02d}.tif": Expected(1500, 2100, 1, "b-w", 256, "JPEG") for n in range(1, 9)},
    "_assets/logo.tif": Expected(512, 512, 3, "srgb", 256, "ADOBE_DEFLATE"),
    **{f"album/photo-{n}.tif": Expected(2400, 1600, 3, "srgb", 256, "JPEG") for n in range(1, 6)},
}
ALL_SMALL = SMALL_SET + list(EXTRAS)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _mtimes(root: Path) -> dict[str, int]:
    return {_rel(path, root): path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def _jpeg_sampling(tile: bytes) -> list[tuple[int, int]]:
    """(h, v) sampling factors of each component, from a JPEG stream's SOF marker."""
    at = 2  # after SOI
    while at < len(tile):
        marker, length = struct.unpack(">HH", tile[at : at + 4])
        if marker in (0xFFC0, 0xFFC1, 0xFFC2):
            components = tile[at + 9]
            factors = [tile[at + 11 + 3 * c] for c in range(components)]
            return [(f >> 4, f & 15) for f in factors]
        at += 2 + length
    raise AssertionError("no SOF marker in the tile")


def _only(names: list[str]) -> Callable[..., list[demo.DemoImage]]:
    """A demo_plan replacement that keeps only the named images (to test cheaply)."""
    plan = demo.demo_plan(CONFORMANCE, large=True)

    def only(conformance_dir: Path | None, *, large: bool = True) -> list[demo.DemoImage]:
        return [image for image in plan if image.name in names]

    return only


# --- the set ---------------------------------------------------------------------------------


def test_builds_the_small_set_and_returns_its_paths(built: Built) -> None:
    expected = [name for name in ALL_SMALL if CONFORMANCE is not None or name != VALIDATOR_TIF]
    assert [_rel(path, built.root) for path in built.paths] == expected
    assert all(path.is_file() for path in built.paths)
    assert not (built.root / "large-panorama.tif").exists()


def test_reports_one_line_per_file(built: Built) -> None:
    total = len(ALL_SMALL)
    assert len(built.lines) == total
    assert built.lines[0] == f"building demo image 1/{total}: painting.tif, 6000x4500 (27 MP)"
    for number, (line, name) in enumerate(zip(built.lines, ALL_SMALL, strict=True), start=1):
        assert f" {number}/{total}" in line
        assert name in line


def test_leaves_no_temporary_files_and_records_a_marker(built: Built) -> None:
    leftovers = [path.name for path in built.root.rglob("*") if path.name.endswith(".part")]
    assert leftovers == []
    marker = json.loads((built.root / demo.MARKER_NAME).read_text(encoding="utf-8"))
    assert marker["demo_version"] == demo.DEMO_VERSION
    assert set(marker["files"]) == {_rel(path, built.root) for path in built.paths}
    for path in built.paths:
        assert marker["files"][_rel(path, built.root)]["bytes"] == path.stat().st_size


def test_starts_no_python_threads(built: Built) -> None:
    # libvips runs its own worker threads inside each operation; the builder adds none.
    assert built.threads_started == []


# --- each image ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL_SET)
def test_is_a_complete_tiled_pyramid(built: Built, name: str) -> None:
    path = image_path(built, name)
    expected = EXPECTED[name]
    image = pyvips.Image.new_from_file(str(path))
    assert (image.width, image.height) == (expected.width, expected.height)
    assert image.bands == expected.bands
    assert image.format == "uchar"
    assert image.interpretation == expected.interpretation
    assert image.get("tile-width") == image.get("tile-height") == expected.tile
    # A pyramid in pages: every level halves the previous one, down to one that fits a tile.
    assert image.get("n-pages") > 1
    levels = pyramid_levels(path)
    for previous, level in itertools.pairwise(levels):
        assert (level.width, level.height) == (previous.width // 2, previous.height // 2)
    assert max(levels[-1].width, levels[-1].height) <= expected.tile
    assert max(levels[-2].width, levels[-2].height) > expected.tile
    layout = tiff_layout(path)
    assert layout.compression == expected.compression
    assert not layout.bigtiff


@pytest.mark.parametrize("name", SMALL_SET)
def test_has_real_detail_at_full_resolution(built: Built, name: str) -> None:
    image = pyvips.Image.new_from_file(str(image_path(built, name)))
    assert image.deviate() > 25.0  # nothing like a flat colour
    for crop in sample_crops(image):  # every deep-zoom tile shows structure
        assert crop.deviate() > 2.0


# --- idempotence -----------------------------------------------------------------------------


def test_second_call_rewrites_nothing(built: Built) -> None:
    before = _mtimes(built.root)
    lines: list[str] = []
    paths = build_demo(built.root, CONFORMANCE, large=False, progress=lines.append)
    assert paths == built.paths
    assert _mtimes(built.root) == before
    assert all(" up to date: " in line for line in lines)


def test_rebuilds_a_damaged_file_identically(built: Built, tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(built.root, root)
    damaged = root / "photo-p3.tif"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    before = _mtimes(root)
    lines: list[str] = []
    paths = build_demo(root, CONFORMANCE, large=False, progress=lines.append)
    assert [_rel(path, root) for path in paths] == [_rel(path, built.root) for path in built.paths]
    changed = {name for name, mtime in _mtimes(root).items() if before.get(name) != mtime}
    assert changed == {"photo-p3.tif", demo.MARKER_NAME}
    assert [line for line in lines if "building" in line] == [
        f"building demo image 3/{len(ALL_SMALL)}: photo-p3.tif, 3000x2000 (6 MP)"
    ]
    # Deterministic: the rebuilt file decodes to exactly the same pixels.
    original = pyvips.Image.new_from_file(str(built.root / "photo-p3.tif")).numpy()
    assert np.array_equal(pyvips.Image.new_from_file(str(damaged)).numpy(), original)


def test_rebuilds_files_of_an_older_demo_version(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "demo_plan", _only(["photo-p3.tif"]))
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy2(built.root / "photo-p3.tif", root)
    marker = json.loads((built.root / demo.MARKER_NAME).read_text(encoding="utf-8"))
    marker["demo_version"] = demo.DEMO_VERSION - 1
    (root / demo.MARKER_NAME).write_text(json.dumps(marker), encoding="utf-8")
    lines: list[str] = []
    build_demo(root, CONFORMANCE, progress=lines.append)
    assert lines == ["building demo image 1/1: photo-p3.tif, 3000x2000 (6 MP)"]
    rewritten = json.loads((root / demo.MARKER_NAME).read_text(encoding="utf-8"))
    assert rewritten["demo_version"] == demo.DEMO_VERSION


def test_skips_the_validator_image_without_its_png(built: Built, tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(built.root, root, ignore=shutil.ignore_patterns(VALIDATOR_TIF))
    lines: list[str] = []
    paths = build_demo(root, None, large=False, progress=lines.append)
    assert VALIDATOR_TIF not in [path.name for path in paths]
    assert not (root / VALIDATOR_TIF).exists()
    line = next(line for line in lines if VALIDATOR_TIF in line)
    assert line == f"skipping demo image 5/{len(ALL_SMALL)}: {VALIDATOR_TIF} (no conformance directory given)"
    lines.clear()
    missing = build_demo(root, tmp_path, large=False, progress=lines.append)
    assert missing == paths
    line = next(line for line in lines if VALIDATOR_TIF in line)
    assert line.startswith(f"skipping demo image 5/{len(ALL_SMALL)}: {VALIDATOR_TIF} ({VALIDATOR_PNG} not found")


@needs_validator_png
def test_keeps_a_finished_validator_image_without_its_png(built: Built) -> None:
    before = _mtimes(built.root)
    paths = build_demo(built.root, None, large=False)
    assert paths == built.paths
    assert _mtimes(built.root) == before


def test_a_failed_render_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A truncated JPEG: its header opens, its pixels fail while tiffsave is already writing.
    source = tmp_path / "source.jpg"
    (pyvips.Image.gaussnoise(800, 600, seed=1) + 100).cast("uchar").jpegsave(str(source))
    source.write_bytes(source.read_bytes()[:5000])
    plan = [
        demo.DemoImage("broken.tif", 800, 600, lambda: pyvips.Image.new_from_file(str(source), fail_on="truncated"))
    ]
    monkeypatch.setattr(demo, "demo_plan", lambda conformance_dir, *, large=True: plan)
    images = tmp_path / "images"
    with pytest.raises(pyvips.Error):
        build_demo(images, None)
    assert list(images.iterdir()) == []  # no partial file, no marker


def test_a_failed_move_into_place_removes_the_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        written.append(Path(src))
        assert Path(src).stat().st_size > 0  # the temporary file was complete
        raise OSError("disk full")

    plan = [demo.DemoImage("flat.tif", 300, 200, lambda: pyvips.Image.black(300, 200))]
    monkeypatch.setattr(demo, "demo_plan", lambda conformance_dir, *, large=True: plan)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        build_demo(tmp_path, None)
    assert [path.parent for path in written] == [tmp_path]  # written beside its final name
    assert list(tmp_path.iterdir()) == []


# --- the large panorama ----------------------------------------------------------------------


@pytest.mark.slow
def test_large_panorama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "demo_plan", _only(["large-panorama.tif"]))
    [path] = build_demo(tmp_path, None, large=True)
    assert path.name == "large-panorama.tif"
    image = pyvips.Image.new_from_file(str(path))
    assert image.width * image.height > 100_000_000
    assert (image.bands, image.format, image.interpretation) == (3, "uchar", "srgb")
    assert image.get("tile-width") == image.get("tile-height") == 256
    # The pyramid is in SubIFDs of the one page, every level present.
    assert image.get("n-pages") == 1
    assert image.get("n-subifds") > 0
    levels = pyramid_levels(path)
    for previous, level in itertools.pairwise(levels):
        assert (level.width, level.height) == (previous.width // 2, previous.height // 2)
    assert max(levels[-1].width, levels[-1].height) <= 256
    layout = tiff_layout(path)
    assert layout.bigtiff
    assert (layout.compression, layout.photometric) == ("JPEG", "YCBCR")
    assert _jpeg_sampling(layout.first_tile) == [(2, 2), (1, 1), (1, 1)]  # 4:2:0
    for crop in sample_crops(image):
        assert crop.deviate() > 2.0
    # Built from a repeated texture block, but no two tiles are alike.
    rng = np.random.default_rng(0)
    across, down = image.width // 256, image.height // 256
    picks = {(int(rng.integers(across)), int(rng.integers(down))) for _ in range(60)}
    digests = {hashlib.sha256(image.crop(x * 256, y * 256, 256, 256).write_to_memory()).digest() for x, y in picks}
    assert len(digests) == len(picks)
    assert os.path.getsize(path) > 4_000_000  # really holds 105 MP of detail


@pytest.mark.parametrize("name", list(EXTRAS))
def test_book_album_and_logo_are_tiled_pyramids(built: Built, name: str) -> None:
    path = built.root / name
    expected = EXTRAS[name]
    image = pyvips.Image.new_from_file(str(path))
    assert (image.width, image.height, image.bands) == (expected.width, expected.height, expected.bands)
    assert image.interpretation == expected.interpretation
    assert image.get("tile-width") == expected.tile
    assert image.get("n-pages") > 1
    assert tiff_layout(path).compression == expected.compression
    assert image.deviate() > 10.0  # not a blank page
