"""Latency of the mixed workload per kind, and the server's peak memory, over a fixed number of requests.

    python -m benchmarks.harness.kind_latency -c 64 -n 8000                       # this checkout's defaults
    python -m benchmarks.harness.kind_latency -c 8 -n 3000 -- --heavy-threads 2   # with serve flags
    python -m benchmarks.harness.kind_latency -c 64 -n 8000 --tree DIR            # iiifserver/ from DIR

What ``side_by_side.py --only mixed`` cannot say: which kinds make the p99. Starts iiifserver as
the side-by-side does (``harness.servers``: 2 workers, ``--jpeg-quality 85``, empty caches), reads
the list's image files once (this VM pages out what was not read for a minute), then replays the
first ``-n`` requests of the mixed list (``harness.mix``, the side-by-side's collection and seed)
over ``-c`` keep-alive connections of a small asyncio HTTP/1.1 client, and prints p50/p90/p99 per
kind, which kinds the slowest 1 % are, and the peak of the summed RSS (and anonymous memory) of
all server processes, sampled four times a second. A fixed number of requests, not a duration: the
memory a run reaches depends on the work served, so runs slowed by other work on a shared machine
still compare. The client is Python and shares the cores: compare runs with each other, not with
wrk's figures. ``--tree DIR`` puts ``DIR`` first on the server's ``PYTHONPATH`` (``git archive REV
iiifserver | tar -x -C DIR``: another commit's code under this checkout's environment).

Owns the per-kind latency replay and its summary; knows the server only through ``harness.servers``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote

from benchmarks.harness import images as img
from benchmarks.harness import mix, servers
from benchmarks.harness.load import quantile  # nearest rank below, as the side-by-side's tables

BIG, SMALL = 176, 1000  # the side-by-side's mixed collection


def summary(latencies: Mapping[str, Sequence[float]]) -> str:
    """Per kind: count, p50, p90, p99, max (ms); then which kinds the slowest 1 % of all requests are."""
    every = [v for values in latencies.values() for v in values]
    cut = quantile(every, 0.99)
    lines = [f"all: {len(every)} requests, p50 {quantile(every, 0.5):.1f} ms, p99 {cut:.1f} ms"]
    for kind in sorted(latencies):
        v = latencies[kind]
        lines.append(
            f"  {kind:16s} n={len(v):6d} p50 {quantile(v, 0.5):8.1f} p90 {quantile(v, 0.9):8.1f} "
            f"p99 {quantile(v, 0.99):8.1f} max {max(v):8.1f}"
        )
    slowest = {k: n for k, v in sorted(latencies.items()) if (n := sum(x >= cut for x in v))}
    lines.append(f"  slowest 1 % by kind: {slowest}")
    return "\n".join(lines)


async def _replay(port: int, requests: Iterator[mix.MixedRequest], latencies: dict[str, list[float]]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for r in requests:
            t0 = time.monotonic()
            writer.write(f"GET /iiif/3/{r.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            kind = r.kind if head.split(b" ")[1] == b"200" else f"{r.kind} (HTTP {head.split(b' ')[1].decode()})"
            latencies.setdefault(kind, []).append((time.monotonic() - t0) * 1000)
    finally:
        writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", type=int, default=64, help="connections")
    ap.add_argument("-n", type=int, default=8000, help="requests: the first n of the mixed list")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--tree", type=Path, help="a folder holding another iiifserver/ to serve with")
    ap.add_argument("serve", nargs="*", help="extra flags for iiifserver serve (after --)")
    a = ap.parse_args(argv)
    images = servers.bench_root() / "images"
    collection = mix.collection(img.alias_names("big", 85, BIG), img.alias_names("small", 85, SMALL))
    requests = mix.mixed_requests(collection, a.n, a.seed)
    if a.tree:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(a.tree.resolve()), os.environ.get("PYTHONPATH", "")])
    server = servers.make("iiifserver", images, jpeg_quality=85, args=["--jpeg-quality", "85", *a.serve])
    server.stop()
    server.start()
    peak = [0, 0]  # summed RSS, summed anonymous memory (MB)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total = [0, 0]
            for pid in server.pids():
                try:
                    with open(f"/proc/{pid}/smaps_rollup") as fh:
                        fields = {ln.split(":")[0]: int(ln.split()[1]) for ln in fh if ln.rstrip().endswith("kB")}
                except OSError:
                    continue
                total[0] += fields.get("Rss", 0) // 1024
                total[1] += fields.get("Anonymous", 0) // 1024
            peak[:] = [max(peak[0], total[0]), max(peak[1], total[1])]
            done.wait(0.25)

    latencies: dict[str, list[float]] = {}
    sampler = threading.Thread(target=sample)
    try:
        img.read_once(images, sorted({unquote(r.path.split("/", 1)[0]) for r in requests}))
        time.sleep(1)
        sampler.start()
        shared = iter(requests)  # every connection takes the next request of one list

        async def run() -> None:
            await asyncio.gather(*(_replay(server.port, shared, latencies) for _ in range(a.c)))

        t0 = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - t0
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join()
        server.stop()
    served = sum(len(v) for v in latencies.values())
    print(f"c={a.c} n={a.n} serve {' '.join(a.serve) or '(defaults)'}{' tree ' + str(a.tree) if a.tree else ''}")
    print(f"{served / elapsed:.0f} req/s; peak RSS of all server processes {peak[0]} MB (anonymous {peak[1]} MB)")
    print(summary(latencies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
