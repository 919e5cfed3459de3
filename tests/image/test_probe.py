"""probe(): SourceInfo from headers, and the sources it refuses (fixtures: conftest.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvips
import tifffile

from iiifserver.errors import IIIFError, SourceDamaged, UnsupportedSource
from iiifserver.image import probe as probe_module
from iiifserver.image.probe import probe
from iiifserver.image.source_info import Colour, Level, SourceFormat, SourceInfo
from tests.image.conftest import Sample

PLAIN_MAX = 40_000_000  # the Settings defaults
SOURCE_MAX = 4_000_000_000


def _probe(sample: Sample, *, plain_max_pixels: int = PLAIN_MAX, max_source_pixels: int = SOURCE_MAX) -> SourceInfo:
    return probe(sample.path, plain_max_pixels=plain_max_pixels, max_source_pixels=max_source_pixels)


def _refusal(sample: Sample, *, status: int = 501, **limits: int) -> IIIFError:
    """A source refused: 501 for an image this server will not serve, 500 for a damaged one."""
    with pytest.raises(IIIFError) as caught:
        _probe(sample, **limits)
    exc = caught.value
    assert isinstance(exc, UnsupportedSource if status == 501 else SourceDamaged)
    # Error bodies name the identifier, never the filesystem (DESIGN: security invariants).
    for text in (str(exc), exc.detail):
        assert str(sample.path.parent) not in text
        assert sample.path.name not in text
    assert exc.parameter == "identifier"
    assert exc.status == status
    return exc


# -- pyramids --------------------------------------------------------------------------------

PAGES_3000 = (
    Level(3000, 2000, page=0),
    Level(1500, 1000, page=1),
    Level(750, 500, page=2),
    Level(375, 250, page=3),
    Level(187, 125, page=4),
)
SUBIFDS_3000 = (
    Level(3000, 2000),
    Level(1500, 1000, page=0, subifd=0),
    Level(750, 500, page=0, subifd=1),
    Level(375, 250, page=0, subifd=2),
    Level(187, 125, page=0, subifd=3),
)
PAGES_3001 = (Level(3001, 2001), *PAGES_3000[1:])  # 3001 -> 1500: libvips floors each half
PAGES_1600 = (Level(1600, 1200, page=0), Level(800, 600, page=1), Level(400, 300, page=2), Level(200, 150, page=3))


@pytest.mark.parametrize(
    ("fixture", "levels", "colour", "bands", "has_alpha", "has_icc"),
    [
        ("rgb_pages", PAGES_3000, Colour.RGB, 3, False, False),
        ("rgb_subifd_jpeg", SUBIFDS_3000, Colour.RGB, 3, False, False),
        ("rgb_odd", PAGES_3001, Colour.RGB, 3, False, False),
        ("gray_pyramid", PAGES_1600, Colour.GRAY, 1, False, False),
        ("icc_p3_pyramid", PAGES_1600, Colour.RGB, 3, False, True),
        ("rgb16_pyramid", PAGES_1600, Colour.RGB, 3, False, False),
        ("rgba_pyramid", PAGES_1600, Colour.RGB, 4, True, False),
        ("corrupt_level0", PAGES_3000, Colour.RGB, 3, False, False),  # headers intact, tiles not
    ],
)
def test_pyramid(
    request: pytest.FixtureRequest,
    fixture: str,
    levels: tuple[Level, ...],
    colour: Colour,
    bands: int,
    has_alpha: bool,
    has_icc: bool,
) -> None:
    info = _probe(request.getfixturevalue(fixture))
    assert (info.width, info.height) == (levels[0].width, levels[0].height)
    assert info.levels == levels
    assert (info.tile_width, info.tile_height) == (256, 256)
    assert info.is_tiled
    assert info.colour is colour
    assert info.bands == bands
    assert info.has_alpha is has_alpha
    assert info.has_icc is has_icc
    assert info.format is SourceFormat.TIFF


@pytest.mark.parametrize("fixture", ["rgb_pages", "rgb_subifd_jpeg", "rgb_odd", "gray_pyramid", "rgb16_pyramid"])
def test_levels_agree_with_tifffile(request: pytest.FixtureRequest, fixture: str) -> None:
    """An independent TIFF reader sees the same level sizes, largest first."""
    sample: Sample = request.getfixturevalue(fixture)
    with tifffile.TiffFile(sample.path) as tif:
        expected = [(level.shape[1], level.shape[0]) for level in tif.series[0].levels]
    assert [(level.width, level.height) for level in _probe(sample).levels] == expected


def test_scale_factors_of_a_pyramid(rgb_pages: Sample) -> None:
    # 3000/187 = 16.04 rounds to 16: the floor-rounded smallest level still counts.
    assert _probe(rgb_pages).scale_factors() == (1, 2, 4, 8, 16)


def test_pyramid_above_plain_limit_is_served(rgb_pages: Sample) -> None:
    """plain_max_pixels is for untiled sources only: a tiled pyramid is cheap at any size."""
    assert _probe(rgb_pages, plain_max_pixels=1_000_000).width == 3000


# -- single-level sources --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "size", "tile", "fmt"),
    [
        ("strip_tiff", (1600, 1200), (0, 0), SourceFormat.TIFF),
        ("tiled_single", (1024, 768), (256, 256), SourceFormat.TIFF),
        ("plain_jpeg", (800, 600), (0, 0), SourceFormat.JPEG),
        ("plain_png", (800, 600), (0, 0), SourceFormat.PNG),
        ("jpeg_named_tif", (800, 600), (0, 0), SourceFormat.JPEG),  # sniffed by content, not name
    ],
)
def test_single_level(
    request: pytest.FixtureRequest, fixture: str, size: tuple[int, int], tile: tuple[int, int], fmt: SourceFormat
) -> None:
    info = _probe(request.getfixturevalue(fixture))
    assert (info.width, info.height) == size
    assert info.levels == (Level(*size),)
    assert (info.tile_width, info.tile_height) == tile
    assert info.is_tiled is (tile != (0, 0))
    assert info.format is fmt
    assert (info.colour, info.bands, info.has_alpha, info.has_icc) == (Colour.RGB, 3, False, False)
    assert info.scale_factors() == (1,)


def test_multipage_document_keeps_only_page_0(multipage_document: Sample) -> None:
    """Pages of other shapes are a document, not a pyramid: only the first page is served."""
    with tifffile.TiffFile(multipage_document.path) as tif:
        assert len(tif.pages) == 3  # the fixture really has three pages
    info = _probe(multipage_document)
    assert (info.width, info.height) == (1000, 700)
    assert info.levels == (Level(1000, 700, page=0),)


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["svg_named_tif", "gif_named_tif", "empty_file"])
def test_not_an_image_we_decode(request: pytest.FixtureRequest, fixture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused from the magic bytes alone: no libvips loader is even asked."""

    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("probe opened a source it should have refused by its magic bytes")

    monkeypatch.setattr(probe_module, "open_level", must_not_decode)
    exc = _refusal(request.getfixturevalue(fixture), status=500)
    assert "not a TIFF, JPEG, PNG or JPEG 2000" in exc.detail


