"""The fast path replays exactly what the full path answered, and only while that is still true."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import pyvips

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings
from iiifserver.image.source_info import SourceVersion
from iiifserver.web.fast_path import Memo, ResponseMemo
from iiifserver.web.observer import Way
from iiifserver.web.response import header_lines, header_pairs

TILE = "/iiif/3/pic/0,0,256,256/256,/0/default.jpg"
RENDER = "/iiif/3/pic/10,10,300,200/150,/0/default.png"
INFO = "/iiif/3/pic/info.json"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fast")
    image = pyvips.Image.perlin(1024, 768, cell_size=32, seed=5, uchar=True).colourspace("srgb")
    image.tiffsave(str(path / "pic.tif"), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg")
    return path


def make(root: Path, tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {"images": root, "cache": tmp_path, "source_check_interval": 60.0}
    return create_app(Settings(**{**values, **overrides}))


def memo(app: Any) -> ResponseMemo:
    result: ResponseMemo = app.state.memo
    return result


def get(app: Any, path: str, headers: list[tuple[str, str]] | None = None, method: str = "GET") -> Any:
    async def one() -> Any:
        try:
            return await call(app, path, method=method, headers=headers)
        finally:
            await app.state.image_service.drain()

    status, response_headers, body = asyncio.run(one())
    return status, dict(response_headers), body


@pytest.mark.parametrize("path", [TILE, RENDER, INFO])
def test_repeat_is_replayed_identically(root: Path, tmp_path: Path, path: str) -> None:
    app = make(root, tmp_path)
    first = get(app, path)
    assert first[0] == 200
    if path == TILE:  # a whole stored tile is kept in memory, and so memoised, from its second ask
        assert get(app, path) == first
    assert memo(app).hits == 0
    second = get(app, path)
    assert memo(app).hits == 1
    assert second[0] == 200
    assert second[2] == first[2]
    assert second[1] == first[1]  # every header, CORS included, the same


def test_conditional_and_head_from_the_memo(root: Path, tmp_path: Path) -> None:
    app = make(root, tmp_path)
    get(app, TILE)  # a whole stored tile's first ask: answered, not kept
    status, headers, body = get(app, TILE)
    status, not_modified, empty = get(app, TILE, headers=[("if-none-match", headers["etag"])])
    assert (status, empty) == (304, b"")
    assert not_modified["etag"] == headers["etag"]
    assert not_modified["access-control-allow-origin"] == "*"
    assert "content-type" not in not_modified
    status, head_headers, head_body = get(app, TILE, method="HEAD")
    assert (status, head_body) == (200, b"")
    assert head_headers["content-length"] == str(len(body))
    assert memo(app).hits == 2
    # If-Modified-Since alone is compared by the full path, which still answers 304.
    status, _, _ = get(app, TILE, headers=[("if-modified-since", headers["last-modified"])])
    assert status == 304
    assert memo(app).hits == 2


def test_host_and_accept_are_part_of_the_memo(root: Path, tmp_path: Path) -> None:
    app = make(root, tmp_path)
    get(app, INFO, headers=[("host", "a.example")])
    _, _, body = get(app, INFO, headers=[("host", "b.example")])
    assert b'"id":"http://b.example/iiif/3/pic"' in body  # never another host's id (E10)
    _, headers, body = get(app, INFO, headers=[("host", "b.example"), ("accept", "application/json")])
    assert headers["content-type"] == "application/json"
    assert memo(app).hits == 0


def test_a_replaced_source_is_not_replayed(root: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = pyvips.Image.perlin(600, 400, cell_size=32, seed=9, uchar=True).colourspace("srgb")
    source.tiffsave(str(images / "pic.tif"), tile=True, pyramid=True, compression="deflate")
    app = make(images, tmp_path / "cache", source_check_interval=0.2)
    path = "/iiif/3/pic/full/100,/0/default.png"
    _, first_headers, first = get(app, path)
    assert get(app, path)[2] == first
    assert memo(app).hits == 1
    replacement = images / ".next.tif"
    source.flipver().tiffsave(str(replacement), tile=True, pyramid=True, compression="deflate")
    os.replace(replacement, images / "pic.tif")
    time.sleep(0.25)
    _, headers, body = get(app, path)
    assert headers["etag"] != first_headers["etag"]
    assert body != first
    assert memo(app).hits == 1


def test_no_replay_without_the_body_in_memory_or_with_a_query(root: Path, tmp_path: Path) -> None:
    app = make(root, tmp_path, memory_cache_mb=0)
    get(app, RENDER)
    assert get(app, RENDER)[0] == 200
    assert memo(app).hits == 0  # the body lives on disk only: the full path reads it
    app = make(root, tmp_path)
    get(app, TILE)
    get(app, TILE + "?x=1")
    assert memo(app).hits == 0


def test_errors_are_never_replayed(root: Path, tmp_path: Path) -> None:
    app = make(root, tmp_path)
    for _ in range(2):
        assert get(app, "/iiif/3/pic/full/5000,/0/default.jpg")[0] == 400
    assert memo(app).hits == 0
    assert memo(app).stats()["entries"] == 0


def uvicorn_scope(path: str, method: str = "GET") -> dict[str, Any]:
    """The scope uvicorn's protocol has when it asks ``answer_in_protocol`` (before any task)."""
    raw, _, query = path.partition("?")
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw,
        "raw_path": raw.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


