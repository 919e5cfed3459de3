#!/usr/bin/env python3
"""CPU per request of the hot path, in process: a repeated tile answered inside the HTTP protocol.

    python benchmarks/protocol_cost.py                                  # this checkout, metrics on and off
    python benchmarks/protocol_cost.py --checkout ../baseline --label before   # and another commit

What the side-by-side benchmark measures through sockets, wrk and the scheduler (two thirds of
a memo hit's cost is the kernel's, and throughput varies by 15 % between runs on a shared
machine), this measures alone: the microseconds of Python one request costs from the bytes
received to the response handed to the transport, in the real app (``create_app``) with its
memo warm, over a transport that only counts bytes. Process CPU time, best of five rounds, so
other load on the machine barely moves it: a change of a tenth of a microsecond shows. Use it
for before/after work on the protocol, the fast path and the request observers (metrics, access
log); the side-by-side run stays the measure against peers.

Each checkout runs in its own ``.venv`` (``scripts/install.sh``), as a child process running
this file; configurations: ``default`` and ``no-metrics`` (``metrics = false``). The image is
the side-by-side benchmark's Q85 pyramid (``$BENCH_ROOT/images``; made by
``benchmarks.harness.images`` when missing).
Results: ``benchmarks/results/<day>-<host>-<cpu>-protocol-cost[-label].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIGS = {"default": {}, "no-metrics": {"metrics": False}}
IMAGE = "artwork_big_q85.tif"


class CountingTransport:
    """Stands in for a socket: counts what is written, never blocks."""

    def __init__(self) -> None:
        self.written = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.written += len(chunk)

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True


def requests(image: str = IMAGE, n: int = 8) -> list[bytes]:
    """Tiles of the top row of the full-resolution level, as wrk sends them."""
    return [
        b"GET /iiif/3/%s/%d,0,256,256/256,/0/default.jpg HTTP/1.1\r\nHost: 127.0.0.1:8083\r\nUser-Agent: wrk\r\n\r\n"
        % (image.encode(), col * 256)
        for col in range(n)
    ]


def cold_requests(images: Path, count: int, image: str = IMAGE) -> list[bytes]:
    """``count`` distinct full-resolution tiles over the image's aliases, each alias's info.json first.

    What a cold side-by-side run leaves behind (registries, memo and memory tier at their
    bounds, many identifiers seen) is what the hot figure after it pays for.
    """
    stem = image.removesuffix(".tif")
    aliases = sorted(p.name for p in images.glob(f"{stem}_[0-9]*.tif"))
    if not aliases:
        raise SystemExit(f"no aliases {stem}_NN.tif in {images}: make them with benchmarks.harness.images --aliases")
    head = b" HTTP/1.1\r\nHost: 127.0.0.1:8083\r\nUser-Agent: wrk\r\n\r\n"
    out: list[bytes] = []
    for alias in aliases:
        out.append(b"GET /iiif/3/%s/info.json" % alias.encode() + head)
        for row in range(35):
            for col in range(46):
                region = b"%d,%d,256,256" % (col * 256, row * 256)
                out.append(b"GET /iiif/3/%s/%s/256,/0/default.jpg" % (alias.encode(), region) + head)
                if len(out) >= count:
                    return out
    return out


async def answer_each(protocol: Any, batch: list[bytes]) -> None:
    """Sends each request and waits until its response is complete (one connection, in order)."""
    for request in batch:
        protocol.data_received(request)
        for _ in range(5000):
            cycle = protocol.cycle
            if cycle is None or cycle.response_complete:
                break
            await asyncio.sleep(0.0005)


async def measure(
    images: Path, overrides: dict[str, Any], per_round: int, rounds: int, image: str = IMAGE, cold_first: int = 0
) -> dict[str, Any]:
    """In the checkout whose interpreter runs this: microseconds of CPU per request."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from iiifserver import app as app_module
    from iiifserver.config import Settings
    from iiifserver.web.http_protocol import HttpProtocol

    cache = Path(tempfile.mkdtemp(prefix="protocol-cost-"))
    fields = {"images": images, "cache": cache, "jpeg_quality": 85, **overrides}
    known = set(getattr(Settings, "__dataclass_fields__", fields))
    skipped = sorted(k for k in fields if k not in known)  # an older checkout without the setting
    settings = Settings(**{k: v for k, v in fields.items() if k in known})
    app = app_module.create_app(settings)
    gc.collect()  # as ``app.worker_app`` leaves a worker: start-up objects frozen, young collections rarer
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    async with app.router.lifespan_context(app):
        config = Config(app=app, log_config=None, proxy_headers=False, lifespan="off", access_log=False)
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Sun, 06 Dec 2026 19:00:00 GMT"), (b"server", b"uvicorn")]
        protocol = HttpProtocol(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
        transport = CountingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        batch = requests(image)
        cold_started = time.process_time()
        await answer_each(protocol, cold_requests(images, cold_first, image) if cold_first else [])
        cold_cpu_s = time.process_time() - cold_started
        for _ in range(3):  # the first asks go through the app and fill the memo
            await answer_each(protocol, batch)
        before = transport.written
        protocol.data_received(batch[0])
        if transport.written - before < 1000:
            raise RuntimeError("a repeated tile was not answered inside the protocol")
        per_request = []
        for _ in range(rounds):
            started = time.process_time()
            for i in range(per_round):
                protocol.data_received(batch[i & 7])
            per_request.append((time.process_time() - started) / per_round * 1e6)
        if transport.closing:
            raise RuntimeError("the connection was closed during the run")
    rounds_us = [round(v, 2) for v in per_request]
    return {"us_per_request": min(rounds_us), "rounds_us": rounds_us, "skipped": skipped, "cold_cpu_s": cold_cpu_s}


def child(args: argparse.Namespace) -> int:
    overrides = json.loads(args.overrides)
    result = asyncio.run(measure(args.images, overrides, args.per_round, args.rounds, cold_first=args.cold_first))
    print(json.dumps(result))
    return 0


def run_checkout(
    checkout: Path, config: str, images: Path, per_round: int, rounds: int, cold_first: int = 0
) -> dict[str, Any]:
    python = checkout / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no {python}: install that checkout first (scripts/install.sh)")
    cmd = [
        str(python), str(Path(__file__).resolve()), "--child", "--images", str(images),
        "--overrides", json.dumps(CONFIGS[config]), "--per-round", str(per_round), "--rounds", str(rounds),
        "--cold-first", str(cold_first),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # this process's own metrics, in memory
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{checkout} ({config}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def version(checkout: Path) -> str:
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(checkout), "diff", "--quiet", "HEAD", "--", "iiifserver"], check=False)
    return out.stdout.strip() + ("+changes" if dirty.returncode else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", type=Path, action="append", default=[], help="another checkout (repeatable)")
    ap.add_argument("--images", type=Path, help="folder with the Q85 pyramid (default $BENCH_ROOT/images)")
    ap.add_argument("--per-round", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="runs of every (checkout, configuration), interleaved")
    ap.add_argument("--cold-first", type=int, default=0, metavar="N",
                    help="answer N distinct cold tiles over the image's aliases before measuring, "
                    "as a cold side-by-side run does before the hot one")  # fmt: skip
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--label", default="")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    sys.path.insert(0, str(REPO))
    from benchmarks.harness import servers
    from benchmarks.harness.machine import cpu_model, slug

    images = args.images or servers.bench_root() / "images"
    if not (images / IMAGE).exists():
        subprocess.run([sys.executable, "-m", "benchmarks.harness.images", "--out", str(images), "--size", "big",
                        "--quality", "85", "--aliases", "0"], cwd=REPO, check=True)  # fmt: skip
    checkouts = [REPO, *(c.resolve() for c in args.checkout)]
    figures: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for checkout in checkouts:
            for config in args.configs.split(","):
                name = f"{version(checkout)} {config}"
                result = run_checkout(checkout, config, images, args.per_round, args.rounds, args.cold_first)
                if result["skipped"]:
                    continue  # an older checkout without the setting: its default is that case
                figures.setdefault(name, []).append(result["us_per_request"])
                print(f"{name}: {result['us_per_request']} us/request", file=sys.stderr, flush=True)
    rows = {name: round(statistics.median(values), 2) for name, values in figures.items()}
    day = time.strftime("%Y-%m-%d")
    stem = f"{day}-{slug(socket.gethostname())}-{slug(cpu_model())}-protocol-cost"
    stem += f"-{args.label}" if args.label else ""
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{stem}.json"
    command = ["python", "benchmarks/protocol_cost.py", *(argv if argv is not None else sys.argv[1:])]
    record = {
        "cpu": cpu_model(), "ncpu": os.cpu_count(), "host": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(command),
        "median_us_per_request": rows, "runs_us": figures,
    }  # fmt: skip
    out.write_text(json.dumps(record, indent=1) + "\n")
    for name, value in rows.items():
        print(f"{name:40s} {value:6.2f} us/request")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