@pytest.mark.parametrize("fixture", ["svg_named_tif", "gif_named_tif"])
def test_libvips_refuses_other_loaders(request: pytest.FixtureRequest, fixture: str) -> None:
    """configure_libvips blocks every loader but TIFF/JPEG/PNG, whatever a file claims to be."""
    path = request.getfixturevalue(fixture).path
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_file(str(path))
    with pytest.raises(pyvips.Error, match="blocked"):
        pyvips.Image.gifload(str(path))


def test_libvips_operation_cache_is_off() -> None:
    assert pyvips.cache_get_max() == 0


def test_truncated_tiff(truncated_tiff: Sample) -> None:
    exc = _refusal(truncated_tiff, status=500)
    assert "damaged or unreadable" in exc.detail


@pytest.mark.parametrize("fixture", ["strip_tiff", "plain_jpeg", "plain_png", "tiled_single", "multipage_document"])
def test_untiled_above_plain_limit_says_convert(request: pytest.FixtureRequest, fixture: str) -> None:
    """Sources without reduced levels must be decoded whole: above the limit, convert them."""
    sample: Sample = request.getfixturevalue(fixture)
    info = _probe(sample)
    # Exactly at the limit is still served; one pixel over is not.
    assert _probe(sample, plain_max_pixels=info.width * info.height) == info
    exc = _refusal(sample, plain_max_pixels=info.width * info.height - 1)
    assert "convert" in exc.detail
    assert "iiifserver convert" in exc.detail
    assert f"{info.width}x{info.height}" in exc.detail


