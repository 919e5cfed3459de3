"""JPEG 2000 sources: header, info.json, pixels against an independent decode, damaged files.

The test files are encoded here with Pillow (its wheel bundles its own OpenJPEG), lossless and
lossy, tiled and untiled, with and without precincts, RGB and greyscale, JP2 boxes and a raw
codestream, one with an embedded Display P3 profile. The server decodes them with Debian's
libopenjp2 (``image/jp2.py``); every pixel test compares a served PNG with Pillow's own decode of
the same file at the same reduction (glymur's whole-level read where Pillow cannot decode that
reduction of an odd-sized image). Requests are chosen so that the served image is an exact
crop of one resolution level (aligned tiles, and unaligned regions whose size is the level's
pixels), so the comparison needs no resampling: lossless files must match exactly, lossy ones
within a mean absolute difference of 1 level (both decoders being OpenJPEG 2.5).
"""

from __future__ import annotations

import io
import logging
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from iiifserver.image import jp2, jp2_layout
from iiifserver.image.probe import JP2_DEFAULT_TILE, probe_jp2
from iiifserver.image.source_info import SourceFormat
from tests.web.conftest import Http


def test_openjpeg_is_installed() -> None:
    """scripts/install.sh installs libopenjp2-7: without it every JPEG 2000 test below would fail
    on a missing library, so say that plainly first."""
    assert jp2.available(), "no OpenJPEG (libopenjp2-7, glymur): run scripts/install.sh --test"


W, H = 1601, 1201  # odd: every level is a rounded-up half
LOSSY_MAD = 1.0


def _pillow_save(pixels: np.ndarray, path: Path, **options: object) -> Path:
    mode = "L" if pixels.ndim == 2 else "RGB"
    Image.fromarray(pixels, mode).save(path, "JPEG2000", num_resolutions=6, **options)
    return path


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def wrap_jp2(codestream: bytes, width: int, height: int, components: int, icc: bytes) -> bytes:
    """A JP2 file around ``codestream`` whose colour is the restricted ICC profile ``icc``."""
    ihdr = _box(b"ihdr", struct.pack(">IIHBBBB", height, width, components, 7, 7, 0, 0))
    colr = _box(b"colr", bytes([2, 0, 0]) + icc)
    return (
        jp2.SIGNATURE
        + _box(b"ftyp", b"jp2 " + struct.pack(">I", 0) + b"jp2 ")
        + _box(b"jp2h", ihdr + colr)
        + _box(b"jp2c", codestream)
    )


