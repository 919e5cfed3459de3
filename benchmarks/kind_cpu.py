"""Server CPU per request of each kind of the mixed workload, iiifserver against iipsrv, served.

    python -m benchmarks.kind_cpu                              # 200 of each kind, 2 repeats (about 6 minutes)
    python -m benchmarks.kind_cpu --count 60 --repeats 1 --quick

Where the side-by-side's mixed run gives one throughput ratio, this says which kinds of request
make it: for each kind of the mixed list (``harness/mix.py``, the same seed and collection of
distinct copies under ``$BENCH_ROOT/images``), the first ``--count`` distinct URLs (a quarter of
that for the two kinds of download) are sent to a freshly started server, one kind after the
other, over ``--concurrency`` keep-alive connections, and the CPU time of all its processes
(``/proc``: every thread, the FastCGI processes and lighttpd for iipsrv) is taken before and
after each kind. No URL is asked twice, so no cache answers: this is the cost of a request
nobody asked before, the first open of its image included where it is the first request for
that image (the kinds run in the order of ``ORDER``, info.json first, as a viewer asks it). Every
response is checked (status 200, a JPEG of the size the request must produce, an info.json with a
width); a run with a wrong answer is reported as such.

Both servers are started as the side-by-side starts them (iiifserver with default settings and
``--jpeg-quality 85``; iipsrv, two FastCGI processes behind lighttpd, ``JPEG_QUALITY=85``), their
image files read once and their start-up work left to finish first (``servers.settle``). Servers
alternate within each repeat; the report gives the median over repeats and each repeat's own
ratio's median. The CPU figures depend on the CPU model, which the report names; the ratios are
what to compare across machines.

Owns: choosing the distinct URLs per kind, replaying them, the per-kind CPU and the report.
Knows the servers only through ``harness.servers`` and the list through ``harness.mix``.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from benchmarks import first_open
from benchmarks.harness import images as img
from benchmarks.harness import load, mix, results, servers

REPO = Path(__file__).resolve().parents[1]
BIG, SMALL = 176, 1000  # the side-by-side's mixed collection (20 s runs)
# info.json first, as viewers ask it; then what reads one level, then the costly kinds; the
# viewer's tiles last (their images are mostly open by then, as in a session's later requests).
ORDER = ("info", "thumb_box", "thumb_strip", "region", "download_pct50", "download_max", "viewer")
DOWNLOAD_FRACTION = 4  # downloads: count // 4 each (a 12 MP download costs 25 to 60 thumbnails)


def distinct_by_kind(
    requests: Iterable[mix.MixedRequest], count: int, kinds: Sequence[str] = ORDER
) -> dict[str, list[mix.MixedRequest]]:
    """The first ``count`` requests of each kind with a path not seen before (in any kind), in
    list order; the downloads ``count // DOWNLOAD_FRACTION`` (at least 1)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    limits = {k: max(1, count // DOWNLOAD_FRACTION) if k.startswith("download") else count for k in kinds}
    chosen: dict[str, list[mix.MixedRequest]] = {k: [] for k in kinds}
    seen: set[str] = set()
    for r in requests:
        if r.path in seen or r.kind not in chosen:
            continue
        seen.add(r.path)
        if len(chosen[r.kind]) < limits[r.kind]:
            chosen[r.kind].append(r)
    return chosen


@dataclass
class Replayed:
    """What one kind's replay got back: answers by problem (None: right), seconds of wall time."""

    problems: Counter[str | None]
    seconds: float

    @property
    def wrong(self) -> int:
        return sum(n for problem, n in self.problems.items() if problem is not None)


def replay(base: str, requests: Sequence[mix.MixedRequest], concurrency: int) -> Replayed:
    """Every request once over ``concurrency`` keep-alive connections; each answer checked."""
    split = urlsplit(base)
    if split.hostname != "127.0.0.1" or split.port is None:
        raise ValueError(f"replays go to 127.0.0.1 only, not {base}")
    prefix = split.path.rstrip("/") + "/"
    pending = iter(requests)
    lock = threading.Lock()
    problems: Counter[str | None] = Counter()

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", split.port, timeout=60)
        try:
            while True:
                with lock:
                    r = next(pending, None)
                if r is None:
                    return
                try:
                    connection.request("GET", prefix + r.path)
                    response = connection.getresponse()
                    body = response.read()
                    problem = load.check_response(r.path, response.status, body, r.width, r.height, slack=1)
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()  # a fresh connection for the next request
                    problem = f"connection: {type(exc).__name__}"
                with lock:
                    problems[problem] += 1
        finally:
            connection.close()

    began = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Replayed(problems, time.monotonic() - began)


