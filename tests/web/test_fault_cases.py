"""Attack and fault cases C12, C13, D02, D09, D10, D11 and E12 (attack-cases.md) over HTTP, in process.

C12: a Range header of thousands of ranges costs nothing and changes nothing (no 206). C13: a
header of a few hundred bytes claiming 60000x60000 pixels is refused at open, never decoded.
D10: extreme aspect ratios are described and answered where valid, 400 where a size rounds to no
pixel, refused past libvips' largest coordinate. D02: bit
rot inside one deflate or LZW tile fails the requests that read that tile (a 500 naming the
source, never silently wrong pixels, nothing cached), and only those. D09: a source the server
may not read is a 403, every time, naming no path, and served as soon as it is readable again.
D11: a corrupt or oversized ICC profile does not stop a source from being served, and is not
copied into responses. E12: disk-tier entries removed (evicted, purged) while requests read them
are misses or re-renders, never errors nor other bytes.

The worker crash of G03 needs real processes: ``tests/e2e/test_worker_crash.py``.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import tifffile
from PIL import Image

from tests.web.conftest import Http, ImageRoot, _gradient, save_pyramid
from tests.web.test_attack_cases import check_response

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


# --- C12: Range header abuse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/iiif/3/sample/0,0,256,256/256,/0/default.jpg",  # a stored tile, answered in the protocol
        "/iiif/3/sample/full/200,/0/default.jpg",  # a render
        "/iiif/3/sample/info.json",
    ],
)
def test_c12_many_ranges_are_ignored_at_no_cost(http: Http, image_root: ImageRoot, path: str) -> None:
    whole = http.raw(path)
    assert whole.status_code == 200
    ranges = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 20_000, 2))  # 10,000 ranges
    for _ in range(3):
        started = time.monotonic()
        r = http.raw(path, headers=[("range", ranges)])
        assert time.monotonic() - started < 1.0  # generous: it takes about a millisecond
        assert r.status_code == 200
        assert r.content == whole.content
        assert "content-range" not in r.headers
        check_response(r, image_root, path)


# --- C13 and D10: headers that claim huge or extreme dimensions ------------------------------------


def crafted_tiff(path: Path, width: int, height: int, *, filled: bool = False) -> None:
    """A TIFF of a few hundred bytes whose header claims ``width`` x ``height`` RGB pixels in one
    deflate strip (a decompression bomb if anything decoded it); ``filled``: the strip holds them
    all (black), a valid image."""
    strip = zlib.compress(bytes(width * height * 3 if filled else 300))
    bits_at = 8 + 2 + 10 * 12 + 4  # after the header and the directory of 10 entries
    strip_at = bits_at + 6
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset; ascending, as TIFF wants
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bits_at),
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, strip_at),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(strip)),
        (284, 3, 1, 1),
    ]
    directory = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + directory + struct.pack("<HHH", 8, 8, 8) + strip)


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (60_000, 60_000, "is a 60000x60000 image without a tiled pyramid; convert it"),  # over plain_max_pixels
        (70_000, 70_000, "is 70000x70000 pixels, more than this server accepts"),  # over max_source_pixels
    ],
)
def test_c13_a_bomb_header_is_refused_at_open(
    make_http: Any, image_root: ImageRoot, width: int, height: int, reason: str
) -> None:
    name = f"bomb-{width}"
    crafted_tiff(image_root.root / f"{name}.tif", width, height)
    try:
        http = make_http()
        for tail in ("info.json", "full/100,/0/default.jpg", "0,0,256,256/256,/0/default.jpg"):
            started = time.monotonic()
            r = http.raw(f"/iiif/3/{name}/{tail}")
            assert time.monotonic() - started < 0.5  # refused from the header: nothing was decoded
            assert r.status_code == 501
            assert reason in r.text
            check_response(r, image_root, tail)
    finally:
        (image_root.root / f"{name}.tif").unlink()


def test_d10_extreme_aspect_ratios_answer_what_is_valid(make_http: Any, image_root: ImageRoot) -> None:
    """A 20,000,000 x 1 or 1 x 20,000,000 source is described and rendered where a request is
    valid; sizes that round to no pixel are a 400; one past libvips' largest coordinate (100,000,000
    since 8.16) is refused as damaged: never a crash, never a decode of the claimed pixels."""
    http = make_http()
    names = {"wide": (20_000_000, 1), "tall": (1, 20_000_000), "wider": (200_000_000, 1)}
    for name, (width, height) in names.items():
        crafted_tiff(image_root.root / f"{name}.tif", width, height, filled=name != "wider")
    try:
        for name in ("wide", "tall"):
            info = http.raw(f"/iiif/3/{name}/info.json")
            assert info.status_code == 200
            assert (info.json()["width"], info.json()["height"]) == names[name]
        assert http.raw("/iiif/3/wide/full/100,/0/default.jpg").status_code == 400  # 100 x 0
        assert http.raw("/iiif/3/tall/full/,100/0/default.jpg").status_code == 400  # 0 x 100
        for path, size in (
            ("/iiif/3/wide/0,0,1000,1/max/0/default.jpg", (1000, 1)),
            ("/iiif/3/tall/0,0,1,1000/max/0/default.jpg", (1, 1000)),
            ("/iiif/3/wide/full/max/0/default.jpg", None),  # max: as wide as the limits allow
        ):
            r = http.raw(path)
            assert r.status_code == 200, (path, r.text[:200])
            with Image.open(io.BytesIO(r.content)) as picture:
                if size is None:  # the width the limits allow, one pixel high
                    assert picture.size[0] >= 1000, picture.size
                    assert picture.size[1] == 1, picture.size
                else:
                    assert picture.size == size
        for tail in ("info.json", "full/100,/0/default.jpg"):
            r = http.raw(f"/iiif/3/wider/{tail}")
            assert r.status_code == 500
            assert "the source 'wider' is damaged" in r.text
            check_response(r, image_root, tail)
    finally:
        for name in names:
            (image_root.root / f"{name}.tif").unlink()


# --- D02: bit rot inside a deflate or LZW tile ------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", "lzw"])
def test_d02_a_rotten_tile_fails_its_requests_and_only_those(
    make_http: Any, image_root: ImageRoot, tmp_path: Path, compression: str
) -> None:
    name = f"rot-{compression}"
    path = image_root.root / f"{name}.tif"
    _gradient(600, 400).tiffsave(
        str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression=compression
    )
    try:
        with tifffile.TiffFile(path) as tif:
            offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
        data = bytearray(path.read_bytes())
        rng = random.Random(7)
        for _ in range(8):  # a few flipped bytes past the start of level 0's first tile
            data[offset + rng.randrange(count // 4, count)] ^= 0xFF
        path.write_bytes(bytes(data))
        http = make_http(disk_cache_admission=1)
        rotten = f"/iiif/3/{name}/0,0,256,256/max/0/default.jpg"
        for _ in range(3):  # the same answer every time: nothing of it was kept
            r = http.raw(rotten)
            assert r.status_code == 500
            assert f"the source {name!r} is damaged" in r.text
            check_response(r, image_root, rotten)
        full = http.raw(f"/iiif/3/{name}/full/max/0/default.jpg")  # reads that tile too
        assert full.status_code == 500
        # Requests that do not read the rotten tile are answered: one bad tile is its own problem.
        for tail in ("info.json", "300,200,200,100/max/0/default.jpg", "full/100,/0/default.jpg"):
            assert http.raw(f"/iiif/3/{name}/{tail}").status_code == 200, tail
    finally:
        path.unlink()


# --- D09: a source the server may not read ----------------------------------------------------------

# Run in a child process that may not override file permissions (root may; see below).
_UNREADABLE_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path
    from iiifserver import asgi_call
    from iiifserver.app import create_app
    from iiifserver.config import Settings

    work = Path(sys.argv[1])
    images = work / "img"
    app = create_app(Settings(images=images, cache=work / "cache", manifests=work / "manifests"))
    tails = ("info.json", "full/200,/0/default.jpg", "0,0,256,256/256,/0/default.jpg")

    async def main():
        out = []
        for phase in ("unreadable", "unreadable", "readable again"):
            if phase == "readable again":
                os.chmod(images / "locked.tif", 0o644)  # its owner may, whatever the capabilities
            for name in ("open", "locked"):
                for tail in tails:
                    status, headers, body = await asgi_call.call(app, f"/iiif/3/{name}/{tail}")
                    out.append([phase, name, tail, status, body.decode("latin-1")])
        print(json.dumps(out))

    asyncio.run(main())
    """
)