@pytest.fixture(scope="module")
def pixels(base_rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(base_rgb[300 : 300 + H, 500 : 500 + W])


@pytest.fixture(scope="module")
def jp2_root(tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray) -> Path:
    """Every test file, in one image root."""
    root = tmp_path_factory.mktemp("jp2")
    _pillow_save(pixels, root / "lossless.jp2")
    _pillow_save(
        pixels,
        root / "lossy_tiled.jp2",
        irreversible=True,
        quality_mode="rates",
        quality_layers=[20],
        tile_size=(256, 256),
    )
    _pillow_save(
        pixels,
        root / "lossy_precincts.jp2",
        irreversible=True,
        quality_mode="rates",
        quality_layers=[12],
        precinct_size=(256, 256),
        progression="RPCL",
    )
    rgb16 = pixels.astype(np.uint16)
    gray = ((rgb16[..., 0] + rgb16[..., 1] * 2 + rgb16[..., 2]) // 4).astype(np.uint8)
    _pillow_save(gray, root / "gray_tiled.j2k", tile_size=(512, 512), no_jp2=True)
    # Display P3 numbers with the P3 profile: served right only if the profile is applied.
    grey = pixels.astype(np.int16).mean(axis=2, keepdims=True).astype(np.int16)
    vivid = np.clip(grey + (pixels.astype(np.int16) - grey) * 3, 0, 255).astype(np.uint8)
    p3 = pyvips.Image.new_from_array(vivid).copy(interpretation="srgb")
    p3 = p3.icc_transform("p3", input_profile="srgb", intent="relative")
    stream = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(p3.numpy()), "RGB").save(stream, "JPEG2000", no_jp2=True, num_resolutions=6)
    profile = bytes(p3.get("icc-profile-data"))
    (root / "p3.jpx").write_bytes(wrap_jp2(stream.getvalue(), W, H, 3, profile))
    return root


def pillow_level(path: Path, reduce: int) -> np.ndarray:
    """Pillow's (its bundled OpenJPEG's) decode of ``path`` at 1/2**reduce: the independent reference."""
    with Image.open(path) as image:
        image.reduce = reduce  # type: ignore[assignment,method-assign]
        image.load()
        return np.asarray(image)


def reference_level(path: Path, reduce: int) -> np.ndarray:
    """Pillow's decode where it can make one: Pillow rounds a reduced size half up (1601 / 4 ->
    400, where the level is 401) and then fails on odd sizes ("broken data stream"). There,
    glymur's own whole-level read (``Jp2k[::f, ::f]``: not the server's area decode, its plan
    or its crop) is the reference."""
    f = 1 << reduce
    if all(-(-n // f) == (n + f // 2) // f for n in (W, H)):
        return pillow_level(path, reduce)
    import glymur

    return np.asarray(glymur.Jp2k(str(path))[::f, ::f])


def served(http: Http, url: str) -> np.ndarray:
    response = http.get(url)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


@pytest.fixture
def http(client: Callable[..., Http], jp2_root: Path, tmp_path: Path) -> Http:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    return client(jp2_root, manifests)


# -- header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tiles", "tile", "precinct", "reversible", "components"),
    [
        ("lossless.jp2", 1, (W, H), jp2.NO_PRECINCTS, True, 3),
        ("lossy_tiled.jp2", 35, (256, 256), jp2.NO_PRECINCTS, False, 3),
        ("lossy_precincts.jp2", 1, (W, H), 256, False, 3),
        ("gray_tiled.j2k", 12, (512, 512), jp2.NO_PRECINCTS, True, 1),
        ("p3.jpx", 1, (W, H), jp2.NO_PRECINCTS, True, 3),
    ],
)
def test_header_reads_the_codestream(
    jp2_root: Path,
    name: str,
    tiles: int,
    tile: tuple[int, int],
    precinct: int,
    reversible: bool,
    components: int,
) -> None:
    header = jp2.read_header(jp2_root / name)
    assert (header.width, header.height, header.levels) == (W, H, 5)
    assert header.tiles == tiles
    assert (header.tile_width, header.tile_height) == tile
    assert (header.precinct_width, header.precinct_height) == (precinct, precinct)
    assert header.reversible is reversible
    assert header.components == components
    assert header.codestream is name.endswith(".j2k")
    assert bool(header.icc_profile) is (name == "p3.jpx")
    assert header.level_size(5) == (51, 38)  # ceil(1601 / 32), ceil(1201 / 32)


def test_probe_levels_and_advertised_tiles(jp2_root: Path) -> None:
    def probe(name: str) -> tuple[int, int]:
        info = probe_jp2(jp2_root / name, plain_max_pixels=10**8, max_source_pixels=10**9)
        assert info.format is SourceFormat.JP2
        assert [(level.width, level.height, level.page) for level in info.levels][:3] == [
            (1601, 1201, 0),
            (801, 601, 1),
            (401, 301, 2),
        ]
        assert info.scale_factors() == (1, 2, 4, 8, 16, 32)
        return info.tile_width, info.tile_height

    assert probe("lossy_tiled.jp2") == (256, 256)  # the codestream's tiles
    assert probe("gray_tiled.j2k") == (512, 512)
    assert probe("lossy_precincts.jp2") == (256, 256)  # its precincts
    assert probe("lossless.jp2") == (JP2_DEFAULT_TILE, JP2_DEFAULT_TILE)


def test_info_json(http: Http) -> None:
    info = http.get("/iiif/3/lossy_tiled/info.json").json()
    assert (info["width"], info["height"]) == (W, H)
    # Like every source: 1, 2, 4, ... until the image is one tile (1601 / 8 = 201 px).
    assert info["tiles"] == [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8]}]
    # Every resolution level is a size, rounded up as OpenJPEG decodes it.
    assert [(s["width"], s["height"]) for s in info["sizes"]] == [
        (51, 38),
        (101, 76),
        (201, 151),
        (401, 301),
        (801, 601),
        (1601, 1201),
    ]
    gray = http.get("/iiif/3/gray_tiled/info.json").json()
    assert gray["tiles"][0]["width"] == 512