def measure_kinds(
    base: str,
    chosen: Mapping[str, Sequence[mix.MixedRequest]],
    cpu_seconds: Callable[[], float],
    concurrency: int,
) -> dict[str, dict[str, Any]]:
    """Per kind, in ``chosen``'s order: requests, server CPU ms and wall ms per request, wrong answers."""
    out: dict[str, dict[str, Any]] = {}
    for kind, requests in chosen.items():
        if not requests:
            continue
        before = cpu_seconds()
        replayed = replay(base, requests, concurrency)
        spent = cpu_seconds() - before
        n = len(requests)
        out[kind] = {
            "requests": n,
            "cpu_ms": 1000 * spent / n,
            "wall_ms": 1000 * replayed.seconds / n,
            "wrong": replayed.wrong,
            "problems": {str(p): c for p, c in replayed.problems.items() if p is not None},
        }
    return out


def weighted(cpu_ms: Mapping[str, float], shares: Mapping[str, float] = mix.SHARES) -> float | None:
    """The mean CPU per request of the mix's shares, had no request repeated (None: a kind missing)."""
    if any(kind not in cpu_ms for kind in shares):
        return None
    return sum(shares[k] * cpu_ms[k] for k in shares) / sum(shares.values())


def mix_of(run: Mapping[str, Mapping[str, Any]]) -> float | None:
    """``weighted`` of one measured run (``measure_kinds``' record)."""
    return weighted({kind: found["cpu_ms"] for kind, found in run.items()})