@pytest.mark.parametrize("path", [TILE, INFO])
def test_answer_in_protocol_is_the_replay(root: Path, tmp_path: Path, path: str) -> None:
    app = make(root, tmp_path)
    assert app.answer_in_protocol(uvicorn_scope(path)) is None  # nothing memoised yet
    if path == TILE:  # a whole stored tile is kept in memory, and so memoised, from its second ask
        get(app, path, headers=[("host", "testserver")])
    status, headers, body = get(app, path, headers=[("host", "testserver")])
    reply = app.answer_in_protocol(uvicorn_scope(path))
    assert reply is not None
    assert (reply.status, reply.way) == (status, Way.PROTOCOL_MEMO)
    assert reply.body == body
    lines = reply.header_lines.decode().split("\r\n")
    assert lines[-1] == ""  # every line ends with CRLF; the protocol adds the blank line
    assert dict(line.split(": ", 1) for line in lines[:-1]) == headers
    head = app.answer_in_protocol(uvicorn_scope(path, "HEAD"))
    assert head.header_lines == reply.header_lines  # same headers, content-length of the full body
    assert head.body == b""
    not_modified = uvicorn_scope(path)
    not_modified["headers"].append((b"if-none-match", b'W/"other", ' + headers["etag"].encode()))
    status_304, lines_304, body_304, _ = app.answer_in_protocol(not_modified)
    assert (status_304, body_304) == (304, b"")
    assert b"content-type" not in lines_304
    assert b"content-length" not in lines_304
    assert b"etag: " + headers["etag"].encode() in lines_304
    assert app.answer_in_protocol(uvicorn_scope(path, "POST")) is None
    assert app.answer_in_protocol(uvicorn_scope(path + "?x=1")) is None
    assert memo(app).hits == 3


def test_a_memo_keeps_only_encoded_lines_and_derives_the_rest() -> None:
    headers = [
        (b"link", b'<http://h/iiif/3/a/full/max/0/default.jpg>;rel="canonical"'),
        (b"etag", b'"abc"'),
        (b"x-note", b"a: b"),  # a value with the separator in it
        (b"content-type", b"image/jpeg"),
    ]
    memo = Memo("a", SourceVersion(1, 2, 3, 4), b'"abc"', header_lines(headers), key="k")
    assert memo.lines == b"".join(b"%s: %s\r\n" % pair for pair in headers)
    assert header_pairs(memo.lines) == headers
    assert memo.lines_304 == b"".join(b"%s: %s\r\n" % pair for pair in headers[:3])