@pytest.mark.parametrize("suffix", [".jp2", ".j2k", ".jpx"])
def test_found_by_identifier_with_or_without_suffix(http: Http, jp2_root: Path, suffix: str) -> None:
    name = {".jp2": "lossless", ".j2k": "gray_tiled", ".jpx": "p3"}[suffix]
    assert http.get(f"/iiif/3/{name}/info.json").status_code == 200
    assert http.get(f"/iiif/3/{name}{suffix}/info.json").status_code == 200


# -- pixels ----------------------------------------------------------------------------------

# (region, size, reduce): each served image is exactly region / 2**reduce of that level.
EXACT_REQUESTS = [
    ("0,0,256,256", "256,", 0),  # the first full-resolution tile
    ("768,512,256,256", "256,", 0),  # an inner tile
    ("1536,1024,65,177", "65,", 0),  # the bottom-right edge tile
    ("512,0,512,512", "256,", 1),  # a tile at scale factor 2
    ("1024,1024,577,177", "289,", 1),  # the edge tile at 2: 577 / 2 rounded up
    ("0,0,1024,1024", "256,", 2),
    ("1024,0,577,1024", "145,256", 2),
    ("301,457,333,211", "max", 0),  # unaligned, full resolution
    ("600,900,800,300", "200,", 2),  # unaligned, at 1/4
    ("full", "51,", 5),  # the whole smallest level
]


