"""The probe's own TIFF reading against libvips': the same ``SourceInfo`` or the same error, always.

A plain TIFF is read by ``tiff_plain`` (over ``tiff_reader``) alone; everything else, and any file the own reader
has doubts about, by libvips. Each case here is probed both ways (``libvips=True`` forces the
reference) and must give equal results; the cases also say which way a file is expected to go, so
that a fast path that silently always falls back (or never does) fails too.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from iiifserver.errors import IIIFError
from iiifserver.image import probe as probe_module
from iiifserver.image import tiff_reader
from iiifserver.image.probe import probe
from iiifserver.image.source_info import SourceInfo
from iiifserver.image.tiff_directory import read_tile_index, truncation
from iiifserver.image.tiff_plain import plain_tiff
from tests.image.conftest import Sample
from tests.image.pyramids import Pyramid

PLAIN_MAX = 1_000_000
SOURCE_MAX = 4_000_000_000

Outcome = SourceInfo | tuple[type[IIIFError], str]


def outcome(path: Path, *, libvips: bool, plain_max_pixels: int = PLAIN_MAX) -> Outcome:
    """What the probe says of ``path``: its facts, or the error's type and detail."""
    tiff_reader.forget_last()
    try:
        return probe(path, plain_max_pixels=plain_max_pixels, max_source_pixels=SOURCE_MAX, libvips=libvips)
    except IIIFError as exc:
        return type(exc), exc.detail


def assert_same_both_ways(path: Path, **limits: int) -> Outcome:
    own = outcome(path, libvips=False, **limits)
    reference = outcome(path, libvips=True, **limits)
    assert own == reference, path.name
    return own


# -- the conformance-like sources the other tests use ----------------------------------------

PLAIN_FIXTURES = [
    "rgb_pages",
    "rgb_subifd_jpeg",
    "rgb_odd",
    "gray_pyramid",
    "icc_p3_pyramid",
    "rgb16_pyramid",
    "rgba_pyramid",
    "strip_tiff",
    "tiled_single",
    "corrupt_level0",  # damaged tile data: no header reader sees it (the render does)
]
PYRAMID_FIXTURES = ["q90_pages", "q85_pages", "grey_pages", "q85_subifd", "odd_512", "odd_256", "bigtiff"]


def _path_of(request: pytest.FixtureRequest, fixture: str) -> Path:
    value = request.getfixturevalue(fixture)
    assert isinstance(value, Sample | Pyramid)
    return value.path


@pytest.mark.parametrize("fixture", PLAIN_FIXTURES + PYRAMID_FIXTURES)
def test_plain_sources_are_read_without_libvips_and_agree(request: pytest.FixtureRequest, fixture: str) -> None:
    path = _path_of(request, fixture)
    assert plain_tiff(path) is not None
    own = assert_same_both_ways(path, plain_max_pixels=40_000_000)
    assert isinstance(own, SourceInfo)


def test_uncompressed_sources_go_to_libvips_and_agree(multipage_document: Sample) -> None:
    """Uncompressed data is never plain: libtiff second-guesses its byte counts by heuristics."""
    assert plain_tiff(multipage_document.path) is None
    assert isinstance(assert_same_both_ways(multipage_document.path), SourceInfo)


def test_truncated_pyramid_goes_to_libvips_and_keeps_its_error(truncated_tiff: Sample) -> None:
    """Its directory chain runs out of the file: not plain; libvips opens it and the truncation
    check names the damage, as before."""
    assert plain_tiff(truncated_tiff.path) is None
    result = assert_same_both_ways(truncated_tiff.path)
    assert not isinstance(result, SourceInfo)
    assert result[0].__name__ == "SourceDamaged"
    assert "truncated" in result[1]