def test_d09_an_unreadable_source_is_a_403_every_time_and_served_once_readable(tmp_path: Path) -> None:
    work = tmp_path / "work"
    images = work / "img"
    images.mkdir(parents=True)
    for name in ("open", "locked"):
        save_pyramid(_gradient(600, 400), images / f"{name}.tif")
    os.chmod(images / "locked.tif", 0)
    command = [sys.executable, "-c", _UNREADABLE_CHILD, str(work)]
    if os.geteuid() == 0:
        # Root reads mode-000 files: the child runs without the capabilities that allow it.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 18
    for phase, name, tail, status, body in results:
        if name == "open" or phase == "readable again":
            assert status == 200, (phase, name, tail, body[:200])
        else:
            assert status == 403, (phase, name, tail, body[:200])
            assert body == "403 Forbidden: identifier: the image file cannot be read\n"
            assert str(work) not in body


# --- D11: a corrupt or oversized ICC profile --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "profile"),
    [("icc-garbage", b"not an ICC profile" * 4), ("icc-huge", bytes(range(256)) * (5 * 4096))],  # 5 MiB
)
def test_d11_a_bad_icc_profile_does_not_stop_the_source(
    http: Http, image_root: ImageRoot, name: str, profile: bytes
) -> None:
    path = image_root.root / f"{name}.tif"
    _pyramid_with_icc(path, profile)
    try:
        with tifffile.TiffFile(path) as tif:  # the profile is in the file, as it was given
            assert tif.pages[0].tags["InterColorProfile"].value == profile
        for tail, kind in (
            ("info.json", "application/ld+json"),
            ("full/200,/0/default.jpg", "image/jpeg"),
            ("0,0,256,256/256,/0/default.jpg", "image/jpeg"),
            ("full/max/0/default.png", "image/png"),
        ):
            r = http.raw(f"/iiif/3/{name}/{tail}")
            assert r.status_code == 200, (tail, r.text[:200])
            assert r.headers["content-type"].startswith(kind)
            assert len(r.content) < 1_000_000, tail  # the 5 MiB profile is not copied into responses
    finally:
        path.unlink()


