"""A deterministic model of the tile requests an OpenSeadragon viewer makes for one IIIF image.

Pure Python, no I/O: give it an image's info.json (as a dict), a viewport size and a seed, and it
produces *sessions*: a person opens the image (the home view: the whole image fitted into the
viewport, loaded at the level that fits), then pans and zooms; every step yields the tile URLs the
viewer requests for it, coarser levels first and, within a level, centre-out, leaving out what the
session already loaded (the viewer's own tile cache).

The geometry is OpenSeadragon's ``IIIFTileSource`` with the Image API's implementation note 3:

* levels are scale factors 1, 2, 4, ... up to the largest one in ``tiles[0].scaleFactors``
  (OpenSeadragon's ``maxLevel = round(log2(max scale factor))``);
* level ``s`` is ``ceil(width / s)`` x ``ceil(height / s)`` pixels, cut into ``tile_width`` x
  ``tile_height`` tiles; tile ``(col, row)`` is the full-resolution region
  ``col * tile_width * s, row * tile_height * s`` clipped to the image, requested at
  ``ceil(region width / s)`` x ``ceil(region height / s)`` (edge tiles use ``ceil``);
* the region is ``full`` when the tile is the whole image;
* sizes: style ``"w,"`` sends ``{w},`` (OpenSeadragon 2/3, and any version against Image API 2;
  ``full`` on a v2 image / ``max`` on a v3 image when the tile is the whole image at full
  resolution), style ``"w,h"`` sends ``{w},{h}`` (``max`` for the whole image at full
  resolution), as OpenSeadragon >= 4 does for Image API 3. The default (``None``) picks ``"w,h"``
  for version 3 and ``"w,"`` for version 2;
* the finest level loaded for a zoom ``z`` (screen pixels per full-resolution pixel) is the
  smallest ``s`` with ``z * s >= min_pixel_ratio`` (OpenSeadragon's ``minPixelRatio``, 0.5), and
  every coarser level is loaded under the view too (``minZoomImageRatio`` keeps the lowest level
  at 0); zoom is bounded by ``0.9`` x the home zoom (``minZoomImageRatio``) and ``1.1``
  (``maxZoomPixelRatio``).

Session steps: ``open`` (home view), ``zoom_in`` (a click, x2, or 1-4 wheel notches, x1.2 each,
about a point on the image), ``zoom_out``, ``pan`` (a drag of 10-60 % of the viewport) and
``home``. Only the final view of each step is modelled (not the animation frames in between).

``unaligned_requests`` makes the other workload: random regions at random sizes (``w,``, ``,h``,
``w,h``, ``!w,h``, ``pct:n``), valid for the image (region inside it, output at least 1 pixel,
no upscaling, within ``maxWidth``/``maxHeight``/``maxArea``), in syntax that Image API 2 and 3
servers both accept. These cannot be answered by passing a stored tile through.

``ColdPlan`` turns many images' sessions into one stream of steps in which every tile URL occurs
at most once (the "cold" load of many people opening different images); it can be split between
several load-generator processes without overlap.

    info = json.load(urlopen(".../iiif/3/artwork_big.tif/info.json"))
    img = ImageInfo.from_json(info)
    for session in sessions(img, 10, viewport=(1600, 1000), seed=1, image_url="/artwork_big.tif"):
        for step in session.steps:
            print(step.action, step.scale, step.urls)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

SizeStyle = Literal["w,", "w,h"]
Action = Literal["open", "zoom_in", "zoom_out", "pan", "home"]

#: OpenSeadragon defaults used by the model.
MIN_PIXEL_RATIO = 0.5  # minPixelRatio: finest level loaded has pixels >= 0.5 screen pixel
MIN_ZOOM_IMAGE_RATIO = 0.9  # minZoomImageRatio: zoom out until the image fills 90 % of the viewport
MAX_ZOOM_PIXEL_RATIO = 1.1  # maxZoomPixelRatio: zoom in until one image pixel is 1.1 screen pixels
ZOOM_PER_CLICK = 2.0
ZOOM_PER_SCROLL = 1.2

#: Relative frequencies of the actions after the opening view.
ACTION_WEIGHTS: dict[Action, float] = {"zoom_in": 0.4, "pan": 0.4, "zoom_out": 0.15, "home": 0.05}


def image_path(identifier: str) -> str:
    """The URL path segment of an identifier, as a viewer writes it: ``/`` + percent-encoded id."""
    return "/" + quote(identifier, safe="")


@dataclass(frozen=True)
class ImageInfo:
    """What a viewer takes from info.json."""

    width: int
    height: int
    tile_width: int = 256
    tile_height: int = 256
    scale_factors: tuple[int, ...] = (1,)
    version: int = 3
    max_width: int | None = None
    max_height: int | None = None
    max_area: int | None = None

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or self.tile_width < 1 or self.tile_height < 1:
            raise ValueError("width, height and tile size must be positive")
        if not self.scale_factors or min(self.scale_factors) < 1:
            raise ValueError("scale factors must be positive")

    @classmethod
    def from_json(cls, info: Mapping[str, Any]) -> ImageInfo:
        """Read an Image API 2 or 3 info.json. Without ``tiles``, 256x256 tiles and scale factors
        down to one tile are assumed (what the shared benchmark's servers declare)."""
        width, height = int(info["width"]), int(info["height"])
        tiles = info.get("tiles") or []
        if tiles:
            tw = int(tiles[0]["width"])
            th = int(tiles[0].get("height") or tw)
            listed = tuple(sorted(int(f) for f in tiles[0].get("scaleFactors") or []))
            factors = listed or default_scale_factors(width, height, tw, th)
        else:
            tw = th = 256
            factors = default_scale_factors(width, height, tw, th)
        return cls(
            width=width,
            height=height,
            tile_width=tw,
            tile_height=th,
            scale_factors=factors,
            version=_version(info),
            max_width=_opt_int(info.get("maxWidth")),
            max_height=_opt_int(info.get("maxHeight")),
            max_area=_opt_int(info.get("maxArea")),
        )

    @property
    def scales(self) -> tuple[int, ...]:
        """OpenSeadragon's levels as scale factors, finest (1) first."""
        max_level = round(math.log2(max(self.scale_factors)))
        return tuple(2**k for k in range(max_level + 1))

    def level_size(self, scale: int) -> tuple[int, int]:
        return math.ceil(self.width / scale), math.ceil(self.height / scale)

    def grid(self, scale: int) -> tuple[int, int]:
        """Columns and rows of tiles at a level."""
        lw, lh = self.level_size(scale)
        return math.ceil(lw / self.tile_width), math.ceil(lh / self.tile_height)

    def n_tiles(self) -> int:
        return sum(c * r for c, r in (self.grid(s) for s in self.scales))


InfoLike = ImageInfo | Mapping[str, Any]


def as_info(info: InfoLike) -> ImageInfo:
    """An ``ImageInfo`` from itself or from a parsed info.json."""
    return info if isinstance(info, ImageInfo) else ImageInfo.from_json(info)


def default_scale_factors(width: int, height: int, tw: int, th: int) -> tuple[int, ...]:
    """1, 2, 4, ... until the whole image fits in one tile (what pyramid writers and servers declare)."""
    out = [1]
    while math.ceil(width / out[-1]) > tw or math.ceil(height / out[-1]) > th:
        out.append(out[-1] * 2)
    return tuple(out)


def _opt_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _version(info: Mapping[str, Any]) -> int:
    ctx = info.get("@context")
    contexts = [ctx] if isinstance(ctx, str) else list(ctx or [])
    for c in contexts:
        if isinstance(c, str) and "/image/3" in c:
            return 3
        if isinstance(c, str) and "/image/2" in c:
            return 2
    if info.get("type") == "ImageService3":
        return 3
    return 2 if "@id" in info else 3


@dataclass(frozen=True)
class Tile:
    """One tile request: level (scale factor), grid position, region, output size, URL."""

    scale: int
    col: int
    row: int
    region: tuple[int, int, int, int]  # x, y, w, h in full-resolution pixels
    size: tuple[int, int]  # output width, height
    url: str


def tile(
    info: ImageInfo, scale: int, col: int, row: int, size_style: SizeStyle | None = None, image_url: str = ""
) -> Tile:
    """The request for tile (col, row) of level ``scale``, as OpenSeadragon builds it."""
    style = size_style or ("w,h" if info.version == 3 else "w,")
    step_w, step_h = info.tile_width * scale, info.tile_height * scale
    rx, ry = col * step_w, row * step_h
    if rx >= info.width or ry >= info.height or col < 0 or row < 0:
        raise ValueError(f"tile {col},{row} is outside level {scale}")
    rw, rh = min(step_w, info.width - rx), min(step_h, info.height - ry)
    sw, sh = math.ceil(rw / scale), math.ceil(rh / scale)  # implementation note 3
    whole = rx == 0 and ry == 0 and rw == info.width and rh == info.height
    region = "full" if whole else f"{rx},{ry},{rw},{rh}"
    full_res = sw == info.width and sh == info.height
    if full_res and info.version == 3:
        size = "max"
    elif full_res and style == "w,":
        size = "full"  # OpenSeadragon on a v2 image
    elif style == "w,":
        size = f"{sw},"
    else:
        size = f"{sw},{sh}"
    return Tile(scale, col, row, (rx, ry, rw, rh), (sw, sh), f"{image_url.rstrip('/')}/{region}/{size}/0/default.jpg")


@dataclass(frozen=True)
class View:
    """A viewport position: centre in full-resolution pixels and zoom in screen px per image px."""

    cx: float
    cy: float
    zoom: float

    def rect(self, viewport: tuple[int, int]) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of the viewport in full-resolution image pixels (may exceed the image)."""
        hw, hh = viewport[0] / self.zoom / 2, viewport[1] / self.zoom / 2
        return self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh


def home_view(info: ImageInfo, viewport: tuple[int, int]) -> View:
    """The whole image fitted into the viewport, centred (OpenSeadragon's home)."""
    return View(info.width / 2, info.height / 2, min(viewport[0] / info.width, viewport[1] / info.height))


def target_scale(info: ImageInfo, zoom: float, min_pixel_ratio: float = MIN_PIXEL_RATIO) -> int:
    """The finest level loaded at ``zoom``: the smallest scale factor s with zoom * s >= min_pixel_ratio."""
    for s in info.scales:
        if zoom * s >= min_pixel_ratio - 1e-12:
            return s
    return info.scales[-1]


def visible_tiles(info: ImageInfo, view: View, viewport: tuple[int, int], scale: int) -> list[tuple[int, int]]:
    """(col, row) of the tiles of level ``scale`` under the viewport, centre-out."""
    x0, y0, x1, y1 = view.rect(viewport)
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(info.width), x1), min(float(info.height), y1)
    if x1 <= x0 or y1 <= y0:
        return []
    step_w, step_h = info.tile_width * scale, info.tile_height * scale
    cols, rows = info.grid(scale)
    c0, c1 = int(x0 // step_w), min(cols - 1, math.ceil(x1 / step_w) - 1)
    r0, r1 = int(y0 // step_h), min(rows - 1, math.ceil(y1 / step_h) - 1)
    out = [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    def dist(t: tuple[int, int]) -> tuple[float, int, int]:
        tx, ty = (t[0] + 0.5) * step_w, (t[1] + 0.5) * step_h
        return ((tx - view.cx) ** 2 + (ty - view.cy) ** 2, t[1], t[0])

    out.sort(key=dist)
    return out


@dataclass
class Step:
    """One viewer step: the view after it, its finest level, and the tiles newly requested."""

    action: Action
    view: View
    scale: int
    tiles: list[Tile] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [t.url for t in self.tiles]


@dataclass
class Session:
    """One person's visit: the image URL, the seed it was made from, and its steps."""

    image_url: str
    seed: str
    steps: list[Step]

    def urls(self) -> list[str]:
        return [u for step in self.steps for u in step.urls]


def step_tiles(
    info: ImageInfo,
    view: View,
    viewport: tuple[int, int],
    seen: set[tuple[int, int, int]] | None = None,
    size_style: SizeStyle | None = None,
    image_url: str = "",
    min_pixel_ratio: float = MIN_PIXEL_RATIO,
) -> tuple[int, list[Tile]]:
    """Finest level for ``view`` and the tiles to request for it: every level from the coarsest to
    that one, coarser first, centre-out; tiles in ``seen`` (scale, col, row) are left out and the
    new ones added to it."""
    finest = target_scale(info, view.zoom, min_pixel_ratio)
    out: list[Tile] = []
    for s in reversed(info.scales):
        if s < finest:
            break
        for col, row in visible_tiles(info, view, viewport, s):
            if seen is not None:
                if (s, col, row) in seen:
                    continue
                seen.add((s, col, row))
            out.append(tile(info, s, col, row, size_style, image_url))
    return finest, out


def _visible_image_rect(info: ImageInfo, view: View, viewport: tuple[int, int]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = view.rect(viewport)
    return max(0.0, x0), max(0.0, y0), min(float(info.width), x1), min(float(info.height), y1)


def next_view(info: ImageInfo, view: View, action: Action, viewport: tuple[int, int], rng: random.Random) -> View:
    """The view after ``action`` (random parameters from ``rng``), within OpenSeadragon's bounds."""
    home = home_view(info, viewport)
    min_zoom, max_zoom = home.zoom * MIN_ZOOM_IMAGE_RATIO, max(MAX_ZOOM_PIXEL_RATIO, home.zoom)
    if action == "home":
        return home
    if action in ("zoom_in", "zoom_out"):
        factor = ZOOM_PER_CLICK if rng.random() < 0.5 else ZOOM_PER_SCROLL ** rng.randint(1, 4)
        if action == "zoom_out":
            factor = 1 / factor
        zoom = min(max_zoom, max(min_zoom, view.zoom * factor))
        x0, y0, x1, y1 = _visible_image_rect(info, view, viewport)
        px, py = rng.uniform(x0, x1), rng.uniform(y0, y1)  # the point under the pointer stays put
        ratio = view.zoom / zoom
        cx, cy = px + (view.cx - px) * ratio, py + (view.cy - py) * ratio
    else:  # pan: drag by 10-60 % of the viewport in a random direction
        dx = rng.choice((-1, 1)) * rng.uniform(0.1, 0.6) * viewport[0]
        dy = rng.choice((-1, 1)) * rng.uniform(0.1, 0.6) * viewport[1]
        zoom = view.zoom
        cx, cy = view.cx - dx / zoom, view.cy - dy / zoom
    # keep the centre over the image (OpenSeadragon keeps part of the image in view)
    return View(min(max(cx, 0.0), float(info.width)), min(max(cy, 0.0), float(info.height)), zoom)


def session(
    info: InfoLike,
    viewport: tuple[int, int] = (1600, 1000),
    seed: int | str = 0,
    steps: int = 16,
    size_style: SizeStyle | None = None,
    image_url: str = "",
    min_pixel_ratio: float = MIN_PIXEL_RATIO,
) -> Session:
    """One session: ``open`` then ``steps`` random pans and zooms. The same arguments always give
    the same session. ``info`` is an ``ImageInfo`` or a parsed info.json."""
    info = as_info(info)
    rng = random.Random(f"viewer-session:{seed}")
    seen: set[tuple[int, int, int]] = set()
    view = home_view(info, viewport)
    scale, tiles = step_tiles(info, view, viewport, seen, size_style, image_url, min_pixel_ratio)
    out = [Step("open", view, scale, tiles)]
    actions = list(ACTION_WEIGHTS)
    weights = [ACTION_WEIGHTS[a] for a in actions]
    for _ in range(steps):
        action: Action = rng.choices(actions, weights)[0]
        max_zoom = max(MAX_ZOOM_PIXEL_RATIO, home_view(info, viewport).zoom)
        if action == "zoom_in" and view.zoom >= max_zoom:
            action = "pan"  # nothing finer to see
        view = next_view(info, view, action, viewport, rng)
        scale, tiles = step_tiles(info, view, viewport, seen, size_style, image_url, min_pixel_ratio)
        out.append(Step(action, view, scale, tiles))
    return Session(image_url, str(seed), out)


def sessions(
    info: InfoLike,
    n: int,
    viewport: tuple[int, int] = (1600, 1000),
    seed: int = 0,
    steps: int = 16,
    size_style: SizeStyle | None = None,
    image_url: str = "",
    min_pixel_ratio: float = MIN_PIXEL_RATIO,
) -> list[Session]:
    """``n`` sessions; session ``i`` is ``session(..., seed=f"{seed}.{i}")``."""
    info = as_info(info)
    return [session(info, viewport, f"{seed}.{i}", steps, size_style, image_url, min_pixel_ratio) for i in range(n)]


# ---------------------------------------------------------------- cold stream over many images


@dataclass(frozen=True)
class NeedInfo:
    """Returned by ``ColdPlan.next_step`` when it needs this identifier's info.json first."""

    identifier: str


@dataclass(frozen=True)
class PlannedStep:
    """A step of the cold stream: which image, whether it opens a session, and its new tile URLs."""

    identifier: str
    opens: bool
    urls: tuple[str, ...]


class ColdPlan:
    """Steps of many sessions over many images in which every tile URL occurs at most once.

    Sessions are taken round-robin over ``identifiers`` (session k of every image, then k+1, ...);
    tiles an earlier step already requested are left out, steps left empty are skipped. An image
    is retired after ``patience`` consecutive sessions that brought no new tile, or after
    ``max_sessions`` sessions; ``next_step`` returns ``None`` when every image is retired.

    ``part``/``parts`` split the stream between load generators without overlap: every process
    computes the same stream and keeps steps ``part``, ``part + parts``, ...

    Images are described lazily: ``next_step`` returns ``NeedInfo(identifier)`` until
    ``add_info(identifier, info)`` is called. The plan is plain state with no I/O and no
    suspension points, so cooperative threads (gevent) may share one instance.
    """

    def __init__(
        self,
        identifiers: Sequence[str],
        viewport: tuple[int, int] = (1600, 1000),
        seed: int = 0,
        steps: int = 16,
        size_style: SizeStyle | None = None,
        prefix: str = "",
        part: int = 0,
        parts: int = 1,
        patience: int = 5,
        max_sessions: int = 100_000,
    ) -> None:
        if not identifiers:
            raise ValueError("no identifiers")
        if not 0 <= part < parts:
            raise ValueError("need 0 <= part < parts")
        self.identifiers = list(dict.fromkeys(identifiers))
        self.viewport, self.seed, self.steps, self.size_style = viewport, seed, steps, size_style
        self.prefix, self.part, self.parts = prefix.rstrip("/"), part, parts
        self.patience, self.max_sessions = patience, max_sessions
        self.infos: dict[str, ImageInfo] = {}
        self._seen: dict[tuple[str, int], bytearray] = {}
        self._live = list(self.identifiers)
        self._cursor = 0  # index into _live
        self._session_no = dict.fromkeys(self.identifiers, 0)
        self._dry = dict.fromkeys(self.identifiers, 0)
        self._pending: list[PlannedStep] = []  # steps of the session being walked
        self._pending_new = 0
        self._pending_id = ""
        self._global_step = 0
        self.exhausted = False

    def add_info(self, identifier: str, info: ImageInfo) -> None:
        self.infos[identifier] = info

    def _bitmap(self, identifier: str, info: ImageInfo, scale: int) -> bytearray:
        key = (identifier, scale)
        bm = self._seen.get(key)
        if bm is None:
            cols, rows = info.grid(scale)
            bm = self._seen[key] = bytearray(cols * rows)
        return bm

    def _plan_session(self, identifier: str) -> None:
        info = self.infos[identifier]
        k = self._session_no[identifier]
        self._session_no[identifier] = k + 1
        url = self.prefix + image_path(identifier)
        sess = session(info, self.viewport, f"{self.seed}.{identifier}.{k}", self.steps, self.size_style, url)
        cols = {s: info.grid(s)[0] for s in info.scales}
        planned, new = [], 0
        for st in sess.steps:
            fresh = []
            for t in st.tiles:
                bm = self._bitmap(identifier, info, t.scale)
                i = t.row * cols[t.scale] + t.col
                if not bm[i]:
                    bm[i] = 1
                    fresh.append(t.url)
            if fresh:
                planned.append(PlannedStep(identifier, st.action == "open", tuple(fresh)))
                new += len(fresh)
        self._pending = planned
        self._pending_new = new
        self._pending_id = identifier
        if new:
            self._dry[identifier] = 0
        else:
            self._dry[identifier] += 1
        if self._dry[identifier] >= self.patience or self._session_no[identifier] >= self.max_sessions:
            self._live.remove(identifier)
            self._cursor -= 1  # the next image moved into this slot
        if planned and not planned[0].opens:  # the session opened on tiles already seen
            planned[0] = PlannedStep(identifier, True, planned[0].urls)

    def next_step(self) -> PlannedStep | NeedInfo | None:
        """The next step for this part, ``NeedInfo`` if an info.json is needed first, ``None`` at the end."""
        while True:
            while self._pending:
                st = self._pending.pop(0)
                g = self._global_step
                self._global_step += 1
                if g % self.parts == self.part:
                    return st
            if not self._live:
                self.exhausted = True
                return None
            self._cursor %= len(self._live)
            identifier = self._live[self._cursor]
            if identifier not in self.infos:
                return NeedInfo(identifier)
            self._cursor += 1
            self._plan_session(identifier)


# ---------------------------------------------------------------- non-passthrough requests


@dataclass(frozen=True)
class Request:
    """An image request and the output size it should produce (servers may round by one pixel)."""

    url: str
    width: int
    height: int


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _within_limits(info: ImageInfo, w: int, h: int) -> bool:
    max_h = info.max_height if info.max_height is not None else info.max_width  # maxHeight defaults to maxWidth
    return (
        (info.max_width is None or w <= info.max_width)
        and (max_h is None or h <= max_h)
        and (info.max_area is None or w * h <= info.max_area)
    )


def unaligned_requests(
    info: InfoLike,
    n: int,
    seed: int | str = 0,
    image_url: str = "",
    max_output: int = 1024,
    aligned_fraction: float = 0.25,
) -> list[Request]:
    """``n`` requests a stored tile cannot answer: random regions (``x,y,w,h`` off the tile grid)
    scaled by random factors, and a share (``aligned_fraction``) of grid-aligned tile regions at
    sizes other than the tile's. Outputs are at most ``max_output`` pixels on each side, at least 1,
    never larger than the region (no upscaling) and within the image's limits. Deterministic.
    ``info`` is an ``ImageInfo`` or a parsed info.json."""
    info = as_info(info)
    rng = random.Random(f"unaligned:{seed}")
    out: list[Request] = []
    base = image_url.rstrip("/")
    max_scale = max(info.scales)
    while len(out) < n:
        if rng.random() < aligned_fraction:
            s = rng.choice(info.scales)
            cols, rows = info.grid(s)
            t = tile(info, s, rng.randrange(cols), rng.randrange(rows))
            rx, ry, rw, rh = t.region
            r = s * rng.uniform(1.1, 3.0)  # smaller than the tile: a thumbnail of the tile region
        else:
            r = math.exp(rng.uniform(0.0, math.log(max(2 * max_scale, 2))))  # region px per output px
            ow = rng.randint(32, max_output)
            oh = max(1, round(ow * math.exp(rng.uniform(math.log(0.5), math.log(2.0)))))
            rw, rh = min(info.width, max(1, round(ow * r))), min(info.height, max(1, round(oh * r)))
            rx, ry = rng.randint(0, info.width - rw), rng.randint(0, info.height - rh)
        tw = min(rw, max_output, max(1, _round_half_up(rw / r)))  # target output width
        th = min(rh, max_output, max(1, _round_half_up(rh / r)))
        kind = rng.choice(("w,", ",h", "w,h", "!w,h", "pct"))
        if kind == "w,":
            w, h, size = tw, _round_half_up(rh * tw / rw), f"{tw},"
        elif kind == ",h":
            w, h, size = _round_half_up(rw * th / rh), th, f",{th}"
        elif kind == "w,h":
            w, h, size = tw, th, f"{tw},{th}"
        elif kind == "!w,h":
            bw, bh = tw + rng.randint(0, 64), th + rng.randint(0, 64)
            f = min(bw / rw, bh / rh, 1.0)
            if f >= 1.0:
                continue  # the box would not reduce: skip rather than risk an upscale
            w, h = min(bw, _round_half_up(rw * f)), min(bh, _round_half_up(rh * f))
            size = f"!{bw},{bh}"
        else:
            pct = round(min(100.0, 100.0 * tw / rw), 2)
            if pct <= 0:
                continue
            w, h = _round_half_up(rw * pct / 100), _round_half_up(rh * pct / 100)
            size = f"pct:{pct:g}"
        if w < 2 or h < 2 or w > rw or h > rh or w > max_output or h > max_output or not _within_limits(info, w, h):
            continue  # keep every request unambiguous (1-pixel outputs round differently)
        out.append(Request(f"{base}/{rx},{ry},{rw},{rh}/{size}/0/default.jpg", w, h))
    return out


def interleave(seqs: Iterable[Sequence[Any]]) -> list[Any]:
    """Round-robin merge: a[0], b[0], c[0], a[1], ... (for requests over several identifiers)."""
    lists = [list(s) for s in seqs]
    out: list[Any] = []
    for i in range(max((len(s) for s in lists), default=0)):
        out.extend(s[i] for s in lists if i < len(s))
    return out
