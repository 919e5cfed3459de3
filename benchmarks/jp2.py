#!/usr/bin/env python3
"""JPEG 2000 sources: the decoder measurements, and iiifserver against iipsrv on the same JP2 files.

    python benchmarks/jp2.py make                      # the JP2 files (12000x9000), in $BENCH_ROOT/jp2
    python benchmarks/jp2.py decoders                  # decode times per file, per decoder
    python benchmarks/jp2.py serve [-d 10] [-c 8]      # iipsrv vs iiifserver, cold, per file

``make`` encodes one synthetic 12000x9000 picture (``harness.images.artwork``) with Pillow's
OpenJPEG, 7 resolutions, RPCL: lossy (9-7 wavelet, 20:1) and lossless (5-3), each 256-tiled with
and without precincts (128 x 128), and, for the decoder measurements only, lossy 1024-tiled, lossy
untiled with and without 256 precincts, lossless untiled.

``decoders``: wall time (best of 3) of the decodes a server needs: one 256 x 256 tile at reduce
0, 2 and 4 (a deep-zoom tile at scale factors 1, 4, 16), and an unaligned 1000 x 700 region at
full resolution; by ``iiifserver.image.jp2.decode`` (OpenJPEG through glymur, area and reduce),
Pillow (``reduce``, which decodes the whole level: measured at reduce 4 and 2 only, full
resolution would decode all 108 MP for one tile) and imagecodecs when it is importable (it has
neither reduce nor area: the whole image from the file's bytes, measured once on two files).
One thread each, as the server decodes.

``serve``: each of the four 256-tiled files served by iipsrv (Debian's, built with OpenJPEG,
behind lighttpd; ``harness.servers``) and by iiifserver, one after the other, each started fresh
(cold: empty caches; every URL asked once): deep-zoom tiles (OpenSeadragon's order,
``harness.load`` cold mode, each image's info.json first) and unaligned regions (random boxes 300
to 1500 px scaled to half or a quarter), c=8, ``-d`` seconds each, over ``COPIES`` distinct copies
of the file (one file's 2,258 tiles were fewer than a run asks for: the list wrapped, and the
second pass was memory-cache hits). The copies are read once before each server's run, so both
start with them in the page cache (this VM pages out what was not read for a minute). Not while
another benchmark runs (it checks for ``wrk``).
Results: ``benchmarks/results/<day>-<host>-<cpu>-jp2.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import load, servers  # noqa: E402
from benchmarks.harness.machine import cpu_model, slug  # noqa: E402

RESULTS = HERE / "results"
W, H = 12000, 9000
SERVED = ("lossy_t256", "lossy_t256_prec", "lossless_t256", "lossless_t256_prec")
FILES: dict[str, dict[str, Any]] = {
    "lossy_t256": {"irreversible": True, "tile_size": (256, 256)},
    "lossy_t256_prec": {"irreversible": True, "tile_size": (256, 256), "precinct_size": (128, 128)},
    "lossless_t256": {"tile_size": (256, 256)},
    "lossless_t256_prec": {"tile_size": (256, 256), "precinct_size": (128, 128)},
    "lossy_untiled": {"irreversible": True},
    "lossless_untiled": {},
    "lossy_untiled_prec": {"irreversible": True, "precinct_size": (256, 256)},
    "lossy_t1024": {"irreversible": True, "tile_size": (1024, 1024)},
}


def root() -> Path:
    return servers.bench_root() / "jp2"


def make(force: bool = False) -> None:
    import numpy as np
    from PIL import Image

    from benchmarks.harness.images import artwork

    out = root()
    out.mkdir(parents=True, exist_ok=True)
    pixels: Any = None
    for name, options in FILES.items():
        path = out / f"{name}.jp2"
        if path.exists() and not force:
            continue
        if pixels is None:
            started = time.perf_counter()
            pixels = np.ascontiguousarray(artwork(W, H, 1).numpy())
            print(f"picture {W}x{H} in {time.perf_counter() - started:.1f} s", flush=True)
        extra = {"quality_mode": "rates", "quality_layers": [20]} if options.get("irreversible") else {}
        tmp = path.with_suffix(".part")
        started = time.perf_counter()
        Image.fromarray(pixels, "RGB").save(tmp, "JPEG2000", num_resolutions=7, progression="RPCL", **options, **extra)
        tmp.rename(path)
        print(f"{name}: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s", flush=True)


# ---------------------------------------------------------------- decoders


def _best(fn: Any, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def _pillow_level(path: Path, reduce: int) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.reduce = reduce  # type: ignore[assignment,method-assign]
        image.load()


def measure_file(path: Path, rng: random.Random, imagecodecs: Any) -> dict[str, Any]:
    from iiifserver.image import jp2

    row: dict[str, Any] = {"file": path.stem, "MB": round(path.stat().st_size / 1e6, 1)}
    for r in (0, 2, 4):
        f = 1 << r
        x = rng.randrange(0, (W // f - 256) // 256) * 256 * f
        y = rng.randrange(0, (H // f - 256) // 256) * 256 * f
        row[f"glymur_tile_r{r}_ms"] = round(_best(partial(jp2.decode, path, r, (x, y, x + 256 * f, y + 256 * f))), 1)
    x, y = rng.randrange(0, W - 1000), rng.randrange(0, H - 700)
    row["glymur_region_1000x700_ms"] = round(_best(partial(jp2.decode, path, 0, (x, y, x + 1000, y + 700))), 1)
    for r in (4, 2):
        row[f"pillow_level_r{r}_ms"] = round(_best(partial(_pillow_level, path, r), repeat=1 if r < 3 else 3), 1)
    if imagecodecs is not None and path.stem in ("lossy_t256", "lossless_t256"):
        # no reduce, no area: every request would decode the whole image (once: it takes seconds)
        data = path.read_bytes()
        row["imagecodecs_full_ms"] = round(_best(partial(imagecodecs.jpeg2k_decode, data, numthreads=1), repeat=1), 1)
    return row


def decoders() -> dict[str, Any]:
    from iiifserver.image import jp2

    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    try:
        import imagecodecs
    except ImportError:
        imagecodecs = None
    for name in FILES:
        path = root() / f"{name}.jp2"
        if path.exists():
            rows.append(measure_file(path, rng, imagecodecs))
            print(json.dumps(rows[-1]), flush=True)
    return {"decoders": rows, "openjpeg": jp2.decoder_version()}


# ---------------------------------------------------------------- serve


COPIES = 6


def copies(name: str, count: int = COPIES) -> list[str]:
    """``count`` distinct copies of ``name``.jp2 (made once, kept while their size is the file's)."""
    source = root() / f"{name}.jp2"
    names = []
    for k in range(count):
        copy = root() / f"{name}_c{k}.jp2"
        if not copy.exists() or copy.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, copy.with_suffix(".part"))
            copy.with_suffix(".part").rename(copy)
        names.append(copy.name)
    return names