def _pyramid_with_icc(path: Path, profile: bytes) -> None:
    """An uncompressed tiled pyramid (600x400 to 150x100) whose first page carries ``profile`` as
    its ICC tag, as given (libvips checks a profile before it writes one)."""
    picture = _gradient(600, 400)
    with tifffile.TiffWriter(path) as tif:
        for level in range(3):
            pixels = picture.resize(0.5**level).numpy()
            icc = [(34675, 7, len(profile), profile, True)] if level == 0 else []
            tif.write(pixels, tile=(256, 256), photometric="rgb", extratags=icc)


# --- E12: disk-tier entries removed while requests read them ----------------------------------------

_ENTRY = re.compile(r"[0-9a-f]{40}")  # a disk-tier entry's file name (cache.disk_layout.KEY)


def test_e12_entries_removed_under_readers_are_misses_not_errors(
    make_http: Any, image_root: ImageRoot, tmp_path: Path
) -> None:
    # No memory tier: every request reads the disk tier (or renders); every render is written.
    http = make_http(memory_cache_mb=0, disk_cache_admission=1)
    paths = [f"/iiif/3/sample/{x},{y},300,200/150,/0/default.jpg" for x in (7, 311, 915) for y in (5, 409, 813)]
    first = {path: http.raw(path) for path in paths}
    assert all(r.status_code == 200 for r in first.values())
    assert _wait_for_entries(tmp_path, len(paths))

    stop = threading.Event()
    removed = 0

    def evict() -> None:  # what eviction and purges do to the tree, as fast as it can
        nonlocal removed
        while not stop.is_set():
            for folder, _, files in os.walk(tmp_path):
                for file in files:
                    if _ENTRY.fullmatch(file):
                        try:
                            os.unlink(os.path.join(folder, file))
                            removed += 1
                        except FileNotFoundError:
                            pass

    remover = threading.Thread(target=evict, daemon=True)
    remover.start()
    try:
        for round_ in range(20):
            for path in paths:
                r = http.raw(path)
                assert r.status_code == 200, (round_, path, r.status_code, r.text[:200])
                assert r.content == first[path].content  # the entry it read, or a render: same bytes
    finally:
        stop.set()
        remover.join(timeout=10)
    assert removed >= len(paths)  # entries were written again and removed again under the readers


def _wait_for_entries(root: Path, count: int, seconds: float = 10.0) -> bool:
    """The background disk writes of the first renders have landed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sum(1 for p in root.rglob("*") if _ENTRY.fullmatch(p.name)) >= count:
            return True
        time.sleep(0.05)
    return False
