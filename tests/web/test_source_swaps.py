"""Sources replaced atomically (``os.replace``) under load: every answer is 200, or 503 with
``Retry-After``; never 500. A file swapped between the stat that named its version and the read
is a change to retry, not a damaged source."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import pyvips

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings

# Tiles in both versions, passthrough and rendered, a whole-image render and info.json.
PATHS = (
    "/iiif/3/pic/0,0,256,256/256,/0/default.jpg",
    "/iiif/3/pic/256,256,256,256/256,/0/default.jpg",
    "/iiif/3/pic/512,0,256,256/256,/0/default.jpg",
    "/iiif/3/pic/0,0,512,512/256,/0/default.jpg",
    "/iiif/3/pic/full/200,/0/default.jpg",
    "/iiif/3/pic/info.json",
)


def test_atomic_swaps_under_concurrent_requests_are_200_or_503_never_500(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    base = pyvips.Image.perlin(1024, 768, cell_size=48, seed=3, uchar=True)
    rgb = base.bandjoin([base.rot180(), base.fliphor()]).copy(interpretation="srgb")
    # Two versions that differ in everything a stale read could trip on: size, tiling, levels.
    versions = (tmp_path / "a.tif", tmp_path / "b.tif")
    rgb.tiffsave(str(versions[0]), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=90)
    rgb.flipver().crop(0, 0, 900, 700).tiffsave(
        str(versions[1]), tile=True, tile_width=512, tile_height=512, pyramid=True, compression="jpeg", Q=80
    )
    shutil.copyfile(versions[0], root / "pic.tif")
    app = create_app(Settings(images=root, cache=tmp_path / "cache", source_check_interval=0.0, memory_cache_mb=0))
    stop = threading.Event()

    def swap() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            shutil.copyfile(versions[n % 2], root / ".next.tif")
            os.replace(root / ".next.tif", root / "pic.tif")
            stop.wait(0.001)

    async def requests() -> list[tuple[int, dict[str, str], bytes]]:
        limit = asyncio.Semaphore(8)

        async def one(path: str) -> tuple[int, dict[str, str], bytes]:
            async with limit:
                status, headers, body = await call(app, path)
                return status, dict(headers), body

        try:
            return await asyncio.gather(*(one(PATHS[n % len(PATHS)]) for n in range(200)))
        finally:
            await app.state.image_service.drain()

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        answers = asyncio.run(requests())
    finally:
        stop.set()
        swapper.join()
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503}, [body for status, _, body in answers if status not in (200, 503)][:3]
    assert statuses[200] > 0
    assert all(headers.get("retry-after") == "1" for status, headers, _ in answers if status == 503)
    assert all(b"changed" in body for status, _, body in answers if status == 503)