def summarise(runs: Mapping[str, Sequence[Mapping[str, Mapping[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per server and kind: the median, min and max CPU ms over repeats, and wrong answers in all."""
    out: dict[str, dict[str, Any]] = {}
    for server, repeats in runs.items():
        kinds: dict[str, Any] = {}
        for kind in ORDER:
            values = [run[kind]["cpu_ms"] for run in repeats if kind in run]
            if values:
                kinds[kind] = {
                    "requests": repeats[0][kind]["requests"],
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "wrong": sum(run[kind]["wrong"] for run in repeats if kind in run),
                }
        each = [mix_of(run) for run in repeats]
        mixes = [v for v in each if v is not None]
        if mixes:
            kinds["mix"] = {"median": statistics.median(mixes), "min": min(mixes), "max": max(mixes)}
        out[server] = kinds
    return out


def ratios(runs: Mapping[str, Sequence[Mapping[str, Mapping[str, Any]]]], ours: str, peer: str) -> dict[str, float]:
    """Per kind, the median over repeats of each repeat's own peer / ours CPU ratio (> 1: ours cheaper)."""
    out: dict[str, float] = {}
    if ours not in runs or peer not in runs:
        return out
    pairs = list(zip(runs[ours], runs[peer], strict=False))
    for kind in [*ORDER, "mix"]:
        values = []
        for a, b in pairs:
            if kind == "mix":
                mine, theirs = mix_of(a), mix_of(b)
            else:
                mine = a[kind]["cpu_ms"] if kind in a else None
                theirs = b[kind]["cpu_ms"] if kind in b else None
            if mine and theirs:
                values.append(theirs / mine)
        if values:
            out[kind] = statistics.median(values)
    return out


def report(record: Mapping[str, Any]) -> str:
    m = record["machine"]
    names = list(record["summary"])
    rat = record.get("ratios") or {}
    lines = [
        *results.heading(f"CPU per request of each kind, served: {' against '.join(names)}", m),
        f"The first {record['count']} distinct URLs of each kind of the side-by-side's mixed list "
        f"(seed {record['seed']}; downloads {max(1, record['count'] // DOWNLOAD_FRACTION)} each) over "
        f"{mix.collection_words(record['big'], record['small'])}, sent once each to a freshly started server "
        f"over {record['concurrency']} connections, "
        "kinds in the order below; CPU time of all the server's processes per request, ms, median of "
        f"{record['repeats']} repeats (min-max). No URL repeats, so no cache answers.",
        "",
        *results.table_head(["kind", "share of the mix", *names, *(["peer / ours"] if rat else [])]),
    ]
    for kind in [*ORDER, "mix"]:
        cells = []
        for name in names:
            v = record["summary"][name].get(kind)
            wrong = f"; {v['wrong']} wrong" if v and v.get("wrong") else ""
            cells.append("-" if v is None else f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}{wrong})")
        share = "weighted" if kind == "mix" else f"{100 * mix.SHARES[kind]:g} %"
        ratio = f" | {rat[kind]:.2f}x |" if kind in rat else (" | - |" if rat else " |")
        lines.append(f"| {kind} | {share} | " + " | ".join(cells) + ratio)
    lines += [
        "",
        "`mix`: the kinds' CPU weighted by their shares of the mixed list, as if no request repeated "
        "(in the mixed run about half the thumbnails and most tiles of a revisited image repeat, which "
        "iiifserver answers from its caches and iipsrv without memcached renders again). `peer / ours`: "
        "the median of each repeat's own ratio; above 1 iiifserver spends less CPU.",
        "",
        f"Command: `{m['command']}`",
        "",
    ]
    return "\n".join(lines)


def _cpu_of(server: servers.Server) -> float:
    return servers.cpu_seconds(server.pids())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="distinct URLs of each kind (downloads a quarter)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="connections (one per core keeps both busy)")
    parser.add_argument("--configs", default="iiifserver,iipsrv", help="servers, ours first (harness/servers.py)")
    parser.add_argument("--big", type=int, default=BIG)
    parser.add_argument("--small", type=int, default=SMALL)
    parser.add_argument("--seed", default="1", help="the mixed list's seed (the side-by-side's default: 1)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: results named -quick")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    images = servers.bench_root() / "images"
    missing = [
        f"{size}: {have} of {want}"
        for size, want in (("big", args.big), ("small", args.small))
        if (have := img.count_copies(images, size, 85)) < want
    ]
    if missing:  # the side-by-side makes them (``--only mixed``), as does ``harness/images.py``
        parser.error(f"too few copies under {images} ({', '.join(missing)}): make them with harness/images.py")
    collection = mix.collection(img.alias_names("big", 85, args.big), img.alias_names("small", 85, args.small))
    listed = mix.mixed_requests(collection, 100_000, args.seed)
    chosen = distinct_by_kind(listed, args.count)
    ids = sorted({r.path.split("/", 1)[0] for found in chosen.values() for r in found})
    now = datetime.now(UTC)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for repeat in range(args.repeats):
        for config in configs if repeat % 2 == 0 else configs[::-1]:
            server = servers.make(config, images, jpeg_quality=85, args=["--jpeg-quality", "85"])
            try:
                server.stop()
                server.start()
                img.read_once(images, [unquote(i) for i in ids])
                servers.settle(server.pids)
                spent = functools.partial(_cpu_of, server)
                found = measure_kinds(server.base, chosen, spent, args.concurrency)
            finally:
                server.stop()
            runs[config].append(found)
            shown = ", ".join(f"{k} {v['cpu_ms']:.2f}" for k, v in found.items())
            print(f"repeat {repeat + 1} {config}: {shown}", flush=True)
    shown = first_open._without_paths(list(argv) if argv is not None else sys.argv[1:])  # no machine paths
    command = " ".join(["python -m benchmarks.kind_cpu", *shown])
    record: dict[str, Any] = {
        "machine": results.machine(now, command),
        "count": args.count,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "big": args.big,
        "small": args.small,
        "seed": args.seed,
        "runs": runs,
        "summary": summarise(runs),
        "ratios": ratios(runs, configs[0], configs[1]) if len(configs) > 1 else {},
    }
    results.write(Path(args.results), results.stem(now, "kind-cpu", quick=args.quick), record, report(record))
    wrong = sum(v.get("wrong", 0) for s in record["summary"].values() for v in s.values())
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
