"""One master into one pyramid: structure, colour, orientation, alpha, metadata, failures."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from iiifserver.ingest import convert as converter
from iiifserver.ingest.plan import BigTiff, ConvertOptions, Job
from iiifserver.ingest.stamp import stamp_path
from tests.ingest.conftest import BACKGROUND, Master, assert_pyramid, full_resolution, psnr, serve, truncate

OPTIONS = ConvertOptions(background=BACKGROUND)
# The IIIF validator test image as JPEG 2000, with its PNG beside it (tests/data/conformance/README.md).
CONFORMANCE_JP2 = Path(__file__).resolve().parents[1] / "data/conformance/67352ccc-d1b0-11e1-89ae-279075081939.jp2"


@pytest.fixture(scope="module")
def converted(
    masters_dir: tuple[Path, dict[str, Master]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Path]]:
    folder, masters = masters_dir
    out = tmp_path_factory.mktemp("pyramids")
    outputs = {}
    for key, master in masters.items():
        output = out / Path(master.name).with_suffix(".tif")
        converter.convert(Job(folder / master.name, output, master.name), OPTIONS)
        outputs[key] = output
    return out, outputs


@pytest.mark.parametrize("key", ["cmyk", "adobe", "16bit", "alpha", "rotated", "strip"])
def test_output_is_a_pyramid_matching_the_master_in_srgb(
    key: str, masters_dir: tuple[Path, dict[str, Master]], converted: tuple[Path, dict[str, Path]]
) -> None:
    master = masters_dir[1][key]
    output = converted[1][key]
    height, width = master.reference.shape[:2]
    assert_pyramid(output, 256, width, height)
    pixels = full_resolution(output)
    assert psnr(pixels, master.reference) >= 40.0


@pytest.mark.parametrize("key", ["cmyk", "rotated", "strip"])
def test_server_serves_the_output(key: str, converted: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    out, outputs = converted
    ident = outputs[key].stem
    (info, tile) = serve(
        out, tmp_path / "cache", [f"/iiif/3/{ident}/info.json", f"/iiif/3/{ident}/0,0,256,256/256,/0/default.jpg"]
    )
    assert info[0] == 200
    doc = json.loads(info[2])
    with tifffile.TiffFile(outputs[key]) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert (doc["width"], doc["height"]) == (page.imagewidth, page.imagelength)
    assert doc["tiles"][0]["width"] == 256
    assert tile[0] == 200
    assert tile[1]["content-type"] == "image/jpeg"
    assert pyvips.Image.new_from_buffer(tile[2], "").width == 256


def test_exif_orientation_is_applied_and_reset(converted: tuple[Path, dict[str, Path]]) -> None:
    with tifffile.TiffFile(converted[1]["rotated"]) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert (page.imagewidth, page.imagelength) == (400, 600)  # stored 600x400, shown turned
        orientation = page.tags.get("Orientation")
        assert orientation is None or orientation.value == 1


def test_exif_rights_become_xmp(converted: tuple[Path, dict[str, Path]]) -> None:
    with tifffile.TiffFile(converted[1]["rotated"]) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        xmp = bytes(page.tags["XMP"].value).decode()
    assert "<dc:rights>" in xmp
    assert "CC BY 4.0, Test Museum" in xmp
    assert "<dc:creator>" in xmp
    assert "A. Photographer" in xmp


def test_xmp_and_iptc_of_the_master_are_kept(tmp_path: Path) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- rights: CC0 --></x:xmpmeta>'
    iptc = b"\x1c\x02\x00\x00\x02\x00\x04\x1c\x02\x74\x00\x03CC0"
    # Written by tifffile: the master's tags are not libvips' own work.
    pixels = np.full((300, 300, 3), 40, np.uint8)
    extratags = [(700, 1, len(xmp), xmp, True), (33723, 7, len(iptc), iptc, True)]
    tifffile.imwrite(tmp_path / "meta.tif", pixels, photometric="rgb", description="Folio 1 recto", extratags=extratags)
    converter.convert(Job(tmp_path / "meta.tif", tmp_path / "out" / "meta.tif", "meta.tif"), OPTIONS)
    with tifffile.TiffFile(tmp_path / "out" / "meta.tif") as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert bytes(page.tags["XMP"].value) == xmp
        assert page.tags["ImageDescription"].value == "Folio 1 recto"
    assert bytes(pyvips.Image.tiffload(str(tmp_path / "out" / "meta.tif")).get("iptc-data")).startswith(iptc)


def test_options_tile_size_quality_and_bigtiff(masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path) -> None:
    folder, masters = masters_dir
    output = tmp_path / "big.tif"
    options = ConvertOptions(quality=92, tile_size=512, bigtiff=BigTiff.YES)
    converter.convert(Job(folder / masters["strip"].name, output, "strip"), options)
    assert_pyramid(output, 512, 20500, 300)
    with tifffile.TiffFile(output) as tif:
        assert tif.is_bigtiff
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        # libvips' tiffsave stores Q90 and above as RGB (4:4:4), below as YCbCr 4:2:0
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
    assert stamp_path(output).is_file()
    # The stamp vouches for these exact bytes (hashed independently here).
    recorded = json.loads(stamp_path(output).read_text())["output_sha256"]
    assert recorded == hashlib.sha256(output.read_bytes()).hexdigest()
    small = tmp_path / "small.tif"
    converter.convert(Job(folder / masters["strip"].name, small, "strip"), ConvertOptions(quality=60))
    with tifffile.TiffFile(small) as tif:
        assert not tif.is_bigtiff
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert page.photometric == tifffile.PHOTOMETRIC.YCBCR
        assert luma_sampling(tif, page) == 0x22  # luma sampled 2x2 against chroma: 4:2:0
    assert small.stat().st_size < output.stat().st_size


def luma_sampling(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> int:
    """The first component's sampling factors in the first tile's JPEG frame header (SOF0)."""
    tif.filehandle.seek(page.dataoffsets[0])
    tile = tif.filehandle.read(page.databytecounts[0])
    sof = tile.index(b"\xff\xc0")
    return tile[sof + 11]  # marker 2, length 2, precision 1, height 2, width 2, count 1, id 1


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_master_fails_cleanly(
    fraction: float, masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path
) -> None:
    folder, masters = masters_dir
    bad = truncate(folder / masters["cmyk"].name, tmp_path / "bad.jpg", fraction)
    out = tmp_path / "out"
    with pytest.raises(converter.ConvertError) as info:
        converter.convert(Job(bad, out / "bad.tif", "bad.jpg"), OPTIONS)
    reason = str(info.value)
    assert "\n" not in reason
    assert "Traceback" not in reason
    assert "premature end" in reason.lower() or "truncated" in reason.lower()
    assert not out.exists() or os.listdir(out) == []  # no output, no temporary file, no stamp


def test_failure_after_writing_started_leaves_nothing(tmp_path: Path) -> None:
    """The header is whole, the pixels stop short: tiffsave has begun when the read fails."""
    image = pyvips.Image.gaussnoise(2000, 1500, seed=3).cast("uchar").bandjoin([128, 128])
    image.copy(interpretation="srgb").jpegsave(str(tmp_path / "noise.jpg"), Q=90)
    bad = truncate(tmp_path / "noise.jpg", tmp_path / "late.jpg", 0.9)
    out = tmp_path / "out"
    out.mkdir()
    (out / "late.tif").write_bytes(b"an older output stays until a new one is complete")
    with pytest.raises(converter.ConvertError, match="premature end"):
        converter.convert(Job(bad, out / "late.tif", "late.jpg"), OPTIONS)
    assert sorted(os.listdir(out)) == ["late.tif"]
    assert (out / "late.tif").read_bytes().startswith(b"an older output")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.tif").write_text("not an image")
    with pytest.raises(converter.ConvertError, match=r"not a TIFF, JPEG, PNG or JPEG 2000 file"):
        converter.convert(Job(tmp_path / "notes.tif", tmp_path / "o" / "notes.tif", "notes.tif"), OPTIONS)


def test_stale_temporary_of_a_dead_converter_is_removed(tmp_path: Path) -> None:
    output = tmp_path / "page.tif"
    dead = tmp_path / f".page.tif.{2**22 + 12345}{converter.TEMP_SUFFIX}"  # above pid_max: never alive
    alive = tmp_path / f".page.tif.{os.getpid()}{converter.TEMP_SUFFIX}"
    dead.write_bytes(b"half")
    alive.write_bytes(b"in progress")
    converter.remove_stale_temporaries(output)
    assert not dead.exists()
    assert alive.exists()


def test_jpeg2000_master_converts(tmp_path: Path) -> None:
    output = tmp_path / "validator.tif"
    converter.convert(Job(CONFORMANCE_JP2, output, CONFORMANCE_JP2.name), OPTIONS)
    assert_pyramid(output, 256, 1000, 1000)
    assert_like_the_png_converted(output, tmp_path)


def assert_like_the_png_converted(output: Path, tmp_path: Path) -> None:
    """The JP2's pyramid is the PNG's (the same picture; the JP2 is 0.27 levels off it on average):
    both 4:2:0 JPEG pyramids are about 35 dB from the PNG (its sharp colour edges), and within
    47 dB of each other (measured)."""
    png = CONFORMANCE_JP2.with_suffix(".png")
    from_png = tmp_path / "from-png.tif"
    converter.convert(Job(png, from_png, png.name), OPTIONS)
    reference = np.asarray(pyvips.Image.new_from_file(str(png)).numpy())[..., :3]
    got = full_resolution(output)
    assert psnr(got, full_resolution(from_png)) >= 44.0
    assert psnr(got, reference) >= psnr(full_resolution(from_png), reference) - 0.5


def test_jpeg2000_without_openjpeg_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(converter, "jp2k_available", lambda: False)
    with pytest.raises(converter.ConvertError) as info:
        converter.convert(Job(CONFORMANCE_JP2, tmp_path / "v.tif", "v.jp2"), OPTIONS)
    message = str(info.value)
    assert "apt-get install libopenjp2-7" in message
    assert "\n" not in message
    assert not (tmp_path / "v.tif").exists()


def test_truncated_jpeg2000_master_is_refused(tmp_path: Path) -> None:
    data = CONFORMANCE_JP2.read_bytes()
    master = tmp_path / "cut.jp2"
    master.write_bytes(data[: len(data) // 2])
    with pytest.raises(converter.ConvertError, match="truncated") as info:
        converter.convert(Job(master, tmp_path / "cut.tif", "cut.jp2"), OPTIONS)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cut.tif").exists()


def test_jpeg2000_master_in_strips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A master taller than one strip is decoded strip by strip into the same pixels."""
    monkeypatch.setattr(converter, "JP2_STRIP_PIXELS", 1000 * 300)
    output = tmp_path / "strips.tif"
    converter.convert(Job(CONFORMANCE_JP2, output, CONFORMANCE_JP2.name), OPTIONS)
    assert_pyramid(output, 256, 1000, 1000)
    assert_like_the_png_converted(output, tmp_path)
