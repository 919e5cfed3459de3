"""Memory and speed of in-process renders: the renderer as the server's render threads use it.

    python -m benchmarks.harness.render_memory --images DIR --threads 8 --seconds 60 --kind regions

Renders random requests (``regions``: unaligned regions of ``viewer_sessions.unaligned_requests``;
``tiles``: small 256-pixel tiles off the stored grid) of every ``*.tif`` in DIR in N threads,
through ``iiifserver.image.render.render`` with a source version, so each thread keeps its opened
levels exactly as a server's render thread does. Prints the process RSS every few seconds, renders
per second and the growth of RSS over the second half of the run. ``--opened-bytes``,
``--opened-count`` and the ``--vips-*`` options change the caches being measured.
No server, no network; bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.viewer_sessions import unaligned_requests
from iiifserver.config import Settings
from iiifserver.image import probe
from iiifserver.image.planner import plan, resolve
from iiifserver.image.render import EncodeOptions, render
from iiifserver.image.request import parse_image_request
from iiifserver.image.source_info import SourceInfo, SourceVersion


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process in MB (Linux ``/proc``)."""
    with open(f"/proc/{pid or 'self'}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _info_json(info: SourceInfo) -> dict[str, Any]:
    scales = [info.width // lv.width if lv.width else 1 for lv in info.levels]
    return {
        "type": "ImageService3",
        "width": info.width,
        "height": info.height,
        "tiles": [{"width": info.tile_width or 256, "height": info.tile_height or 256, "scaleFactors": scales}],
    }


def _requests(info: SourceInfo, kind: str, n: int, seed: int) -> list[str]:
    """``region/size/rotation/quality.format`` strings."""
    if kind == "regions":
        return [r.url.lstrip("/") for r in unaligned_requests(_info_json(info), n, seed=seed)]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, y = rng.randrange(0, max(1, info.width - 256)), rng.randrange(0, max(1, info.height - 256))
        out.append(f"{x},{y},256,256/256,/0/default.jpg")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="folder of pyramidal TIFFs (*.tif)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kind", choices=("regions", "tiles"), default="regions")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--opened-count", type=int, help="opened levels kept per thread (count bound)")
    ap.add_argument("--opened-bytes", type=int, help="opened-level budget per thread, bytes")
    ap.add_argument("--vips-cache-max", type=int, help="pyvips.cache_set_max (the server sets 0)")
    ap.add_argument("--vips-cache-max-mem", type=int, help="pyvips.cache_set_max_mem, bytes")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)

    import pyvips

    probe.configure_libvips()
    if args.vips_cache_max is not None:
        pyvips.cache_set_max(args.vips_cache_max)
    if args.vips_cache_max_mem is not None:
        pyvips.cache_set_max_mem(args.vips_cache_max_mem)
    if args.opened_count is not None or args.opened_bytes is not None:
        probe.set_opened_budget(count=args.opened_count, nbytes=args.opened_bytes)

    settings = Settings()
    sources: list[tuple[Path, SourceInfo, SourceVersion, list[str]]] = []
    for path in sorted(args.images.glob("*.tif")):
        info = probe.probe(path, plain_max_pixels=settings.plain_max_pixels, max_source_pixels=10**10)
        st = path.stat()
        version = SourceVersion.of(st)
        reqs = _requests(info, args.kind, 2000, seed=len(sources))
        sources.append((path, info, version, reqs))
    if not sources:
        print(f"no *.tif in {args.images}", file=sys.stderr)
        return 2
    options = EncodeOptions()
    stop = threading.Event()
    counts = [0] * args.threads

    def work(i: int) -> None:
        rng = random.Random(i)
        while not stop.is_set():
            path, info, version, reqs = rng.choice(sources)
            region, size, rotation, qf = rng.choice(reqs).split("/")
            request = parse_image_request(region, size, rotation, qf)
            p = plan(resolve(request, info, settings.limits), info)
            render(path, info.format, p, options, version)
            counts[i] += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(args.threads)]
    t0 = time.monotonic()
    start_rss = rss_mb()
    for t in threads:
        t.start()
    samples: list[tuple[float, float, int]] = [(0.0, start_rss, 0)]
    while (elapsed := time.monotonic() - t0) < args.seconds:
        time.sleep(min(args.sample, args.seconds - elapsed))
        samples.append((round(time.monotonic() - t0, 1), round(rss_mb(), 1), sum(counts)))
        print(f"{samples[-1][0]:7.1f} s  RSS {samples[-1][1]:8.1f} MB  renders {samples[-1][2]}", flush=True)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    half = [s for s in samples if s[0] >= args.seconds / 2]
    growth = (half[-1][1] - half[0][1]) / half[0][1] * 100 if len(half) >= 2 else 0.0
    result = {
        "kind": args.kind,
        "threads": args.threads,
        "images": len(sources),
        "seconds": round(elapsed, 1),
        "renders": sum(counts),
        "renders_per_s": round(sum(counts) / elapsed, 1),
        "rss_start_mb": round(start_rss, 1),
        "rss_end_mb": samples[-1][1],
        "rss_max_mb": max(s[1] for s in samples),
        "growth_second_half_pct": round(growth, 1),
        "opened_count": args.opened_count,
        "opened_bytes": args.opened_bytes,
        "samples": samples,
        "pid": os.getpid(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
