"""The viewer model of benchmarks/viewer_sessions.py: valid URLs, OpenSeadragon's edge-tile math,
the home view, zooming, ordering, determinism, the cold stream and the non-passthrough requests.

URLs are checked by an independent parser here, not by the module's own code."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from benchmarks import viewer_sessions as vs

V3 = "http://iiif.io/api/image/3/context.json"
V2 = "http://iiif.io/api/image/2/context.json"


def info3(width: int, height: int, tile: int = 256, factors: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    tiles: dict[str, Any] = {"width": tile, "scaleFactors": factors or [1, 2, 4, 8, 16, 32, 64]}
    return {
        "@context": V3,
        "id": "http://x/iiif/3/a",
        "type": "ImageService3",
        "width": width,
        "height": height,
        "tiles": [tiles],
        **extra,
    }


INFOS: dict[str, dict[str, Any]] = {
    "big-v3": info3(12000, 9000),
    # iipsrv 1.1's shape (Image API 2)
    "big-v2": {
        "@context": V2,
        "@id": "http://x/iiif/a.tif",
        "protocol": "http://iiif.io/api/image",
        "width": 12000,
        "height": 9000,
        "tiles": [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8, 16, 32, 64]}],
        "maxWidth": 5000,
        "maxHeight": 5000,
    },
    "odd-nonsquare": info3(1001, 333, factors=[1, 2, 4, 8])
    | {"tiles": [{"width": 128, "height": 64, "scaleFactors": [1, 2, 4, 8]}]},
    "giga-512": info3(40000, 25000, tile=512, factors=[1, 2, 4, 8, 16, 32, 64, 128]),
    "one-tile": info3(200, 150, factors=[1]),
    "tall-limited": info3(3000, 20000, factors=[1, 2, 4, 8, 16, 32, 64, 128], maxWidth=2000, maxArea=3_000_000),
}


def parse_and_check(url: str, info: dict[str, Any], prefix: str = "/img") -> tuple[tuple[int, int, int, int], int, int]:
    """Region and output size of an image URL; asserts it is valid for the image."""
    assert url.startswith(prefix + "/"), url
    region, size, rotation, filename = url[len(prefix) + 1 :].split("/")
    assert rotation == "0"
    assert filename == "default.jpg"
    width, height = info["width"], info["height"]
    version = 3 if "/image/3" in info["@context"] else 2
    if region == "full":
        rx, ry, rw, rh = 0, 0, width, height
    else:
        rx, ry, rw, rh = (int(v) for v in region.split(","))
        assert min(rx, ry) >= 0, url
        assert min(rw, rh) >= 1, url
        assert rx + rw <= width, f"region outside the image: {url}"
        assert ry + rh <= height, f"region outside the image: {url}"
    if size == "max":
        assert version == 3, url
        w, h = rw, rh
    elif size == "full":
        assert version == 2, url
        w, h = rw, rh
    elif size.startswith("pct:"):
        n = float(size[4:])
        assert 0 < n <= 100, url
        w, h = round(rw * n / 100), round(rh * n / 100)
    elif size.startswith("!"):
        bw, bh = (int(v) for v in size[1:].split(","))
        f = min(bw / rw, bh / rh)
        assert f <= 1, f"!w,h would upscale: {url}"
        w, h = round(rw * f), round(rh * f)
    elif size.endswith(","):
        w = int(size[:-1])
        h = round(rh * w / rw)
    elif size.startswith(","):
        h = int(size[1:])
        w = round(rw * h / rh)
    else:
        w, h = (int(v) for v in size.split(","))
    assert min(w, h) >= 1, url
    assert w <= rw, f"upscaling: {url}"
    assert h <= rh, f"upscaling: {url}"
    max_w = info.get("maxWidth")
    max_h = info.get("maxHeight", max_w)
    assert max_w is None or w <= max_w, url
    assert max_h is None or h <= max_h, url
    assert info.get("maxArea") is None or w * h <= info["maxArea"], url
    return (rx, ry, rw, rh), w, h


@pytest.mark.parametrize("name", sorted(INFOS))
@pytest.mark.parametrize("style", [None, "w,", "w,h"])
def test_every_session_url_is_valid(name: str, style: vs.SizeStyle | None) -> None:
    raw = INFOS[name]
    info = vs.ImageInfo.from_json(raw)
    for sess in vs.sessions(info, 6, viewport=(1600, 1000), seed=3, steps=20, size_style=style, image_url="/img"):
        for step in sess.steps:
            for t in step.tiles:
                region, w, h = parse_and_check(t.url, raw)
                assert region == t.region
                if not t.url.split("/")[-3].endswith(","):  # `w,` leaves the height to the server's rounding
                    assert (w, h) == t.size
                else:
                    assert w == t.size[0]


@pytest.mark.parametrize("name", sorted(INFOS))
def test_every_tile_of_every_level_is_valid_and_ceil_sized(name: str) -> None:
    raw = INFOS[name]
    info = vs.ImageInfo.from_json(raw)
    for s in info.scales:
        cols, rows = info.grid(s)
        lw, lh = math.ceil(info.width / s), math.ceil(info.height / s)
        for row in range(rows):
            widths = [vs.tile(info, s, col, row, "w,h", "/img").size[0] for col in range(cols)]
            assert sum(widths) == lw  # the row of tiles is exactly the level's width
        for col in range(cols):
            assert sum(vs.tile(info, s, col, row, "w,h", "/img").size[1] for row in range(rows)) == lh
        for row in range(rows):
            for col in range(cols):
                t = vs.tile(info, s, col, row, "w,h", "/img")
                parse_and_check(t.url, raw)
                _rx, _ry, rw, rh = t.region
                assert t.size == (math.ceil(rw / s), math.ceil(rh / s))


def test_edge_tiles_use_ceil() -> None:
    info = vs.ImageInfo.from_json(info3(1001, 333, factors=[1, 2, 4]))
    # level 2: 501 px wide; the last column is the region 512..1001 (489 px): 244.5 -> 245, not 244
    last = vs.tile(info, 2, 1, 0, "w,h", "/img")
    assert last.region == (512, 0, 489, 333)
    assert last.size == (245, 167)  # 333 / 2 = 166.5 -> 167
    assert last.url == "/img/512,0,489,333/245,167/0/default.jpg"
    assert vs.tile(info, 2, 1, 0, "w,", "/img").url == "/img/512,0,489,333/245,/0/default.jpg"
    # level 4: 251 x 84, one tile: the whole image
    assert vs.tile(info, 4, 0, 0, "w,h", "/img").url == "/img/full/251,84/0/default.jpg"


def test_size_styles_and_versions() -> None:
    v3 = vs.ImageInfo.from_json(info3(200, 150, factors=[1]))
    assert v3.version == 3
    assert vs.tile(v3, 1, 0, 0, None, "/a").url == "/a/full/max/0/default.jpg"
    assert vs.tile(v3, 1, 0, 0, "w,", "/a").url == "/a/full/max/0/default.jpg"
    v2 = vs.ImageInfo.from_json(INFOS["big-v2"])
    assert v2.version == 2
    assert (v2.tile_width, v2.tile_height, v2.scale_factors) == (256, 256, (1, 2, 4, 8, 16, 32, 64))
    assert vs.tile(v2, 2, 0, 0, None, "/a").url == "/a/0,0,512,512/256,/0/default.jpg"
    assert vs.tile(v2, 2, 0, 0, "w,h", "/a").url == "/a/0,0,512,512/256,256/0/default.jpg"
    big3 = vs.ImageInfo.from_json(INFOS["big-v3"])
    assert vs.tile(big3, 2, 0, 0, None, "/a").url == "/a/0,0,512,512/256,256/0/default.jpg"
    assert vs.tile(big3, 64, 0, 0, None, "/a").url == "/a/full/188,141/0/default.jpg"
    # no tiles in info.json: 256-pixel tiles down to one tile
    bare = vs.ImageInfo.from_json({"@context": V3, "id": "x", "width": 1000, "height": 600})
    assert bare.scale_factors == (1, 2, 4)


@pytest.mark.parametrize("name", sorted(INFOS))
@pytest.mark.parametrize("viewport", [(1600, 1000), (800, 1200), (300, 200)])
def test_home_view_covers_the_viewport(name: str, viewport: tuple[int, int]) -> None:
    info = vs.ImageInfo.from_json(INFOS[name])
    home = vs.home_view(info, viewport)
    shown_w, shown_h = info.width * home.zoom, info.height * home.zoom
    assert shown_w <= viewport[0] + 1e-6
    assert shown_h <= viewport[1] + 1e-6
    assert math.isclose(shown_w, viewport[0]) or math.isclose(shown_h, viewport[1])  # fitted
    sess = vs.session(info, viewport, seed=1, image_url="/img")
    opening = sess.steps[0]
    assert opening.action == "open"
    # the level loaded has at least the resolution shown (or is the finest there is)
    lw, lh = info.level_size(opening.scale)
    assert opening.scale == 1 or (lw >= shown_w * vs.MIN_PIXEL_RATIO * 2 - 1 and lh >= shown_h - 1)
    # ... and is the coarsest such level: the next coarser one is no larger than what is shown
    assert opening.scale == info.scales[-1] or info.level_size(opening.scale * 2)[0] <= math.ceil(shown_w)
    # the whole image is in view, so the level's tiles must cover all of it
    finest = [t for t in opening.tiles if t.scale == opening.scale]
    assert len(finest) == info.grid(opening.scale)[0] * info.grid(opening.scale)[1]
    assert sum(t.region[2] * t.region[3] for t in finest) == info.width * info.height
    # and every coarser level is loaded first
    scales = [t.scale for t in opening.tiles]
    assert scales == sorted(scales, reverse=True)
    assert set(scales) == {s for s in info.scales if s >= opening.scale}


def test_zooming_in_moves_to_a_finer_level() -> None:
    info = vs.ImageInfo.from_json(INFOS["big-v3"])
    viewport = (1600, 1000)
    home = vs.home_view(info, viewport)
    s0 = vs.target_scale(info, home.zoom)
    assert s0 == 8  # 12000x9000 in 1600x1000: 1333 px shown, level 8 is 1500 px
    assert vs.target_scale(info, home.zoom * 2) == s0 // 2
    assert vs.target_scale(info, home.zoom * 4) == s0 // 4
    assert vs.target_scale(info, 1.1) == 1
    assert vs.target_scale(info, 1e-6) == 64
    finer = 0
    for sess in vs.sessions(info, 30, viewport, seed=5, steps=20):
        for prev, step in zip(sess.steps, sess.steps[1:], strict=False):
            if step.action == "zoom_in":
                assert step.view.zoom >= prev.view.zoom
                assert step.scale <= prev.scale
                finer += step.scale < prev.scale
            elif step.action == "zoom_out":
                assert step.view.zoom <= prev.view.zoom
                assert step.scale >= prev.scale
            elif step.action == "pan":
                assert step.scale == prev.scale
    assert finer > 10


def test_steps_are_coarser_first_then_centre_out_without_repeats() -> None:
    info = vs.ImageInfo.from_json(INFOS["giga-512"])
    for sess in vs.sessions(info, 10, (1920, 1080), seed=9, steps=20, image_url="/img"):
        urls = sess.urls()
        assert len(urls) == len(set(urls))
        for step in sess.steps:
            scales = [t.scale for t in step.tiles]
            assert scales == sorted(scales, reverse=True)
            for s in set(scales):
                full = [
                    (((c + 0.5) * 512 * s - step.view.cx) ** 2 + ((r + 0.5) * 512 * s - step.view.cy) ** 2)
                    for c, r in ((t.col, t.row) for t in step.tiles if t.scale == s)
                ]
                assert full == sorted(full), "tiles of a level are not centre-out"


def test_views_stay_within_openseadragon_bounds() -> None:
    info = vs.ImageInfo.from_json(INFOS["tall-limited"])
    viewport = (1600, 1000)
    home = vs.home_view(info, viewport)
    for sess in vs.sessions(info, 20, viewport, seed=2, steps=30):
        for step in sess.steps:
            assert 0 <= step.view.cx <= info.width
            assert 0 <= step.view.cy <= info.height
            assert home.zoom * vs.MIN_ZOOM_IMAGE_RATIO - 1e-12 <= step.view.zoom <= vs.MAX_ZOOM_PIXEL_RATIO + 1e-12


def test_same_seed_same_sessions() -> None:
    info = vs.ImageInfo.from_json(INFOS["big-v3"])
    a = vs.sessions(info, 8, seed=11, image_url="/img")
    b = vs.sessions(info, 8, seed=11, image_url="/img")
    assert [s.urls() for s in a] == [s.urls() for s in b]
    assert [[st.action for st in s.steps] for s in a] == [[st.action for st in s.steps] for s in b]
    c = vs.sessions(info, 8, seed=12, image_url="/img")
    assert [s.urls() for s in a] != [s.urls() for s in c]
    # independent of the global random state
    random.seed(0)
    d = vs.sessions(info, 8, seed=11, image_url="/img")
    assert [s.urls() for s in a] == [s.urls() for s in d]


@pytest.mark.parametrize("name", sorted(INFOS))
def test_unaligned_requests_are_valid_and_not_tiles(name: str) -> None:
    raw = INFOS[name]
    info = vs.ImageInfo.from_json(raw)
    reqs = vs.unaligned_requests(info, 400, seed=4, image_url="/img")
    assert len(reqs) == 400
    assert reqs == vs.unaligned_requests(info, 400, seed=4, image_url="/img")
    assert reqs != vs.unaligned_requests(info, 400, seed=5, image_url="/img")
    tile_urls = (
        {
            vs.tile(info, s, c, r, style, "/img").url
            for s in info.scales
            for c in range(info.grid(s)[0])
            for r in range(info.grid(s)[1])
            for style in ("w,", "w,h")
        }
        if info.n_tiles() < 5000
        else set()
    )
    kinds = set()
    for req in reqs:
        _region, w, h = parse_and_check(req.url, raw)
        assert abs(w - req.width) <= 1, req
        assert abs(h - req.height) <= 1, req
        assert 2 <= req.width <= 1024
        assert 2 <= req.height <= 1024
        assert req.url not in tile_urls
        size = req.url.split("/")[-3]
        kinds.add(
            "pct"
            if size.startswith("pct:")
            else "!"
            if size.startswith("!")
            else ",h"
            if size.startswith(",")
            else "w,"
            if size.endswith(",")
            else "w,h"
        )
    if info.width > 1000:
        assert kinds == {"pct", "!", ",h", "w,", "w,h"}


def test_cold_plan_requests_every_url_at_most_once_and_splits_without_overlap() -> None:
    info = vs.ImageInfo.from_json(info3(3000, 2000, factors=[1, 2, 4, 8, 16]))
    ids = ["a.tif", "b c.tif", "d/e.tif"]

    def run(part: int, parts: int) -> tuple[list[vs.PlannedStep], list[str]]:
        plan = vs.ColdPlan(ids, (1600, 1000), seed=1, prefix="/iiif/3", part=part, parts=parts, patience=3)
        steps, asked = [], []
        while (st := plan.next_step()) is not None:
            if isinstance(st, vs.NeedInfo):
                asked.append(st.identifier)
                plan.add_info(st.identifier, info)
                continue
            steps.append(st)
        assert plan.exhausted
        return steps, asked

    whole, asked = run(0, 1)
    assert asked == ids  # each info.json asked for once, in order
    urls = [u for st in whole for u in st.urls]
    assert len(urls) == len(set(urls))
    assert all(u.startswith(("/iiif/3/a.tif/", "/iiif/3/b%20c.tif/", "/iiif/3/d%2Fe.tif/")) for u in urls)
    assert all(st.urls for st in whole)
    # each image's first step opens a session, and the first steps walk the images round-robin
    assert [st.identifier for st in whole[:1]] == ["a.tif"]
    assert whole[0].opens
    assert len(urls) > 0.8 * 3 * info.n_tiles()  # random sessions reach most tiles before retiring
    a, _ = run(0, 2)
    b, _ = run(1, 2)
    ua = {u for st in a for u in st.urls}
    ub = {u for st in b for u in st.urls}
    assert not ua & ub
    assert ua | ub == set(urls)
    assert run(0, 1)[0] == whole  # deterministic


def test_cold_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="identifiers"):
        vs.ColdPlan([])
    with pytest.raises(ValueError, match="part"):
        vs.ColdPlan(["a"], part=2, parts=2)


def test_functions_take_a_parsed_info_json() -> None:
    raw = INFOS["big-v2"]
    info = vs.ImageInfo.from_json(raw)
    assert vs.session(raw, seed=3).urls() == vs.session(info, seed=3).urls()
    assert vs.sessions(raw, 2, seed=3)[1].urls() == vs.sessions(info, 2, seed=3)[1].urls()
    assert vs.unaligned_requests(raw, 20, seed=3) == vs.unaligned_requests(info, 20, seed=3)


def test_interleave() -> None:
    assert vs.interleave([[1, 2, 3], ["a"], [True, False]]) == [1, "a", True, 2, False, 3]
