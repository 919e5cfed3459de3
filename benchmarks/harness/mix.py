"""The mixed viewer-and-scholar workload: one seeded list of requests, the same for every server.

    python -m benchmarks.harness.mix --big 150 --small 150 -n 20000 --out mixed.txt   # write a list
    python -m benchmarks.harness.mix --big 150 --small 150 -n 20000                   # its shares only

What a museum or library site with a deep-zoom viewer (OpenSeadragon, Mirador, Universal Viewer),
collection and search pages and scholars citing details asks an image server for, as shares of
requests (``SHARES``; the reasons are in docs/performance.md, "The mixed viewer-and-scholar workload"):

- ``viewer`` 60 %: OpenSeadragon sessions (``viewer_sessions.session``: the home view, then 0 to
  12 pans and zooms), each asking the image's info.json first, then its tiles in the viewer's
  order (``w,`` sizes, edge tiles ``ceil``-rounded); sessions go round a shuffled list of all
  images, so most open an image nobody opened yet;
- ``thumb_box`` 14 % and ``thumb_strip`` 10 %: collection and search pages of 24 images,
  ``full/!200,200`` (a grid: portrait and landscape in one box) and ``full/,150`` (a strip: one
  height); pages drawn by popularity 1/rank, so the first pages come back as on a real site;
- ``info`` 5 %: info.json alone (viewers reading a manifest's canvases, harvesters), random images;
- ``region`` 10 %: a cited detail at its own size, ``x,y,w,h/max``, 128 to 1536 px a side at full
  resolution, at random positions (off the tile grid but by chance);
- ``download_max`` and ``download_pct50`` 0.5 % each: ``full/max`` and ``full/pct:50`` of the
  images whose full size is within both servers' limits (``DOWNLOAD_LIMITS``), so that ``max``
  means the same output everywhere.

Every request carries the output size it must produce (None for info.json). Paths are relative
(the identifier percent-encoded, then ``/region/size/0/default.jpg``): the harness puts each
server's prefix in front (``/iiif/3`` for iiifserver, ``/iiif`` for iipsrv, Image API 3 and 2.1
both accept every request here). The list is a pure function of the images, the seed and the
shares, and a longer list starts with the shorter one.

Owns the workload's kinds, shares and URL shapes; knows no server and no load generator, and reads no
file (the image names and sizes come from ``images.py``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from benchmarks import viewer_sessions as vs
from benchmarks.harness import images as img

SHARES: dict[str, float] = {
    "viewer": 0.60,
    "thumb_box": 0.14,
    "thumb_strip": 0.10,
    "info": 0.05,
    "region": 0.10,
    "download_max": 0.005,
    "download_pct50": 0.005,
}
KINDS = tuple(SHARES)
PAGE_SIZE = 24  # thumbnails on a collection or search page
VIEWPORT = (1600, 1000)
MAX_STEPS = 12  # pans and zooms after the home view: 0 to 12, most visits are short
REGION_SIDES = (128, 1536)  # a cited region's sides at full resolution
# The lowest limits of both servers at their harness defaults: iipsrv's MAX_CVT 5000 (a side) and
# iiifserver's max_area 25 MP. Within them "max" is the full image on both.
DOWNLOAD_LIMITS = (5000, 5000, 25_000_000)


@dataclass(frozen=True)
class MixImage:
    """One image of the collection: its identifier and what a viewer reads from its info.json."""

    identifier: str
    info: vs.ImageInfo


@dataclass(frozen=True)
class MixedRequest:
    """One request of the list: its kind, relative path and expected output size (None: info.json)."""

    kind: str
    path: str
    width: int | None = None
    height: int | None = None

    def line(self) -> str:
        """The URL-list line ``harness/load.py`` reads: path, TAB width, TAB height."""
        size = f"\t{self.width}\t{self.height}" if self.width is not None else ""
        return self.path + size


def pyramid(width: int, height: int) -> vs.ImageInfo:
    """A 256-tiled pyramid down to one tile, as the harness's images and both servers describe it."""
    return vs.ImageInfo(width, height, 256, 256, vs.default_scale_factors(width, height, 256, 256))


