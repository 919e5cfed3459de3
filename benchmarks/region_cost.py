#!/usr/bin/env python3
"""CPU per request of a render that no stored tile answers, in process: libvips' decode of the
level against the stored tiles decoded by libjpeg-turbo (``iiifserver.image.tile_mosaic``).

    python benchmarks/region_cost.py                     # 300 unaligned requests + thumbnails, 7 repeats
    python benchmarks/region_cost.py --requests 100 --repeats 3

The requests are the side-by-side benchmark's ``unaligned`` workload (``viewer_sessions.
unaligned_requests``: random regions off the tile grid at random sizes, and grid-aligned
regions at other sizes) on its Q85 pyramid (12000 x 9000, 256 px JPEG tiles; made by
``benchmarks.harness.images`` under ``$BENCH_ROOT/images`` when missing), and thumbnails
(``!w,h`` and ``,h``) from 64 to 1024 pixels, which read every level of the pyramid; and, when
the side-by-side benchmark made aliases of the pyramid (``--aliases N``), ``!200,200`` and
``,150`` of 40 of them, each a name of its own opened and indexed as another image would be. Each
request is planned as the server plans it and rendered by ``render.render`` with
``stored_tiles`` off (before) and on (after), in one thread, alternating the two over the whole
list, ``--repeats`` times; the figure is the median of the repeats' process CPU time per
request (libvips' worker threads included), so other load on the machine moves it little. Both
ways keep what they keep in a server's render thread (libvips: the opened level and its two rows
of decoded tiles; libjpeg-turbo: the level's tile index). The outputs are compared too: the
mean absolute difference of the decoded pixels of the two renders of every request.
Results: ``benchmarks/results/<day>-<host>-<cpu>-region-cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGE = "artwork_big_q85.tif"
MANY_IMAGES = 40  # images per list of "thumbnails of many images"
THUMBNAILS = tuple(f"!{n},{n}" for n in (64, 100, 150, 200, 300, 400, 512, 800, 1024)) + tuple(
    f",{n}" for n in (75, 150, 300, 600)
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, help="folder with the Q85 pyramid (default $BENCH_ROOT/images)")
    ap.add_argument("--requests", type=int, default=300, help="unaligned requests (default 300)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", default="0")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    import numpy as np
    from PIL import Image

    from benchmarks.harness import results, servers
    from benchmarks.harness.images import alias_names, count_aliases
    from benchmarks.harness.machine import cpu_model
    from benchmarks.viewer_sessions import ImageInfo, unaligned_requests
    from iiifserver.config import Settings
    from iiifserver.image import probe as probe_module
    from iiifserver.image import render as render_module
    from iiifserver.image import tile_mosaic
    from iiifserver.image.passthrough import level_grid
    from iiifserver.image.planner import plan, resolve
    from iiifserver.image.request import parse_image_request
    from iiifserver.image.source_info import SourceVersion
    from iiifserver.image.tiff_directory import read_tile_index

    images = args.images or servers.bench_root() / "images"
    if not (images / IMAGE).exists():
        subprocess.run([sys.executable, "-m", "benchmarks.harness.images", "--out", str(images), "--size", "big",
                        "--quality", "85", "--aliases", "0"], cwd=REPO, check=True)  # fmt: skip
    path = images / IMAGE
    probe_module.configure_libvips()
    settings = Settings()
    info = probe_module.probe(path, plain_max_pixels=settings.plain_max_pixels, max_source_pixels=10**10)
    options = render_module.EncodeOptions(
        settings.jpeg_quality, settings.webp_quality, settings.jpeg_chroma_subsampling
    )
    factors = tuple(sorted(round(info.width / level.width) for level in info.levels))
    viewer = ImageInfo(info.width, info.height, info.tile_width, info.tile_height, factors)
    thumbnails = [f"full/{size}/0/default.jpg" for size in THUMBNAILS]
    # Other images: the side-by-side benchmark's aliases of the pyramid, when it made them (each
    # a name of its own, so each is opened and indexed as another image would be).
    aliases = [images / name for name in alias_names("big", 85, count_aliases(images, "big", 85))]
    versions = {p: SourceVersion.of(p.stat()) for p in [path, *aliases]}
    indexes = {p: read_tile_index(p, info.levels) for p in versions}  # as each image's first open does

    def grids(image: Path, p: Any, stored_tiles: bool) -> Any:
        return level_grid(indexes[image], info.levels, p.level) if stored_tiles else None

    def lists(repeat: int) -> dict[str, list[tuple[Path, str]]]:
        """A fresh list per repeat: a server renders each URL once (the tile cache has it after)."""
        seed = f"{args.seed}-{repeat}"
        out = {
            "unaligned": [(path, r.url.lstrip("/")) for r in unaligned_requests(viewer, args.requests, seed=seed)],
            "thumbnails": [(path, url) for url in thumbnails],
        }
        if aliases:
            first = repeat * MANY_IMAGES % len(aliases)
            chosen = (aliases * 2)[first : first + min(MANY_IMAGES, len(aliases))]
            out["thumbnails of many images"] = [
                (image, f"full/{size}/0/default.jpg") for image in chosen for size in ("!200,200", ",150")
            ]
        return out

    def planned(job: tuple[Path, str]) -> tuple[Path, Any]:
        image, url = job
        region, size, rotation, quality = url.split("/")
        request = parse_image_request(region, size, rotation, quality)
        return image, plan(resolve(request, info, settings.limits), info)

    def run(plans: list[tuple[Path, Any]], stored_tiles: bool, keep: bool = True) -> tuple[float, list[bytes]]:
        # Tiles decoded for an earlier list (or way) do not count: only reuse within one list.
        tile_mosaic.decoded_tiles.clear()
        tile_mosaic.decoded_tiles.resize(tile_mosaic.DEFAULT_DECODED_BYTES if keep else 0)
        bodies = []
        started = time.process_time()
        for image, p in plans:
            bodies.append(
                # The grid the server's source registry hands the renderer (None: libvips decodes).
                render_module.render(image, info.format, p, options, versions[image], grids(image, p, stored_tiles))
            )
        return (time.process_time() - started) / len(plans) * 1000, bodies

    def pixels(body: bytes) -> Any:
        with Image.open(io.BytesIO(body)) as image:
            return np.asarray(image).astype(np.int16)

    given = argv if argv is not None else sys.argv[1:]
    # Folders are named by their option only: a machine's own paths stay out of the results.
    shown = ["DIR" if i and given[i - 1] in ("--images", "--results") else arg for i, arg in enumerate(given)]
    command = ["python", "benchmarks/region_cost.py", *shown]
    record: dict[str, Any] = results.machine(datetime.now(), " ".join(command))
    record |= {"image": IMAGE, "width": info.width, "height": info.height, "repeats": args.repeats, "lists": {}}
    rows = []
    warm = [planned(job) for jobs in lists(-1).values() for job in jobs]
    run(warm, False), run(warm, True)  # opened levels, tile indexes, the page cache
    figures: dict[str, dict[str, list[float]]] = {}
    for repeat in range(args.repeats):
        for name, jobs in lists(repeat).items():
            plans = [planned(job) for job in jobs]
            ms_before, old = run(plans, False)
            ms_uncached, _ = run(plans, True, keep=False)
            hits, misses = tile_mosaic.decoded_tiles.hits, tile_mosaic.decoded_tiles.misses
            ms_after, new = run(plans, True)
            hits, misses = tile_mosaic.decoded_tiles.hits - hits, tile_mosaic.decoded_tiles.misses - misses
            diffs = []
            for a, b in zip(old, new, strict=True):
                pa, pb = pixels(a), pixels(b)
                if pa.shape != pb.shape:
                    raise SystemExit(f"{name}: output sizes differ: {pa.shape} vs {pb.shape}")
                diffs.append(float(np.abs(pa - pb).mean()))
            got = figures.setdefault(name, {"before": [], "uncached": [], "after": [], "diff": [], "hit": [], "n": []})
            got["before"].append(ms_before)
            got["uncached"].append(ms_uncached)
            got["after"].append(ms_after)
            got["diff"].extend(diffs)
            got["hit"].append(hits / max(1, hits + misses))
            got["n"].append(len(jobs))
    for name, got in figures.items():
        before, uncached, after, diffs = got["before"], got["uncached"], got["after"], got["diff"]
        ms_before, ms_uncached, ms_after = map(statistics.median, (before, uncached, after))
        hit_rate = statistics.fmean(got["hit"])
        # Each repeat's two ways ran a few seconds apart: their ratio moves less with the load of
        # the machine than either figure does.
        ratio = statistics.median(a / b for a, b in zip(after, before, strict=True))
        record["lists"][name] = {
            "requests": int(got["n"][0]),
            "decoded_tile_hit_rate": round(statistics.fmean(got["hit"]), 3),
            "cpu_ms_before": [round(v, 3) for v in before],
            "cpu_ms_after_without_decoded_tiles": [round(v, 3) for v in uncached],
            "cpu_ms_after": [round(v, 3) for v in after],
            "median_cpu_ms_before": round(ms_before, 3),
            "median_cpu_ms_after_without_decoded_tiles": round(ms_uncached, 3),
            "median_cpu_ms_after": round(ms_after, 3),
            "median_ratio_after_before": round(ratio, 3),
            "mean_abs_diff_mean": round(statistics.fmean(diffs), 4),
            "mean_abs_diff_max": round(max(diffs), 4),
        }
        rows.append(
            f"| {name} | {int(got['n'][0])} | {ms_before:.2f} | {ms_uncached:.2f} | {ms_after:.2f} "
            f"| {ratio:.2f} | {hit_rate:.2f} | {statistics.fmean(diffs):.3f} / {max(diffs):.3f} |"
        )
        print(f"{name}: {ms_before:.2f} -> {ms_after:.2f} ms CPU per request", file=sys.stderr, flush=True)
    report = "\n".join(
        [
            f"# Region and thumbnail render cost, {record['date']}",
            "",
            f"CPU: {cpu_model()} ({record['cpus']} cores); commit {record['commit']}; image {IMAGE} "
            f"({info.width} x {info.height}, Q85); median of {args.repeats} repeats (a fresh request list each), "
            "process CPU time per request.",
            f"Decoded tiles kept: {tile_mosaic.DEFAULT_DECODED_BYTES >> 20} MB (the default), "
            "emptied before each list.",
            "",
            "| requests | n per list | before: libvips (ms) | stored tiles, no tile memory (ms) "
            "| stored tiles + decoded tiles kept (ms) | after / before (median of the repeats') | tiles found kept "
            "| pixel difference, mean / max of per-request means (levels) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Command: `{record['command']}`",
            "",
        ]
    )
    name = results.stem(datetime.now(), "region-cost")
    results.write(args.results, name, record, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