@pytest.mark.parametrize("fixture", ["rgb_pages", "strip_tiff", "plain_jpeg"])
def test_above_max_source_pixels(request: pytest.FixtureRequest, fixture: str) -> None:
    sample: Sample = request.getfixturevalue(fixture)
    info = _probe(sample)
    assert _probe(sample, max_source_pixels=info.width * info.height) == info
    exc = _refusal(sample, max_source_pixels=info.width * info.height - 1)
    assert "more than this server accepts" in exc.detail


def test_refusal_of_a_file_in_a_revealing_folder(tmp_path: Path, truncated_tiff: Sample) -> None:
    """Even a path that reads like a message must not leak into it."""
    folder = tmp_path / "secret-folder"
    folder.mkdir()
    path = folder / "damaged.tif"
    path.write_bytes(truncated_tiff.path.read_bytes())
    exc = _refusal(Sample(path), status=500)
    assert "secret" not in str(exc)


def test_opened_levels_are_reused_per_thread_and_per_version(rgb_pages: Sample, tmp_path: Path) -> None:
    import os
    import shutil
    import threading

    from iiifserver.errors import SourceChanged
    from iiifserver.image.probe import open_level_cached
    from iiifserver.image.source_info import Level, SourceFormat, SourceVersion

    def version_of(path: Path) -> SourceVersion:
        st = os.stat(path)
        return SourceVersion.of(st)

    path = tmp_path / "copy.tif"
    shutil.copyfile(rgb_pages.path, path)
    level = Level(375, 250, page=3)
    v1 = version_of(path)
    first = open_level_cached(path, SourceFormat.TIFF, level, v1)
    assert open_level_cached(path, SourceFormat.TIFF, level, v1) is first
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(open_level_cached(path, SourceFormat.TIFF, level, v1)))
    thread.start()
    thread.join()
    assert other[0] is not first  # each render thread has its own (no libtiff lock contention)
    assert (first.width, first.height) == (375, 250)

    # Replaced since it was stat-ed: the stale version is refused, the new one opens afresh.
    replacement = tmp_path / "next.tif"
    shutil.copyfile(rgb_pages.path, replacement)
    os.replace(replacement, path)
    stale = dataclasses.replace(v1, mtime_ns=v1.mtime_ns + 1)  # never opened under this key
    with pytest.raises(SourceChanged):
        open_level_cached(path, SourceFormat.TIFF, level, stale)
    fresh = open_level_cached(path, SourceFormat.TIFF, level, version_of(path))
    assert fresh is not first


# -- the opened-level cache: bounded by decoded bytes ----------------------------------------


@pytest.fixture
def opened_budget() -> Iterator[None]:
    """Restore the module's opened-level bounds (and this thread's cache) after a test changes them."""
    saved = dict(probe_module._budget)
    yield
    probe_module.set_opened_budget(count=saved["count"], nbytes=saved["bytes"])