def _base(image: MixImage) -> str:
    return quote(image.identifier, safe="")


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def thumbnail_box(image: MixImage, box: int = 200) -> MixedRequest:
    w, h = image.info.width, image.info.height
    f = min(box / w, box / h, 1.0)
    return MixedRequest("thumb_box", f"{_base(image)}/full/!{box},{box}/0/default.jpg", _round(w * f), _round(h * f))


def thumbnail_strip(image: MixImage, height: int = 150) -> MixedRequest:
    w, h = image.info.width, image.info.height
    return MixedRequest("thumb_strip", f"{_base(image)}/full/,{height}/0/default.jpg", _round(w * height / h), height)


def info_request(image: MixImage, kind: str = "info") -> MixedRequest:
    return MixedRequest(kind, f"{_base(image)}/info.json")


def fits_download(info: vs.ImageInfo, limits: tuple[int, int, int] = DOWNLOAD_LIMITS) -> bool:
    """Whether ``full/max`` is the whole image on every server (within the lowest limits)."""
    return info.width <= limits[0] and info.height <= limits[1] and info.width * info.height <= limits[2]


# ---------------------------------------------------------------- one stream per kind (endless)


def _viewer(images: Sequence[MixImage], rng: random.Random) -> Iterator[MixedRequest]:
    """Sessions round a shuffled list of the images: info.json, then the session's tiles."""
    order = list(images)
    rng.shuffle(order)
    for k in itertools.count():
        image = order[k % len(order)]
        yield info_request(image, "viewer")
        visit = vs.session(image.info, VIEWPORT, f"mix.{k}", rng.randint(0, MAX_STEPS), "w,", "")
        for step in visit.steps:
            for t in step.tiles:
                yield MixedRequest("viewer", _base(image) + t.url, t.size[0], t.size[1])


def _pages(images: Sequence[MixImage], rng: random.Random, thumb: str) -> Iterator[MixedRequest]:
    """Pages of PAGE_SIZE thumbnails of a seeded collection order, page k drawn with weight 1/k."""
    order = list(images)
    rng.shuffle(order)
    pages = [order[i : i + PAGE_SIZE] for i in range(0, len(order), PAGE_SIZE)]
    weights = [1 / (k + 1) for k in range(len(pages))]
    while True:
        for image in rng.choices(pages, weights)[0]:
            yield thumbnail_box(image) if thumb == "box" else thumbnail_strip(image)


def _infos(images: Sequence[MixImage], rng: random.Random) -> Iterator[MixedRequest]:
    while True:
        yield info_request(rng.choice(images))


