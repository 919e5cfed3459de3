"""The tile cache and stored-tile passthrough through the whole app (issue 3's "must be shown")."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
from PIL import Image

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings
from iiifserver.image.service import ImageService
from iiifserver.image.tile_codec import available as lossless_crop_available
from iiifserver.image.tile_files import open_and_read

TOKEN = "test-admin-token-0123456789"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Q90 RGB (4:4:4, stored RGB) and Q85 YCbCr 4:2:0 JPEG pyramids, 1024x768, 256 tiles; and
    ``odd``, 1000x750 Q90, whose floor-rounded levels are a pixel short (250x187 for 250x188)."""
    root = tmp_path_factory.mktemp("tile-images")
    base = pyvips.Image.perlin(1024, 768, cell_size=48, seed=3, uchar=True)
    rgb = base.bandjoin([base.rot180(), base.fliphor()]).copy(interpretation="srgb")
    for name, q in (("q90", 90), ("q85", 85)):
        rgb.tiffsave(
            str(root / f"{name}.tif"), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=q
        )
    rgb.crop(0, 0, 1000, 750).tiffsave(
        str(root / "odd.tif"), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=90
    )
    return root


def make_app(images: Path, cache: Path, **overrides: Any) -> Any:
    # Renders go to the disk tier at once unless a test says otherwise: most tests here are about
    # the disk tier itself; the default admission (a second ask) has its own tests below.
    values: dict[str, Any] = {
        "images": images, "cache": cache, "source_check_interval": 0.0, "admin_token": TOKEN,
        "disk_cache_admission": 1,
    }  # fmt: skip
    return create_app(Settings(**{**values, **overrides}))


def service_of(app: Any) -> ImageService:
    result: ImageService = app.state.image_service
    return result


def get(app: Any, path: str, headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    async def one() -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            return await call(app, path, headers=headers)
        finally:
            await service_of(app).drain()  # background disk writes land before the loop closes

    status, response_headers, body = asyncio.run(one())
    return status, dict(response_headers), body


def pixels(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("name", ["q90", "q85"])
def test_passthrough_bytes_decode_to_the_transcoded_pixels(images: Path, tmp_path: Path, name: str) -> None:
    app = make_app(images, tmp_path)
    tile = f"/iiif/3/{name}/256,256,256,256/256,256/0/default"
    status, headers, stored = get(app, tile + ".jpg")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    assert service_of(app).counters.passthrough == 1
    assert service_of(app).counters.renders == 0
    # The same region through the decoding path, lossless: exactly the pixels the stored tile holds.
    status, _, decoded = get(app, tile + ".png")
    assert status == 200
    assert service_of(app).counters.renders == 1
    assert np.array_equal(pixels(stored), pixels(decoded))


def test_passthrough_off_transcodes(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path, tile_passthrough=False)
    status, _, body = get(app, "/iiif/3/q90/0,0,256,256/256,/0/default.jpg")
    assert status == 200
    assert service_of(app).counters.passthrough == 0
    assert service_of(app).counters.renders == 1
    assert pixels(body).shape == (256, 256, 3)


def test_concurrent_identical_requests_render_once(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path)
    path = "/iiif/3/q90/100,100,300,200/150,/0/default.png"  # not a stored tile: a real render

    async def many() -> list[tuple[int, list[tuple[str, str]], bytes]]:
        return await asyncio.gather(*(call(app, path) for _ in range(50)))

    results = asyncio.run(many())
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, _, body in results}) == 1
    assert service_of(app).counters.renders == 1


def test_disk_tier_survives_a_restart(images: Path, tmp_path: Path) -> None:
    path = "/iiif/3/q85/10,20,500,400/250,/90/gray.png"
    first = make_app(images, tmp_path)
    status, headers, body = get(first, path)
    assert status == 200
    assert service_of(first).counters.renders == 1
    # A new process (new app, empty memory tier) on the same cache folder: served from disk.
    second = make_app(images, tmp_path)
    status, again_headers, again = get(second, path)
    assert status == 200
    assert again == body
    assert again_headers["etag"] == headers["etag"]
    assert service_of(second).counters.renders == 0
    assert service_of(second).stats()["cache"]["disk"]["hits"] == 1  # type: ignore[index]
    assert service_of(second).stats()["cache"]["disk"]["writes"] == 0  # type: ignore[index]


