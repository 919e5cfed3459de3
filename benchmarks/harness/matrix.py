"""The run matrix: for each server configuration, cold and hot tile runs at several concurrencies,
repeated, plus an info.json run; one JSON line per run appended to ``--out``.

    python -m benchmarks.harness.matrix --configs iiifserver iipsrv --image big --quality 85 \\
        --conc 8 --repeats 1 -d 10 --info --out runs.jsonl [--checkout DIR] [--serve-arg=--jpeg-quality=85]

Before every cold run the server is restarted (its caches, and memcached, start empty;
iiifserver's cache folder is emptied); every cold run gets the same identifiers, the first
aliases ``<stem>_NN.tif`` of ``images.py`` (real copies for the 12000x9000 pyramids), enough
for ``--min-cold-urls`` distinct URLs and at least ``--min-ids``. Labels are
``<config>/<image>/r<repeat>``, image being the file stem without ``artwork_`` (``big``,
``big-q85``, ``giga-q85``). Owns the order of runs and the identifiers
each gets; servers come from ``servers.py``, load from ``load.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import images as img
from benchmarks.harness import load, servers

CONFIGS = (*servers.IIIFSERVER_CONFIGS, "iipsrv", "iipsrv-memcached")


def label_image(size: str, quality: int) -> str:
    return img.stem(size, quality).removeprefix("artwork_").replace("_", "-")


@dataclass
class AliasPool:
    """The identifiers of every cold run: the first ``per_run`` aliases, the same for every run.

    Each cold run starts a fresh server with empty caches (and memcached), so reusing the files is
    cold for the server; real copies then stay in the page cache between runs, as a served
    collection's hot files do. Fewer aliases than wanted: all of them, with a warning.
    """

    size: str
    quality: int
    available: int
    per_run: int
    log: Callable[[str], None] = print
    warned: bool = False

    def take(self, config: str) -> list[str]:
        if not self.available:
            self.log(f"# warning: no aliases of {img.stem(self.size, self.quality)}: cold runs share one identifier")
            return [f"{img.stem(self.size, self.quality)}.tif"]
        n = min(self.per_run, self.available)
        if n < self.per_run and not self.warned:
            self.log(f"# warning: {n} aliases for cold runs that want {self.per_run}: they may run out (make more)")
            self.warned = True
        return img.alias_names(self.size, self.quality, n)


def _one(
    server: servers.Server,
    label: str,
    mode: str,
    ids: list[str],
    c: int,
    d: int,
    check: int,
    size: tuple[int, int],
    out: Path,
    log: Callable[[str], None],
) -> None:
    """One load run against a running server, appended to out."""
    work = load.make_workload(server.base, mode, ids, *size)
    record = load.run(server.base, work, concurrency=c, duration=d, pids=server.pids, label=label, check=check)
    load.append_jsonl(out, record)
    log(load.describe(record))


def run_matrix(
    configs: Sequence[str],
    image_dir: Path,
    out: Path,
    *,
    size: str = "big",
    quality: int = 90,
    modes: Sequence[str] = ("cold", "hot"),
    conc: Sequence[int] = (1, 8, 64),
    repeats: int = 2,
    duration: int = 20,
    info: bool = False,
    min_cold_urls: int = 60_000,
    min_ids: int = 1,
    checkout: Path = servers.REPO,
    serve_args: Sequence[str] = (),
    baseline_checkout: Path | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Run the matrix; every server it starts is stopped before it returns (also on error or Ctrl-C)."""
    width, height = img.SIZES[size]
    if not (image_dir / f"{img.stem(size, quality)}.tif").exists():
        raise FileNotFoundError(f"{image_dir / img.stem(size, quality)}.tif: make it with benchmarks.harness.images")
    per_id = load.pyramid(width, height).n_tiles()
    per_run = max(min_ids, -(-min_cold_urls // per_id))
    pool = AliasPool(size, quality, img.count_aliases(image_dir, size, quality), per_run, log)
    log(
        f"# {img.stem(size, quality)}: {per_id} tiles per identifier, {pool.per_run} per cold run, "
        f"{pool.available} aliases"
    )
    tag = label_image(size, quality)
    for rep in range(1, repeats + 1):
        for config in configs:
            server = servers.make(
                config, image_dir, jpeg_quality=quality, checkout=checkout, args=serve_args,
                baseline_checkout=baseline_checkout,
            )  # fmt: skip
            label = f"{config}/{tag}/r{rep}"

            try:
                for mode in modes:
                    for c in conc:
                        if mode == "cold" or not server.pids():
                            server.stop()
                            server.start()
                            time.sleep(1)
                        ids = pool.take(config) if mode == "cold" else [f"{img.stem(size, quality)}.tif"]
                        img.read_once(image_dir, ids)  # every server starts with its files in the page cache
                        _one(server, label, mode, ids, c, duration, 10, (width, height), out, log)
                if info:
                    if not server.pids():
                        server.start()
                        time.sleep(1)
                    ids = img.alias_names(size, quality, min(20, pool.available)) or [f"{img.stem(size, quality)}.tif"]
                    _one(server, label, "info", ids, 8, min(duration, 10), 5, (width, height), out, log)
            except RuntimeError as e:  # a server that does not start: say so, go on with the next
                log(f"# {config}: {e}")
            finally:
                server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", choices=CONFIGS, default=["iiifserver", "iipsrv"])
    ap.add_argument("--image", choices=sorted(img.SIZES), default="big")
    ap.add_argument("--quality", type=int, default=90, help="which pyramid (its stored quality) and the output quality")
    ap.add_argument("--modes", nargs="+", choices=["cold", "hot"], default=["cold", "hot"])
    ap.add_argument("--conc", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("-d", "--duration", type=int, default=20)
    ap.add_argument("--info", action="store_true", help="also an info.json run (c=8) per config and repeat")
    ap.add_argument("--min-cold-urls", type=int, default=60_000, help="distinct URLs per cold run")
    ap.add_argument("--min-ids", type=int, default=1, help="distinct identifiers (files) per cold run, at least")
    ap.add_argument("--images", type=Path, default=servers.bench_root() / "images")
    ap.add_argument("--checkout", type=Path, default=servers.REPO, help="iiifserver checkout holding .venv")
    ap.add_argument("--baseline-checkout", type=Path, help="the checkout of the iiifserver-baseline config")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra iiifserver serve argument (repeatable)")
    ap.add_argument("--out", type=Path, default=servers.bench_root() / "results" / "runs.jsonl")
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    run_matrix(
        a.configs, a.images, a.out, size=a.image, quality=a.quality, modes=a.modes, conc=a.conc,
        repeats=a.repeats, duration=a.duration, info=a.info, min_cold_urls=a.min_cold_urls, min_ids=a.min_ids,
        checkout=a.checkout, serve_args=a.serve_arg, baseline_checkout=a.baseline_checkout,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