def test_decoded_footprint_of_a_tiled_level_is_two_rows_of_tiles(rgb_pages: Sample, rgb16_pyramid: Sample) -> None:
    image = pyvips.Image.tiffload(str(rgb_pages.path), page=0, access="random")
    tw, th = int(image.get("tile-width")), int(image.get("tile-height"))
    across, down = -(-3000 // tw), -(-2000 // th)
    tiles = min(across * down, 2 * (1 + 3000 // tw))
    assert tiles < across * down  # the cache holds rows, not the level
    assert probe_module.decoded_footprint(image) == tiles * tw * th * 3
    small = pyvips.Image.tiffload(str(rgb_pages.path), page=4, access="random")  # 187x125: one tile
    assert probe_module.decoded_footprint(small) == tw * th * 3
    deep = pyvips.Image.tiffload(str(rgb16_pyramid.path), page=3, access="random")
    assert deep.format == "ushort"
    assert probe_module.decoded_footprint(deep) == int(deep.get("tile-width")) * int(deep.get("tile-height")) * 3 * 2


@pytest.mark.parametrize("fixture", ["strip_tiff", "plain_jpeg", "plain_png"])
def test_decoded_footprint_of_an_untiled_source_is_all_of_it(request: pytest.FixtureRequest, fixture: str) -> None:
    sample: Sample = request.getfixturevalue(fixture)
    image = pyvips.Image.new_from_file(str(sample.path), access="random")
    assert probe_module.decoded_footprint(image) == image.width * image.height * image.bands


def test_opened_levels_evict_least_recent_by_bytes_and_count() -> None:
    cache = probe_module.OpenedLevels(max_count=3, max_bytes=100)

    def key(n: int) -> tuple[str, str, int, int]:
        return (f"f{n}", "v", 0, -1)

    assert cache.put(key(1), "one", 40)
    assert cache.put(key(2), "two", 40)
    assert cache.get(key(1)) == "one"  # now the most recent
    assert cache.put(key(3), "three", 40)  # 120 > 100: the least recent (2) goes
    assert cache.get(key(2)) is None
    assert (len(cache), cache.nbytes) == (2, 80)
    assert not cache.put(key(4), "huge", 101)  # heavier than the whole budget: not kept, nothing evicted
    assert cache.get(key(4)) is None
    assert (len(cache), cache.nbytes) == (2, 80)
    assert cache.put(key(5), "a", 1)
    assert cache.put(key(6), "b", 1)  # the count bound (3) evicts the least recent, 1
    assert cache.get(key(1)) is None
    assert (len(cache), cache.nbytes) == (3, 42)
    assert cache.put(key(3), "three again", 10)  # replacing a key replaces its weight
    assert (len(cache), cache.nbytes) == (3, 12)
    assert not probe_module.OpenedLevels(max_count=0, max_bytes=100).put(key(1), "x", 1)


def test_a_level_heavier_than_the_budget_is_opened_for_each_render(rgb_pages: Sample, opened_budget: None) -> None:
    from iiifserver.image.probe import open_level_cached
    from iiifserver.image.source_info import SourceVersion

    version = SourceVersion.of(rgb_pages.path.stat())
    small, full = Level(187, 125, page=4), Level(3000, 2000, page=0)
    first_full = pyvips.Image.tiffload(str(rgb_pages.path), page=0, access="random")
    probe_module.set_opened_budget(nbytes=probe_module.decoded_footprint(first_full) - 1)
    kept = open_level_cached(rgb_pages.path, SourceFormat.TIFF, small, version)
    assert open_level_cached(rgb_pages.path, SourceFormat.TIFF, small, version) is kept
    a = open_level_cached(rgb_pages.path, SourceFormat.TIFF, full, version)
    b = open_level_cached(rgb_pages.path, SourceFormat.TIFF, full, version)
    assert a is not b  # not kept: its decoded tiles go with the render's pipeline
    assert probe_module.opened_stats() == (1, probe_module.decoded_footprint(kept))
    probe_module.set_opened_budget(nbytes=10**9)  # with room for it, the full level is kept too
    c = open_level_cached(rgb_pages.path, SourceFormat.TIFF, full, version)
    assert open_level_cached(rgb_pages.path, SourceFormat.TIFF, full, version) is c


def test_a_strip_larger_than_libtiffs_read_cap_is_decoded(tmp_path: Path) -> None:
    """One 55 MB compressed strip (libtiff refuses reads over 50 MB unless told otherwise): a valid
    scan within plain_max_pixels, which must render rather than count as damaged."""
    import numpy as np

    pixels = np.random.default_rng(7).integers(0, 256, (4300, 4300, 3), dtype=np.uint8)
    path = tmp_path / "one-strip.tif"
    tifffile.imwrite(
        path, pixels, photometric="rgb", rowsperstrip=4300, compression="zlib", compressionargs={"level": 1}
    )
    assert path.stat().st_size > 52_428_800  # over the cap: the case this is about
    info = probe(path, plain_max_pixels=40_000_000, max_source_pixels=1_000_000_000)
    image = probe_module.open_level(path, SourceFormat.TIFF, info.levels[0])
    corner = np.ndarray(buffer=image.crop(4000, 4000, 300, 300).write_to_memory(), dtype=np.uint8, shape=(300, 300, 3))
    assert (corner == pixels[4000:4300, 4000:4300]).all()