def test_memory_tier_answers_repeats(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path, source_check_interval=5.0)
    path = "/iiif/3/q90/0,0,512,512/256,/0/default.webp"
    for _ in range(5):
        assert get(app, path)[0] == 200
    stats = service_of(app).stats()
    assert service_of(app).counters.renders == 1
    assert stats["cache"]["memory"]["hits"] == 4  # type: ignore[index]


def test_replaced_source_changes_the_key_and_is_never_served_stale(images: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    shutil.copyfile(images / "q90.tif", root / "pic.tif")
    app = make_app(root, tmp_path / "cache")
    path = "/iiif/3/pic/0,0,512,512/128,/0/default.png"
    _, headers, body = get(app, path)
    flipped = root / ".next.tif"
    pyvips.Image.tiffload(str(images / "q90.tif")).flipver().tiffsave(
        str(flipped), tile=True, pyramid=True, compression="jpeg", Q=90
    )
    os.replace(flipped, root / "pic.tif")
    _, new_headers, new_body = get(app, path)
    assert new_headers["etag"] != headers["etag"]
    assert not np.array_equal(pixels(new_body), pixels(body))
    assert service_of(app).counters.renders == 2


def test_swapped_disk_entries_are_rendered_again_not_served(images: Path, tmp_path: Path) -> None:
    """Two valid disk entries swapped on disk: each request renders again and gets its own image."""
    cache = tmp_path / "cache"
    paths = ("/iiif/3/q90/full/100,/0/default.png", "/iiif/3/q90/full/120,/0/default.png")
    app = make_app(images, cache, memory_cache_mb=0)  # every hit comes from disk
    bodies = [get(app, path)[2] for path in paths]
    assert service_of(app).counters.renders == 2
    files = sorted(p for p in (cache / "v2").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(files) == 2
    first, second = (p.read_bytes() for p in files)
    files[0].write_bytes(second)
    files[1].write_bytes(first)
    again = [get(app, path) for path in paths]
    assert [status for status, _, _ in again] == [200, 200]
    assert [body for _, _, body in again] == bodies
    assert service_of(app).counters.renders == 4


def test_in_place_rewrite_with_mtime_restored_serves_the_new_pixels(tmp_path: Path) -> None:
    """Same inode, same size, mtime set back: the ctime still moves, so the version, the key and the
    ETag change; the disk entry of the old version is not served."""
    root = tmp_path / "images"
    root.mkdir()
    red, blue = root / "pic.tif", tmp_path / "blue.tif"
    for path, colour in ((red, [220, 30, 30]), (blue, [30, 30, 220])):
        (pyvips.Image.black(300, 200) + colour).cast("uchar").copy(interpretation="srgb").tiffsave(
            str(path), tile=True, tile_width=128, tile_height=128, pyramid=True
        )
    assert red.stat().st_size == blue.stat().st_size  # uncompressed: same size, other pixels
    app = make_app(root, tmp_path / "cache", memory_cache_mb=0)  # a repeat would come from disk
    path = "/iiif/3/pic/full/60,/0/default.png"
    _, headers, body = get(app, path)
    assert pixels(body)[0, 0].tolist() == [220, 30, 30]

    before = red.stat()
    time.sleep(0.05)  # past the kernel's coarse timestamp granularity
    with open(red, "r+b") as file:
        file.write(blue.read_bytes())
    os.utime(red, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (red.stat().st_ino, red.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    _, new_headers, new_body = get(app, path)
    assert pixels(new_body)[0, 0].tolist() == [30, 30, 220]
    assert new_headers["etag"] != headers["etag"]
    assert service_of(app).counters.renders == 2


def test_errors_are_not_cached(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path)
    for _ in range(2):
        assert get(app, "/iiif/3/q90/full/5000,/0/default.jpg")[0] == 400
    assert service_of(app).stats()["cache"]["memory"]["entries"] == 0  # type: ignore[index]
    assert not any(p.is_file() and not p.name.startswith(".") for p in (tmp_path / "v2").rglob("*"))


def _post(app: Any, path: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    headers = [("authorization", f"Bearer {token}")] if token else []
    status, _, body = asyncio.run(call(app, path, method="POST", headers=headers))
    return status, body


def test_admin_purge_by_identifier_any_spelling(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path, memory_cache_mb=0)  # every hit comes from disk
    for path in ("/iiif/3/q85/full/100,/0/default.png", "/iiif/3/q85.tif/full/120,/0/default.png"):
        assert get(app, path)[0] == 200
    assert get(app, "/iiif/3/q90/full/100,/0/default.png")[0] == 200
    assert service_of(app).counters.renders == 3

    status, body = _post(app, "/admin/cache/purge?identifier=q85")
    assert status == 200
    assert b'"purged":2' in body  # both spellings: one file, one cache folder
    get(app, "/iiif/3/q85.tif/full/120,/0/default.png")
    get(app, "/iiif/3/q90/full/100,/0/default.png")
    assert service_of(app).counters.renders == 4  # q85 rendered again; q90 still on disk

    status, body = _post(app, "/admin/cache/purge")
    assert status == 200
    get(app, "/iiif/3/q90/full/100,/0/default.png")
    assert service_of(app).counters.renders == 5


def test_admin_needs_the_token(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path)
    assert _post(app, "/admin/cache/purge", token=None)[0] == 401
    assert _post(app, "/admin/cache/purge", token="wrong-token-wrong-token")[0] == 401
    status, headers, _ = get(app, "/admin/stats")
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = get(app, "/admin/stats", headers=[("authorization", f"Bearer {TOKEN}")])
    assert status == 200
    assert b'"memory"' in body
    assert b'"lanes"' in body
    # Off by default: no token, no admin endpoints at all.
    plain = make_app(images, tmp_path, admin_token="")
    assert get(plain, "/admin/stats", headers=[("authorization", "Bearer x")])[0] == 404
    assert _post(plain, "/admin/cache/purge")[0] in (404, 405)


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
def test_edge_tiles_pass_through_cut_losslessly(images: Path, tmp_path: Path) -> None:
    # Level 1 of the 1024x768 pyramid is 512x384: its second tile row holds 128 valid rows.
    app = make_app(images, tmp_path)
    edge = "/iiif/3/q90/0,512,512,256/256,128/0/default"
    status, _, stored = get(app, edge + ".jpg")
    assert status == 200
    assert service_of(app).counters.passthrough == 1
    assert service_of(app).counters.renders == 0
    _, _, decoded = get(app, edge + ".png")
    assert pixels(stored).shape == (128, 256, 3)
    assert np.array_equal(pixels(stored), pixels(decoded))  # RGB-stored tiles: exactly the stored pixels


# -- stored tiles read inline: once a source's descriptor is open, page-cache reads skip threads --


def get_many(app: Any, paths: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Sequential requests on one event loop (the descriptor cache lives as long as the app)."""

    async def run() -> list[tuple[int, list[tuple[str, str]], bytes]]:
        return [await call(app, path) for path in paths]

    return [(status, dict(headers), body) for status, headers, body in asyncio.run(run())]


@pytest.mark.parametrize("name", ["q90", "q85"])
def test_stored_tiles_are_read_inline_with_the_same_bytes(images: Path, tmp_path: Path, name: str) -> None:
    # The identifier's check opens the descriptor in the same thread hop: from the very first
    # tile on, reads come from the page cache on the loop.
    first, second = (f"/iiif/3/{name}/{x},0,256,256/256,/0/default.jpg" for x in (0, 256))
    app = make_app(images, tmp_path / "a")
    (s1, _, _), (s2, headers, inline), (s3, _, decoded) = get_many(app, [first, second, second[:-4] + ".png"])
    assert (s1, s2, s3) == (200, 200, 200)
    counters = service_of(app).counters
    assert (counters.passthrough, counters.passthrough_inline, counters.renders) == (2, 2, 1)
    assert headers["content-length"] == str(len(inline))
    # The worker-thread read (used when no descriptor is held) gives the same bytes.
    found = asyncio.run(service_of(app).find(name))
    assert found.stored is not None
    grid = found.stored.levels[0]
    assert grid is not None
    threaded, fd = open_and_read(found.file.path, found.file.version, grid, 1)
    os.close(fd)
    assert inline == threaded
    assert np.array_equal(pixels(inline), pixels(decoded))


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
def test_inline_edge_tiles_are_cut_losslessly(images: Path, tmp_path: Path) -> None:
    app = make_app(images, tmp_path)
    edge = "/iiif/3/q90/0,512,512,256/256,128/0/default"
    results = get_many(app, ["/iiif/3/q90/0,0,512,512/256,/0/default.jpg", edge + ".jpg", edge + ".png"])
    assert [status for status, _, _ in results] == [200, 200, 200]
    assert service_of(app).counters.passthrough_inline == 2
    assert pixels(results[1][2]).shape == (128, 256, 3)
    assert np.array_equal(pixels(results[1][2]), pixels(results[2][2]))


def _corrupt_tile(path: Path, level: int, index: int) -> None:
    """Write a stray marker into the middle of one stored tile's entropy-coded data."""
    from iiifserver.image import probe
    from iiifserver.image.tiff_directory import read_tile_index

    info = probe.probe(path, plain_max_pixels=10**8, max_source_pixels=10**10)
    stored = read_tile_index(path, info.levels)
    assert stored is not None
    grid = stored.levels[level]
    assert grid is not None
    middle = grid.offsets[index] + grid.bytecounts[index] // 2
    with path.open("r+b") as f:
        f.seek(middle)
        f.write(b"\xff\x01")


@pytest.mark.skipif(not lossless_crop_available(), reason="libturbojpeg0 is not installed")
def test_edge_tiles_a_pixel_short_are_stretched_not_rendered(images: Path, tmp_path: Path) -> None:
    # Level 2 of 1000x750 is 250x187; OpenSeadragon asks for it as 250x188 (750 / 4 = 187.5).
    tile = "/iiif/3/odd/full/250,188/0/default.jpg"
    app = make_app(images, tmp_path / "a")
    first = "/iiif/3/odd/0,0,256,256/256,/0/default.jpg"  # opens the descriptor: the rest is inline
    results = get_many(app, [first, tile, tile])
    assert [status for status, _, _ in results] == [200, 200, 200]
    counters = service_of(app).counters
    assert (counters.stretched, counters.renders, counters.passthrough_inline) == (1, 0, 2)  # then a memory hit
    stretched = pixels(results[1][2])
    assert stretched.shape == (188, 250, 3)
    assert results[1][2] == results[2][2]
    # The same request rendered by libvips from the same level (crop, enlarge, encode).
    rendering = make_app(images, tmp_path / "b", tile_passthrough=False)
    status, _, rendered = get(rendering, tile)
    assert status == 200
    assert service_of(rendering).counters.renders == 1
    diff = np.abs(stretched.astype(int) - pixels(rendered).astype(int))
    assert diff.mean() < 2.0
    # Only one pixel short: two pixels more is a render.
    status, _, body = get(app, "/iiif/3/odd/full/250,189/0/default.jpg")
    assert status == 200
    assert pixels(body).shape == (189, 250, 3)
    assert service_of(app).counters.renders == 1


def test_a_tile_libjpeg_turbo_refuses_is_rendered_instead(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iiifserver.image import tile_codec, tile_stretch

    monkeypatch.setattr(tile_codec, "available", lambda: True)
    monkeypatch.setattr(tile_stretch, "stretched", lambda *args, **kwargs: None)
    app = make_app(images, tmp_path)
    tile = "/iiif/3/odd/full/250,188/0/default.jpg"
    results = get_many(app, ["/iiif/3/odd/0,0,256,256/256,/0/default.jpg", tile])
    assert [status for status, _, _ in results] == [200, 200]
    counters = service_of(app).counters
    assert (counters.stretched, counters.passthrough_fallbacks, counters.renders) == (0, 1, 1)
    assert pixels(results[1][2]).shape == (188, 250, 3)


@pytest.mark.parametrize("warm", [False, True], ids=["first-tile", "later-tile"])
def test_a_corrupt_stored_tile_is_rendered_instead(images: Path, tmp_path: Path, warm: bool) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(images / "q90.tif", folder / "q90.tif")
    _corrupt_tile(folder / "q90.tif", 0, 5)  # level 0 is 4 tiles across: tile 5 is column 1, row 1
    app = make_app(folder, tmp_path / "cache")
    bad = "/iiif/3/q90/256,256,256,256/256,/0/default.jpg"
    paths = ["/iiif/3/q90/0,0,256,256/256,/0/default.jpg", bad] if warm else [bad]
    results = get_many(app, paths)
    assert [status for status, _, _ in results] == [200] * len(paths)
    counters = service_of(app).counters
    assert counters.passthrough_fallbacks == 1
    assert counters.renders == 1
    assert pixels(results[-1][2]).shape == (256, 256, 3)


def test_render_settings_are_part_of_the_key(images: Path, tmp_path: Path) -> None:
    render = "/iiif/3/q90/10,10,300,200/150,/0/default.jpg"
    etags = set()
    for index, overrides in enumerate(
        [{"jpeg_quality": 90}, {"jpeg_quality": 90, "jpeg_chroma_subsampling": False}, {"jpeg_quality": 85}]
    ):
        status, headers, _ = get(make_app(images, tmp_path / str(index), **overrides), render)
        assert status == 200
        etags.add(headers["etag"])
    assert len(etags) == 3


def test_a_render_goes_to_disk_at_its_second_ask(images: Path, tmp_path: Path) -> None:
    """``disk_cache_admission`` 2 (the default): a render asked for once stays in memory only; the
    second ask, a memory hit, writes it; a restarted server then finds it on disk."""
    path = "/iiif/3/q85/10,20,500,400/250,/0/default.jpg"
    first = make_app(images, tmp_path, disk_cache_admission=2)
    assert get(first, path)[0] == 200
    disk = service_of(first).stats()["cache"]["disk"]
    assert disk["writes"] == 0  # type: ignore[index]
    assert service_of(first).admission.deferred == 1
    _, headers, body = get(first, path)
    assert service_of(first).counters.renders == 1  # the second ask was a memory hit
    assert service_of(first).stats()["cache"]["disk"]["writes"] == 1  # type: ignore[index]
    assert service_of(first).admission.admitted_on_hit == 1
    get(first, path)
    assert service_of(first).stats()["cache"]["disk"]["writes"] == 1  # type: ignore[index]  # once
    second = make_app(images, tmp_path, disk_cache_admission=2)
    status, again_headers, again = get(second, path)
    assert (status, again, again_headers["etag"]) == (200, body, headers["etag"])
    assert service_of(second).counters.renders == 0


def test_asked_once_never_reaches_the_disk(images: Path, tmp_path: Path) -> None:
    paths = [f"/iiif/3/q85/{x},{x},300,300/100,/0/default.jpg" for x in range(0, 200, 20)]
    app = make_app(images, tmp_path, disk_cache_admission=2)
    for path in paths:
        assert get(app, path)[0] == 200
    assert service_of(app).stats()["cache"]["disk"]["writes"] == 0  # type: ignore[index]
    assert service_of(app).admission.deferred == len(paths)


def test_rendered_again_when_memory_dropped_it_then_written(images: Path, tmp_path: Path) -> None:
    path = "/iiif/3/q85/0,0,300,300/100,/0/default.jpg"
    app = make_app(images, tmp_path, memory_cache_mb=0, disk_cache_admission=2)
    get(app, path)
    assert service_of(app).stats()["cache"]["disk"]["writes"] == 0  # type: ignore[index]
    get(app, path)
    assert service_of(app).counters.renders == 2
    assert service_of(app).stats()["cache"]["disk"]["writes"] == 1  # type: ignore[index]
    get(app, path)
    assert service_of(app).counters.renders == 2  # from disk now