def read_once(names: list[str]) -> None:
    for name in names:
        with (root() / name).open("rb") as fh:
            while fh.read(1 << 23):
                pass


def region_urls(names: list[str], count: int, seed: int) -> str:
    """Unaligned boxes 300..1500 px, scaled to 1/2 or 1/4, over ``names``: 'path TAB width TAB height' lines."""
    rng = random.Random(seed)
    lines = []
    for k in range(count):
        name = quote(names[k % len(names)], safe="")
        w, h = rng.randrange(300, 1500), rng.randrange(300, 1500)
        x, y = rng.randrange(0, W - w), rng.randrange(0, H - h)
        f = rng.choice((2, 4))
        out_w = -(-w // f)
        out_h = max(1, round(h * out_w / w))
        lines.append(f"{name}/{x},{y},{w},{h}/{out_w},/0/default.jpg\t{out_w}\t{out_h}")
    return "\n".join(lines) + "\n"


def wrk_running() -> bool:
    out = subprocess.run(["ps", "-eo", "comm="], capture_output=True, text=True, check=False).stdout
    return any(line.strip() == "wrk" for line in out.splitlines())


def serve(duration: int, concurrency: int) -> list[dict[str, Any]]:
    if wrk_running():
        raise SystemExit("another benchmark is running (wrk): not starting")
    records: list[dict[str, Any]] = []
    images = root()
    run = servers.bench_root() / "run"
    for name in SERVED:
        names = copies(name)
        for kind in ("iipsrv", "iiifserver"):
            for workload in ("tiles", "regions"):
                server = servers.make(kind, images, run_dir=run / f"jp2-{kind}")
                read_once(names)
                base = server.start()
                try:
                    if workload == "tiles":
                        work = load.make_workload(base, "cold", names, W, H, seed=3)
                    else:
                        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                            f.write(region_urls(names, 4000, seed=5))
                        work = load.make_workload(base, "cold", urls_file=Path(f.name))
                        os.unlink(f.name)
                    record = load.run(
                        base, work, concurrency=concurrency, duration=duration, pids=server.pids,
                        label=f"{kind}:{name}:{workload}",
                    )  # fmt: skip
                finally:
                    server.stop()
                record.update(server=kind, file=name, workload=workload)
                print(load.describe(record), flush=True)
                if record.get("wraps"):
                    print(f"warning: {kind} {name} {workload}: the URL list wrapped (not cold)", flush=True)
                records.append(record)
    return records


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| file | workload | iipsrv req/s | iiifserver req/s | ratio | iipsrv p50 / p99 ms | iiifserver p50 / p99 ms "
        "| CPU ms/req iipsrv / iiifserver | errors | list wrapped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["file"], r["workload"], r["server"]): r for r in records}
    for name in SERVED:
        for workload in ("tiles", "regions"):
            a, b = by.get((name, workload, "iipsrv")), by.get((name, workload, "iiifserver"))
            if a is None or b is None:
                continue
            ratio = b["rps_ok"] / a["rps_ok"] if a["rps_ok"] else float("inf")
            lines.append(
                f"| {name} | {workload} | {a['rps_ok']:.1f} | {b['rps_ok']:.1f} | {ratio:.2f}x "
                f"| {a['p50_ms']:.0f} / {a['p99_ms']:.0f} | {b['p50_ms']:.0f} / {b['p99_ms']:.0f} "
                f"| {a['server_cpu_ms_per_req']} / {b['server_cpu_ms_per_req']} "
                f"| {a['errors'] + a.get('check_failures', 0)} / {b['errors'] + b.get('check_failures', 0)} "
                f"| {a.get('wraps', 0)} / {b.get('wraps', 0)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["make", "decoders", "serve"])
    ap.add_argument("-d", "--duration", type=int, default=10)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("--force", action="store_true", help="make: encode again")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.action == "make":
        make(a.force)
        return 0
    day = time.strftime("%Y-%m-%d")
    stem = a.results / f"{day}-{slug(platform.node())}-{slug(cpu_model())}-jp2"
    json_path = stem.with_suffix(".json")
    result: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {}
    result.update(day=day, host=platform.node(), cpu=cpu_model(), ncpu=os.cpu_count(), width=W, height=H)
    if a.action == "decoders":
        result.update(decoders())
    else:
        result["serve"] = serve(a.duration, a.concurrency)
        result["serve_settings"] = {"duration_s": a.duration, "concurrency": a.concurrency, "cold": True}
    a.results.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md = [
        f"# JPEG 2000: iiifserver and iipsrv, {result['day']}",
        "",
        f"CPU: {result['cpu']} ({result['ncpu']} cores)",
        "",
    ]
    if "decoders" in result:
        md += ["## Decode times (ms, best of 3, one thread)", "", f"OpenJPEG {result.get('openjpeg')}", ""]
        keys = sorted({k for row in result["decoders"] for k in row if k not in ("file", "MB")})
        md.append("| file | MB | " + " | ".join(keys) + " |")
        md.append("|---|---|" + "---|" * len(keys))
        for row in result["decoders"]:
            md.append(f"| {row['file']} | {row['MB']} | " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
        md.append("")
    if "serve" in result:
        s = result["serve_settings"]
        md += [f"## Served, cold, c={s['concurrency']}, {s['duration_s']} s a run", "", table(result["serve"])]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