def _regions(images: Sequence[MixImage], rng: random.Random) -> Iterator[MixedRequest]:
    """Cited details at their own size: sides log-uniform in REGION_SIDES, anywhere in the image."""
    lo, hi = REGION_SIDES
    while True:
        image = rng.choice(images)
        iw, ih = image.info.width, image.info.height
        w = min(iw, _round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        h = min(ih, max(1, _round(w * math.exp(rng.uniform(math.log(0.5), math.log(2.0))))), hi)
        x, y = rng.randint(0, iw - w), rng.randint(0, ih - h)
        yield MixedRequest("region", f"{_base(image)}/{x},{y},{w},{h}/max/0/default.jpg", w, h)


def _downloads(images: Sequence[MixImage], rng: random.Random, kind: str) -> Iterator[MixedRequest]:
    fit = [i for i in images if fits_download(i.info)]
    if not fit:
        raise ValueError("no image is within the download limits: add smaller images")
    while True:
        image = rng.choice(fit)
        w, h = image.info.width, image.info.height
        if kind == "download_max":
            yield MixedRequest(kind, f"{_base(image)}/full/max/0/default.jpg", w, h)
        else:
            yield MixedRequest(kind, f"{_base(image)}/full/pct:50/0/default.jpg", _round(w / 2), _round(h / 2))


def mixed_requests(
    images: Sequence[MixImage], n: int, seed: int | str = 1, shares: Mapping[str, float] = SHARES
) -> list[MixedRequest]:
    """``n`` requests, each slot's kind drawn by ``shares`` and filled from that kind's stream."""
    if not images:
        raise ValueError("no images")
    unknown = set(shares) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}")
    kinds = [k for k in KINDS if shares.get(k, 0) > 0]

    def rng(name: str) -> random.Random:  # one generator per stream: a stream does not shift the others
        return random.Random(f"mix:{seed}:{name}")

    factories = {
        "viewer": lambda: _viewer(images, rng("viewer")),
        "thumb_box": lambda: _pages(images, rng("thumb_box"), "box"),
        "thumb_strip": lambda: _pages(images, rng("thumb_strip"), "strip"),
        "info": lambda: _infos(images, rng("info")),
        "region": lambda: _regions(images, rng("region")),
        "download_max": lambda: _downloads(images, rng("download_max"), "download_max"),
        "download_pct50": lambda: _downloads(images, rng("download_pct50"), "download_pct50"),
    }
    streams = {k: factories[k]() for k in kinds}
    slots = rng("slots").choices(kinds, weights=[shares[k] for k in kinds], k=n)
    return [next(streams[k]) for k in slots]


def describe(requests: Sequence[MixedRequest]) -> dict[str, dict[str, float]]:
    """Per kind: requests, share of the list, distinct URLs (what repeats is a cache hit)."""
    counts = Counter(r.kind for r in requests)
    distinct = Counter(r.kind for r in {(r.kind, r.path): r for r in requests}.values())
    total = max(1, len(requests))
    out = {k: {"requests": counts[k], "share": counts[k] / total, "distinct": distinct[k]} for k in KINDS if counts[k]}
    infos = sum(1 for r in requests if r.path.endswith("/info.json"))
    out["(info.json, all kinds)"] = {"requests": infos, "share": infos / total, "distinct": len({
        r.path for r in requests if r.path.endswith("/info.json")})}  # fmt: skip
    return out


def describe_md(requests: Sequence[MixedRequest]) -> str:
    """``describe`` as a markdown table."""
    lines = ["| kind | requests | share | distinct URLs |", "|---|---:|---:|---:|"]
    for kind, d in describe(requests).items():
        lines.append(f"| {kind} | {d['requests']:,.0f} | {100 * d['share']:.1f} % | {d['distinct']:,.0f} |")
    return "\n".join(lines)


def collection(big: Sequence[str], small: Sequence[str]) -> list[MixImage]:
    """The harness's collection: 12000x9000 scans (``big``) and 4000x3000 photographs (``small``)."""
    return [MixImage(i, pyramid(*img.SIZES["big"])) for i in big] + [
        MixImage(i, pyramid(*img.SIZES["small"])) for i in small
    ]


def collection_words(big: int, small: int) -> str:
    """How reports name ``collection(big, small)``: how many copies of each picture."""
    w, h = img.SIZES["big"]
    sw, sh = img.SIZES["small"]
    return f"{big} distinct copies of the {w}x{h} Q85 scan and {small} of the {sw}x{sh} Q85 photograph"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", type=int, default=150, help="12000x9000 images artwork_big_q85_NN.tif")
    ap.add_argument("--small", type=int, default=150, help="4000x3000 images artwork_small_q85_NN.tif")
    ap.add_argument("-n", type=int, default=20_000, help="requests")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--out", type=Path, help="write the list here (path TAB width TAB height)")
    a = ap.parse_args(argv)
    images = collection(img.alias_names("big", 85, a.big), img.alias_names("small", 85, a.small))
    requests = mixed_requests(images, a.n, a.seed)
    if a.out:
        a.out.write_text("".join(r.line() + "\n" for r in requests))
    print(describe_md(requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