# -- cold tiles answered in the protocol ------------------------------------------------------


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1000x750 colour (Q85, 4:2:0) and grey pyramids: edge tiles on every level, and a 250x187
    level that viewers ask for as 250x188 (stretched)."""
    path = tmp_path_factory.mktemp("odd")
    base = pyvips.Image.perlin(1000, 750, cell_size=40, seed=11, uchar=True)
    colour = base.bandjoin([base.rot180(), base.fliphor()]).copy(interpretation="srgb")
    for name, image in (("odd", colour), ("grey", base.copy(interpretation="b-w"))):
        image.tiffsave(
            str(path / f"{name}.tif"),
            tile=True,
            tile_width=256,
            tile_height=256,
            pyramid=True,
            compression="jpeg",
            Q=85,
        )
    return path


def osd_paths(identifier: str, width: int, height: int, *, exact: bool, version: str = "3") -> list[str]:
    """Every tile OpenSeadragon asks for (sizes rounded up), as ``w,`` or ``w,h``."""
    paths = []
    scale = 1
    while scale <= 2 * max(width, height) // 256:
        for y in range(0, height, 256 * scale):
            for x in range(0, width, 256 * scale):
                w, h = min(256 * scale, width - x), min(256 * scale, height - y)
                size = f"{-(-w // scale)},{-(-h // scale)}" if exact else f"{-(-w // scale)},"
                paths.append(f"/iiif/{version}/{identifier}/{x},{y},{w},{h}/{size}/0/default.jpg")
        scale *= 2
    return paths


def in_protocol(app: Any, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes] | None:
    scope = uvicorn_scope(path, method)
    scope["headers"] += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    reply = app.answer_in_protocol(scope)
    if reply is None:
        return None
    status, lines, body, _ = reply
    return status, dict(line.split(": ", 1) for line in lines.decode().split("\r\n")[:-1]), body


@pytest.mark.parametrize(
    ("identifier", "exact", "version"),
    [("odd", False, "3"), ("odd", True, "3"), ("grey", True, "3"), ("odd", False, "2")],
)
def test_cold_tiles_answered_in_protocol_are_the_full_answer(
    odd_root: Path, tmp_path: Path, identifier: str, exact: bool, version: str
) -> None:
    """Every stored tile a viewer asks for (whole, cut at the edge, stretched by a pixel) is
    answered in the protocol, with the status, headers and bytes the full path gives; the others (the
    80 px overview, rendered) go the full way and are replayed after."""
    app, full = make(odd_root, tmp_path / "a"), make(odd_root, tmp_path / "b")
    paths = osd_paths(identifier, 1000, 750, exact=exact, version=version)
    assert in_protocol(app, paths[0]) is None  # not opened yet: the full path opens it
    get(app, f"/iiif/{version}/{identifier}/info.json", headers=[("host", "testserver")])
    answered, left = 0, []
    for path in paths:
        expected = get(full, path, headers=[("host", "testserver")])
        assert expected[0] == 200
        answer = in_protocol(app, path)
        if answer is None:
            left.append(path)
            assert get(app, path, headers=[("host", "testserver")]) == expected
            answer = in_protocol(app, path)  # now memoised
            assert answer is not None
        else:
            answered += 1
        assert answer == expected, path
    counters = app.state.image_service.counters
    assert answered == app.fast_path.tiles_in_protocol == counters.passthrough == 12 + 4 + 1
    assert counters.stretched == 1  # the 250x188 tile from 250x187
    assert counters.renders == len(left) == len(paths) - answered
    assert all(path.split("/")[-3].startswith("125,") for path in left)  # 1/8: no such level
    assert memo(app).hits == len(left)


def test_tile_requests_not_answered_in_protocol(odd_root: Path, tmp_path: Path) -> None:
    app = make(odd_root, tmp_path)
    tile = "/iiif/3/odd/256,256,256,256/256,/0/default.jpg"
    get(app, "/iiif/3/odd/info.json", headers=[("host", "testserver")])
    headers = get(app, "/iiif/3/odd/0,0,256,256/256,/0/default.jpg", headers=[("host", "testserver")])[1]
    # Conditional requests: the full path compares (the memo answers If-None-Match of memoised ones).
    assert in_protocol(app, tile, if_none_match=headers["etag"]) is None
    assert in_protocol(app, tile, if_modified_since=headers["last-modified"]) is None
    assert in_protocol(app, tile + "?v=1") is None
    # Errors and renders: the full path answers them.
    assert in_protocol(app, "/iiif/3/odd/2000,0,256,256/256,/0/default.jpg") is None  # outside: 400
    assert get(app, "/iiif/3/odd/2000,0,256,256/256,/0/default.jpg")[0] == 400
    assert in_protocol(app, "/iiif/3/odd/0,0,256,256/512,/0/default.jpg") is None  # upscale: 400 in 3.0
    assert in_protocol(app, "/iiif/3/odd/10,10,256,256/256,/0/default.jpg") is None  # unaligned: rendered
    assert in_protocol(app, "/iiif/3/odd/0,0,256,256/256,/0/default.png") is None
    assert in_protocol(app, "/iiif/3/nothing/0,0,256,256/256,/0/default.jpg") is None  # 404 from the full path
    assert in_protocol(app, "/iiif/3/od%ZZd/0,0,256,256/256,/0/default.jpg") is None
    assert app.fast_path.tiles_in_protocol == 0
    # HEAD: the GET's headers, no body.
    head = in_protocol(app, tile, "HEAD")
    assert head is not None
    assert head[2] == b""
    assert head[1]["content-length"] == str(len(get(app, tile, headers=[("host", "testserver")])[2]))
    assert app.fast_path.tiles_in_protocol == 1
    stats = app.fast_path.stats()
    assert stats["tiles_in_protocol"] == 1


def test_a_replaced_source_is_not_answered_in_protocol(odd_root: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(odd_root / "odd.tif", images / "odd.tif")
    app = make(images, tmp_path / "cache", source_check_interval=0.2)
    tile = "/iiif/3/odd/0,0,256,256/256,/0/default.jpg"
    get(app, "/iiif/3/odd/info.json", headers=[("host", "testserver")])
    first = in_protocol(app, "/iiif/3/odd/256,0,256,256/256,/0/default.jpg")
    assert first is not None
    replacement = images / ".next.tif"
    shutil.copy(odd_root / "grey.tif", replacement)
    os.replace(replacement, images / "odd.tif")
    time.sleep(0.25)
    assert in_protocol(app, tile) is None  # its trust ran out: the full path checks the file
    _, headers, body = get(app, tile, headers=[("host", "testserver")])
    assert headers["etag"] != first[1]["etag"]
    with pyvips.Image.new_from_buffer(body, "") as decoded:
        assert decoded.bands == 1  # the new (grey) file's tile