@pytest.mark.parametrize("name", ["lossless.jp2", "lossy_tiled.jp2", "lossy_precincts.jp2", "gray_tiled.j2k"])
@pytest.mark.parametrize(("region", "size", "reduce"), EXACT_REQUESTS)
def test_pixels_match_an_independent_decode(
    http: Http, jp2_root: Path, name: str, region: str, size: str, reduce: int
) -> None:
    identifier = name.rsplit(".", 1)[0]
    got = served(http, f"/iiif/3/{identifier}/{region}/{size}/0/default.png").astype(np.int16)
    level = reference_level(jp2_root / name, reduce).astype(np.int16)
    f = 1 << reduce
    x, y, w, h = (0, 0, W, H) if region == "full" else (int(v) for v in region.split(","))
    box = (x // f, y // f, -(-min(x + w, W) // f), -(-min(y + h, H) // f))
    # Dimensions exact: levels are ceil(size / 2**r) (1601 -> 401 at 1/4), as OpenJPEG decodes them.
    assert got.shape[:2] == (box[3] - box[1], box[2] - box[0])
    want = level[box[1] : box[3], box[0] : box[2]]
    assert got.shape == want.shape
    mad = float(np.abs(got - want).mean())
    if jp2.read_header(jp2_root / name).reversible:
        assert mad == 0.0
    else:
        assert mad <= LOSSY_MAD


def test_lossless_decode_is_the_original(jp2_root: Path, pixels: np.ndarray) -> None:
    """The reference decoder itself is right: Pillow's lossless decode is the encoded array."""
    assert np.array_equal(pillow_level(jp2_root / "lossless.jp2", 0), pixels)


def test_scaled_requests_are_close_to_the_reference(http: Http, jp2_root: Path) -> None:
    """A size between levels: decoded at the level above, resized once (bounded difference)."""
    got = served(http, "/iiif/3/lossless/full/700,/0/default.png").astype(np.float32)
    reference = pyvips.Image.new_from_array(pillow_level(jp2_root / "lossless.jp2", 1)).copy(interpretation="srgb")
    want = reference.resize(700 / 801, vscale=got.shape[0] / 601, kernel="lanczos3").numpy().astype(np.float32)
    assert got.shape == want.shape
    assert float(np.abs(got - want).mean()) <= 1.0


def test_icc_profile_is_applied(http: Http, jp2_root: Path) -> None:
    got = served(http, "/iiif/3/p3/0,0,1024,1024/512,/0/default.png").astype(np.int16)
    stored = pillow_level(jp2_root / "p3.jpx", 1).astype(np.int16)[:512, :512]
    assert got.shape == (512, 512, 3)
    # The stored numbers are Display P3: served as they are, they would differ a lot from the
    # sRGB that Pillow's LittleCMS makes of them; with the profile applied, hardly at all.
    assert float(np.abs(got - stored).mean()) > 5.0
    assert float(np.abs(got - pillow_srgb(stored)).mean()) <= 1.5


def pillow_srgb(p3: np.ndarray) -> np.ndarray:
    """P3 numbers to sRGB with Pillow's LittleCMS (relative intent): independent of libvips."""
    from PIL import ImageCms

    src = ImageCms.ImageCmsProfile(io.BytesIO(bytes(_p3_profile())))
    dst = ImageCms.createProfile("sRGB")
    image = Image.fromarray(p3.astype(np.uint8), "RGB")
    out = ImageCms.profileToProfile(image, src, dst, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    assert out is not None
    return np.asarray(out).astype(np.int16)


def _p3_profile() -> bytes:
    pixel = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb")
    return bytes(pixel.icc_transform("p3", input_profile="srgb").get("icc-profile-data"))


def test_grey_is_served_as_grey(http: Http) -> None:
    assert served(http, "/iiif/3/gray_tiled/0,0,512,512/256,/0/default.png").ndim == 2


def test_decode_reads_only_the_area(jp2_root: Path) -> None:
    pixels, icc = jp2.decode(jp2_root / "lossy_tiled.jp2", 2, (1000, 1000, 1601, 1201))
    assert pixels.shape == (51, 151, 3)  # ceil(1201/4) - 250 rows, ceil(1601/4) - 250 columns
    assert pixels.dtype == np.uint8
    assert icc == b""
    _, p3 = jp2.decode(jp2_root / "p3.jpx", 5)
    assert p3 == _p3_profile()


# -- damaged files ---------------------------------------------------------------------------


def _damaged_copies(jp2_root: Path, target: Path) -> None:
    data = (jp2_root / "lossy_tiled.jp2").read_bytes()
    (target / "truncated.jp2").write_bytes(data[: len(data) * 2 // 3])
    # A tile-part header in the middle overwritten: the codestream's structure is broken there.
    sots = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\x90"]
    middle = sots[len(sots) // 2]
    corrupt = bytearray(data)
    corrupt[middle : middle + 12] = b"\x00" * 12
    (target / "corrupt.jp2").write_bytes(bytes(corrupt))


@pytest.mark.parametrize("name", ["truncated", "corrupt"])
def test_damaged_files_are_500_logged_once_and_never_cached(
    client: Callable[..., Http], jp2_root: Path, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "damaged"
    root.mkdir()
    _damaged_copies(jp2_root, root)
    manifests = tmp_path / "m"
    manifests.mkdir()
    http = client(root, manifests, disk_cache_mb=64)
    caplog.set_level(logging.ERROR)
    for url in (f"/iiif/3/{name}/info.json", f"/iiif/3/{name}/0,0,256,256/256,/0/default.jpg") * 2:
        response = http.get(url)
        assert response.status_code == 500, url
        assert name in response.text
        assert str(root) not in response.text  # no path in the body
    lines = [r.getMessage() for r in caplog.records if "damaged source" in r.getMessage()]
    assert len(lines) == 1
    assert repr(name) in lines[0]
    # Nothing was cached: the good file put in its place is served at once.
    shutil.copyfile(jp2_root / "lossy_tiled.jp2", root / f"{name}.jp2")
    assert http.get(f"/iiif/3/{name}/0,0,256,256/256,/0/default.jpg").status_code == 200


def test_truncated_codestream_fails_in_the_decoder_too(jp2_root: Path, tmp_path: Path) -> None:
    """Even past the header check, OpenJPEG's lost-data warnings are errors, never zeros."""
    data = (jp2_root / "lossless.jp2").read_bytes()
    cut = tmp_path / "cut.jp2"
    cut.write_bytes(data[: len(data) - len(data) // 3])
    with pytest.raises(jp2.Jp2Damaged):
        jp2.read_header(cut)
    with pytest.raises(jp2.Jp2Damaged):
        jp2.decode(cut, 0, (0, 0, 256, 256))


def test_not_jpeg2000_is_damaged(tmp_path: Path) -> None:
    fake = tmp_path / "fake.jp2"
    fake.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 4)
    with pytest.raises(jp2.Jp2Damaged):
        jp2.read_header(fake)


# -- the sub-codestream: a decode of a few tiles reads only them ------------------------------


@pytest.fixture(scope="module")
def tiled_root(tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray, jp2_root: Path) -> Path:
    """Tiled files of every kind the sub-codestream is cut from: lossy and lossless, precincts,
    grey, alpha (a cdef box, alpha last), a raw codestream, tiles that do not divide the image."""
    root = tmp_path_factory.mktemp("tiled")
    shutil.copyfile(jp2_root / "lossy_tiled.jp2", root / "lossy_tiled.jp2")
    shutil.copyfile(jp2_root / "gray_tiled.j2k", root / "gray_tiled.j2k")
    _pillow_save(pixels, root / "lossless_precincts.jp2", tile_size=(192, 160), precinct_size=(64, 64))
    rgba = np.dstack([pixels, pixels[..., 1]])
    Image.fromarray(rgba, "RGBA").save(root / "rgba.jp2", "JPEG2000", tile_size=(256, 256), num_resolutions=5)
    return root


def _areas(header: jp2.Jp2Header, count: int, seed: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        reduce = int(rng.integers(0, header.levels + 1))
        step = 1 << reduce
        x0 = int(rng.integers(0, header.width // step)) * step
        y0 = int(rng.integers(0, header.height // step)) * step
        w, h = (int(n) * step for n in rng.integers(1, 400, size=2))
        cases.append((reduce, (x0, y0, x0 + w, y0 + h)))
    return cases


@pytest.mark.parametrize("name", ["lossy_tiled.jp2", "gray_tiled.j2k", "lossless_precincts.jp2", "rgba.jp2"])
def test_sub_codestream_decodes_the_pixels_of_the_whole_file(
    tiled_root: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bit for bit what OpenJPEG decodes from the file itself, at every level, any area, edge tiles included."""
    path = tiled_root / name
    header = jp2.read_header(path)
    assert header.is_tiled
    cut = []
    real_cut = jp2._sub_codestream

    def counted(*args: object) -> bytes:
        cut.append(args)
        return real_cut(*args)  # type: ignore[arg-type]

    cases = [*_areas(header, 24, seed=len(name)), (0, (0, 0, header.width, header.height))]
    monkeypatch.setattr(jp2, "_sub_codestream", counted)
    ours = [jp2.decode(path, reduce, area) for reduce, area in cases]
    assert len(cut) == len(cases)  # every one of these went through a sub-codestream
    monkeypatch.setattr(jp2, "SUB_CODESTREAM_MAX_TILES", 0)
    whole = [jp2.decode(path, reduce, area) for reduce, area in cases]
    assert len(cut) == len(cases)
    for (reduce, area), (pixels, icc), (expected, expected_icc) in zip(cases, ours, whole, strict=True):
        assert pixels.shape == expected.shape, (reduce, area)
        assert np.array_equal(pixels, expected), (reduce, area)
        assert icc == expected_icc


def test_large_decodes_read_the_file(tiled_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the tile or byte bound the copy would cost what it saves: OpenJPEG reads the file."""
    path = tiled_root / "lossy_tiled.jp2"
    monkeypatch.setattr(jp2, "_sub_codestream", None)  # any use of it would fail
    monkeypatch.setattr(jp2, "SUB_CODESTREAM_MAX_TILES", 3)
    pixels, _ = jp2.decode(path, 0, (0, 0, 600, 300))  # 3 x 2 tiles
    assert pixels.shape == (300, 600, 3)
    monkeypatch.setattr(jp2, "SUB_CODESTREAM_MAX_TILES", 256)
    monkeypatch.setattr(jp2, "SUB_CODESTREAM_MAX_BYTES", 100)
    assert jp2.decode(path, 1, (0, 0, 256, 256))[0].shape == (128, 128, 3)


def _with_cdef(path: Path, rows: list[tuple[int, int, int]]) -> bytes:
    """``path`` (a JP2 file) with a channel definition box of ``rows`` added to its header box."""
    data = path.read_bytes()
    at = data.index(b"jp2h") - 4
    length = struct.unpack(">I", data[at : at + 4])[0]
    cdef = _box(b"cdef", struct.pack(">H", len(rows)) + b"".join(struct.pack(">HHH", *row) for row in rows))
    header = struct.pack(">I", length + len(cdef)) + data[at + 4 : at + length] + cdef
    return data[:at] + header + data[at + length :]


def test_reordered_channels_are_decoded_from_the_file(
    tiled_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel definition OpenJPEG's JP2 decoder acts on (channels swapped) is not cut: only a
    whole-file decode reorders them."""
    swapped = tmp_path / "swapped.jp2"
    swapped.write_bytes(_with_cdef(tiled_root / "lossy_tiled.jp2", [(0, 0, 3), (1, 0, 2), (2, 0, 1)]))
    plain = tmp_path / "plain.jp2"
    plain.write_bytes(_with_cdef(tiled_root / "lossy_tiled.jp2", [(0, 0, 1), (1, 0, 2), (2, 0, 3)]))
    cut: list[object] = []
    real_cut = jp2._sub_codestream
    monkeypatch.setattr(jp2, "_sub_codestream", lambda *args: cut.append(args) or real_cut(*args))
    area = (256, 256, 512, 512)
    straight, _ = jp2.decode(plain, 0, area)
    assert len(cut) == 1
    reordered, _ = jp2.decode(swapped, 0, area)
    assert len(cut) == 1  # read from the file
    assert np.array_equal(reordered, straight[..., ::-1])


def test_a_replaced_file_is_read_anew(tiled_root: Path, tmp_path: Path) -> None:
    """Tile-part places are kept per file version: a file replaced under the same name is walked again."""
    path = tmp_path / "image.jp2"
    shutil.copyfile(tiled_root / "lossy_tiled.jp2", path)
    before, _ = jp2.decode(path, 0, (0, 0, 256, 256))
    replacement = tmp_path / "new.jp2"
    shutil.copyfile(tiled_root / "lossless_precincts.jp2", replacement)
    replacement.replace(path)
    after, _ = jp2.decode(path, 0, (0, 0, 256, 256))
    expected, _ = jp2.decode(tiled_root / "lossless_precincts.jp2", 0, (0, 0, 256, 256))
    assert np.array_equal(after, expected)
    assert not np.array_equal(after, before)


def test_the_probe_and_the_decodes_walk_the_file_once(
    tiled_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "once.jp2"
    shutil.copyfile(tiled_root / "lossy_tiled.jp2", path)
    walks: list[object] = []
    real_read = jp2_layout._read_layout
    monkeypatch.setattr(jp2_layout, "_read_layout", lambda *args: walks.append(args) or real_read(*args))
    jp2.read_header(path)
    for area in ((0, 0, 256, 256), (300, 300, 700, 500)):
        jp2.decode(path, 0, area)
    assert len(walks) == 1