@pytest.mark.parametrize("fixture", ["rgb_pages", "q85_subifd", "strip_tiff", "gray_pyramid"])
def test_plain_sources_never_open_libvips(
    request: pytest.FixtureRequest, fixture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _path_of(request, fixture)
    expected = outcome(path, libvips=True, plain_max_pixels=40_000_000)

    def no_libvips(*args: object, **kwargs: object) -> None:
        raise AssertionError("libvips opened a plain TIFF")

    monkeypatch.setattr(probe_module, "_tiffload", no_libvips)
    assert outcome(path, libvips=False, plain_max_pixels=40_000_000) == expected


def test_limits_are_applied_to_the_own_reading_too(rgb_pages: Sample, strip_tiff: Sample) -> None:
    for path in (rgb_pages.path, strip_tiff.path):
        for limits in ({"plain_max_pixels": 100}, {"plain_max_pixels": 40_000_000}):
            assert_same_both_ways(path, **limits)
    tiff_reader.forget_last()
    with pytest.raises(IIIFError, match="more than this server accepts"):
        probe(rgb_pages.path, plain_max_pixels=PLAIN_MAX, max_source_pixels=1000)


# -- many TIFF kinds, written by libvips and tifffile ----------------------------------------

W, H = 700, 500


def _picture(bands: int = 3, fmt: str = "uchar") -> pyvips.Image:
    """Gradients in ``bands`` bands of ``fmt``, with the interpretation libvips gives such a layout."""
    x = pyvips.Image.xyz(W, H)
    base = (x[0] * 255 / W).bandjoin([x[1] * 255 / H, (x[0] + x[1]) * 255 / (W + H)])
    base = {1: base[0], 2: base[0].bandjoin(base[1]), 3: base, 4: base.bandjoin(base[2])}[bands]
    image = base.cast("uchar")
    if fmt == "ushort":
        image = (image.cast("ushort") * 257).cast("ushort")
    elif fmt != "uchar":
        image = image.cast(fmt)
    sixteen = fmt == "ushort"
    grey = "grey16" if sixteen else "b-w"
    return image.copy(interpretation=grey if bands <= 2 else "rgb16" if sixteen else "srgb")


VIPS_KINDS: dict[str, tuple[Callable[[], pyvips.Image], dict[str, object], bool]] = {
    # name: (picture, tiffsave options, expected to be read without libvips)
    "jpeg-pyramid": (_picture, {"tile": True, "pyramid": True, "compression": "jpeg", "Q": 85}, True),
    "jpeg-grey": (lambda: _picture(1), {"tile": True, "pyramid": True, "compression": "jpeg"}, True),
    "deflate-predictor": (
        _picture,
        {"tile": True, "pyramid": True, "compression": "deflate", "predictor": "horizontal"},
        True,
    ),
    "lzw": (_picture, {"tile": True, "pyramid": True, "compression": "lzw"}, True),
    "packbits": (_picture, {"tile": True, "pyramid": True, "compression": "packbits"}, True),
    "tile-128": (
        _picture,
        {"tile": True, "tile_width": 128, "tile_height": 128, "pyramid": True, "compression": "deflate"},
        True,
    ),
    "subifd-deflate": (_picture, {"tile": True, "pyramid": True, "subifd": True, "compression": "deflate"}, True),
    "grey-alpha": (lambda: _picture(2), {"tile": True, "pyramid": True, "compression": "deflate"}, True),
    "grey16": (lambda: _picture(1, "ushort"), {"tile": True, "pyramid": True, "compression": "lzw"}, True),
    "rgba16": (lambda: _picture(4, "ushort"), {"tile": True, "pyramid": True, "compression": "deflate"}, True),
    "strips": (_picture, {"compression": "lzw"}, True),
    "jpeg-strips": (_picture, {"compression": "jpeg"}, True),
    "bigtiff": (_picture, {"tile": True, "pyramid": True, "bigtiff": True, "compression": "jpeg"}, True),
    "xmp": (lambda: _with_xmp(_picture()), {"tile": True, "pyramid": True, "compression": "jpeg"}, True),
    # not plain: libvips decides
    "uncompressed": (_picture, {"tile": True, "pyramid": True, "compression": "none"}, False),
    "one-bit": (lambda: _picture(1), {"tile": True, "pyramid": True, "bitdepth": 1}, False),
    "miniswhite": (lambda: _picture(1), {"tile": True, "pyramid": True, "miniswhite": True}, False),
    "signed": (lambda: _picture(3, "char"), {"tile": True, "pyramid": True}, False),
    "float": (lambda: _picture(3, "float"), {"tile": True, "pyramid": True}, False),
    "cmyk": (lambda: _picture(4).copy(interpretation="cmyk"), {"tile": True, "pyramid": True}, False),
    "webp": (_picture, {"tile": True, "pyramid": True, "compression": "webp"}, False),
}


def _with_xmp(image: pyvips.Image) -> pyvips.Image:
    image = image.copy()
    image.set_type(pyvips.GValue.blob_type, "xmp-data", b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>')
    return image


@pytest.fixture(scope="module")
def kinds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiff-kinds")


@pytest.mark.parametrize("kind", sorted(VIPS_KINDS))
def test_tiff_kinds_written_by_libvips(kind: str, kinds_dir: Path) -> None:
    picture, options, plain = VIPS_KINDS[kind]
    path = kinds_dir / f"{kind}.tif"
    picture().tiffsave(str(path), **options)
    tiff_reader.forget_last()
    assert (plain_tiff(path) is not None) is plain
    result = assert_same_both_ways(path)
    if plain:
        assert isinstance(result, SourceInfo)


def _tifffile(path: Path, data: np.ndarray, **options: object) -> Path:
    tifffile.imwrite(path, data, **options)  # type: ignore[arg-type]
    return path


TIFFFILE_KINDS: dict[str, tuple[dict[str, object], bool]] = {
    "tifffile-rgb": ({"photometric": "rgb", "tile": (256, 256), "compression": "zlib"}, True),
    "private-tag": (
        {"photometric": "rgb", "tile": (256, 256), "extratags": [(65000, "s", 0, "private", False)]},
        False,
    ),
    # a user description and tifffile's own: ImageDescription twice (libtiff keeps the first)
    "two-descriptions": ({"photometric": "rgb", "tile": (256, 256), "compression": "zlib", "description": "x"}, False),
    # tiles more than twice the image (rounded up to 256): libvips refuses the file
    "tile-too-large": ({"photometric": "rgb", "tile": (512, 512), "compression": "zlib"}, False),
    "planar": ({"photometric": "rgb", "tile": (256, 256), "planarconfig": "separate"}, False),
    "palette": ({"photometric": "palette", "colormap": np.zeros((3, 256), np.uint16)}, False),
}


@pytest.mark.parametrize("kind", sorted(TIFFFILE_KINDS))
def test_tiff_kinds_written_by_tifffile(kind: str, kinds_dir: Path) -> None:
    options, plain = TIFFFILE_KINDS[kind]
    rgb = np.asarray(_picture().numpy())
    data = rgb[..., 0] if kind == "palette" else rgb[:80, :100] if kind == "tile-too-large" else rgb
    path = _tifffile(kinds_dir / f"{kind}.tif", np.ascontiguousarray(data), **options)
    assert (plain_tiff(path) is not None) is plain
    assert_same_both_ways(path)


def test_a_codec_libtiff_may_lack_goes_to_libvips(kinds_dir: Path) -> None:
    """Compression 50000 (zstd; not every libtiff has it): libvips' answer (it opens the header and
    fails on the first tile when it lacks the codec), not the own reader's."""
    path = _tifffile(kinds_dir / "zstd-tagged.tif", np.asarray(_picture().numpy()), photometric="rgb", tile=(256, 256))
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["Compression"]
        at = tag.valueoffset
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, at, 50000)
    path.write_bytes(bytes(data))
    assert plain_tiff(path) is None
    assert_same_both_ways(path)


# -- damaged files -----------------------------------------------------------------------------


def _directories(path: Path) -> list[tuple[int, list[int]]]:
    """(offset, tag codes in file order) of each page's directory."""
    with tifffile.TiffFile(path) as tif:
        pages = [page for page in tif.pages if isinstance(page, tifffile.TiffPage)]
        return [(page.offset, [tag.code for tag in page.tags]) for page in pages]


@pytest.fixture(scope="module")
def small_pyramid(kinds_dir: Path) -> Path:
    path = kinds_dir / "small-pyramid.tif"
    _picture().tiffsave(str(path), tile=True, pyramid=True, compression="jpeg", tile_width=128, tile_height=128)
    return path


def test_cut_short_anywhere_agrees(small_pyramid: Path, kinds_dir: Path) -> None:
    """A copy cut at every 1/40 of its length (and inside the last directory): same outcome both
    ways, and never a plain file with its data past the end."""
    data = small_pyramid.read_bytes()
    cuts = sorted({len(data) * k // 40 for k in range(1, 40)} | {len(data) - 1, len(data) - 9, 9, 8, 7})
    path = kinds_dir / "cut.tif"
    for cut in cuts:
        path.write_bytes(data[:cut])
        result = assert_same_both_ways(path)
        if isinstance(result, SourceInfo):  # only a cut in the last image data's slack can leave it whole
            tiff_reader.forget_last()
            assert truncation(path, result.levels) is None


def _value_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of the first bytes of each tag value stored outside its directory."""
    with tifffile.TiffFile(path) as tif:
        pages = [page for page in tif.pages if isinstance(page, tifffile.TiffPage)]
        return [
            (tag.valueoffset, min(64, tag.valuebytecount))
            for page in pages
            for tag in page.tags
            if tag.valuebytecount > 4
        ]


def test_flipped_header_bytes_agree(small_pyramid: Path, kinds_dir: Path) -> None:
    """Seeded byte changes in the directories (counts, types, offsets, tags) and in the values they
    point to (tile offsets and byte counts, JPEG tables, resolutions): whatever the file has
    become, the two readings agree."""
    data = bytearray(small_pyramid.read_bytes())
    spans = [(offset, 2 + 12 * len(tags) + 4) for offset, tags in _directories(small_pyramid)]
    spans += _value_spans(small_pyramid)
    rng = np.random.default_rng(1821)
    path = kinds_dir / "flipped.tif"
    fast = 0
    for _ in range(200):
        damaged = bytearray(data)
        start, length = spans[int(rng.integers(len(spans)))]
        for _ in range(int(rng.integers(1, 4))):
            damaged[start + int(rng.integers(length))] = int(rng.integers(256))
        path.write_bytes(bytes(damaged))
        tiff_reader.forget_last()
        fast += plain_tiff(path) is not None
        assert_same_both_ways(path)
    assert fast > 0  # some changes leave a plain file (a resolution, a count within bounds)


def test_a_text_tag_without_its_nul_goes_to_libvips(kinds_dir: Path) -> None:
    """libtiff warns when a text's first NUL is not its last byte: not plain, whatever libvips says."""
    path = _tifffile(
        kinds_dir / "description.tif",
        np.asarray(_picture().numpy()),
        photometric="rgb",
        tile=(256, 256),
        compression="zlib",
        description="a scanned leaf, recto",
        metadata=None,  # else tifffile adds a second ImageDescription (its own JSON): not plain
    )
    assert plain_tiff(path) is not None
    data = bytearray(path.read_bytes())
    end = data.index(b"a scanned leaf, recto\x00") + len("a scanned leaf, recto")
    data[end] = ord("!")
    path.write_bytes(bytes(data))
    tiff_reader.forget_last()
    assert plain_tiff(path) is None
    assert_same_both_ways(path)


def test_a_directory_chain_that_loops_goes_to_libvips(small_pyramid: Path, kinds_dir: Path) -> None:
    data = bytearray(small_pyramid.read_bytes())
    (first, _), (second, tags) = _directories(small_pyramid)[:2]
    entries = len(tags)
    struct.pack_into("<I", data, second + 2 + 12 * entries, first)  # page 1's next is page 0
    path = kinds_dir / "loop.tif"
    path.write_bytes(bytes(data))
    tiff_reader.forget_last()
    assert plain_tiff(path) is None
    assert_same_both_ways(path)


def test_a_value_outside_the_file_goes_to_libvips(small_pyramid: Path, kinds_dir: Path) -> None:
    data = bytearray(small_pyramid.read_bytes())
    offset, tags = _directories(small_pyramid)[0]
    index = tags.index(347)  # JPEGTables: out of line
    struct.pack_into("<I", data, offset + 2 + 12 * index + 8, len(data) + 100)
    path = kinds_dir / "outside.tif"
    path.write_bytes(bytes(data))
    tiff_reader.forget_last()
    assert plain_tiff(path) is None
    assert_same_both_ways(path)


# -- one parse per version, shared by the probe, the truncation check and the index --------------


def test_the_kept_parse_follows_the_file(q85_pages: Pyramid, gray_pyramid: Sample, tmp_path: Path) -> None:
    """Probe, truncation check and tile index of one version share a parse: the index then reads
    only its levels' JPEG tables. A replaced file (another inode, or the same one rewritten: its
    size, mtime and ctime move) is read anew."""
    path = tmp_path / "image.tif"
    shutil.copyfile(q85_pages.path, path)
    reads: list[int] = []
    real_pread = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real_pread(fd, n, offset)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "pread", counting)
        tiff_reader.forget_last()
        levels = probe(path, plain_max_pixels=PLAIN_MAX, max_source_pixels=SOURCE_MAX).levels
        reads.clear()
        shared = read_tile_index(path, levels)
        shared_reads = len(reads)
        tiff_reader.forget_last()
        reads.clear()
        alone = read_tile_index(path, levels)
        alone_reads = len(reads)
    assert shared == alone
    assert shared_reads <= len(levels) < alone_reads
    shutil.copyfile(gray_pyramid.path, tmp_path / "new.tif")
    os.replace(tmp_path / "new.tif", path)
    replaced = plain_tiff(path)
    assert replaced is not None
    assert replaced.pages[0].width == 1600
    path.write_bytes(q85_pages.path.read_bytes())  # in place: the same inode
    rewritten = plain_tiff(path)
    assert rewritten is not None
    assert rewritten.pages[0].width == 3000
