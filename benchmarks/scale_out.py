"""Scale-out: one, two and three iiifserver instances behind nginx, sharing one Redis.

    .venv/bin/python benchmarks/scale_out.py [--seconds 8] [--clients 8] [--out benchmarks/results]

Everything runs on this machine on loopback ports (nginx, redis-server and the instances are
started here and stopped by their PIDs), so the instances share its cores: the figures say what
the shared tier and the proxy cost, not how far more machines would go. Reported per instance
count: requests per second of a viewer-like workload through nginx, server CPU per request
(the instances' user+system time over the run), nginx's share of the CPU used; and the shared
tier's latency: the same region asked of instance B after instance A rendered it (a shared hit)
against a render of it.

The ``Cluster`` here is also what ``tests/e2e/test_scale_out.py`` runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness.machine import cpu_model  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

NGINX_DIR = REPO / "deploy" / "nginx"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
PREFIX = "/images"  # where deploy/nginx/iiifserver.conf publishes the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_images(root: Path, count: int = 2, width: int = 2048, height: int = 1536) -> list[str]:
    """Tiled JPEG pyramids ``img0.tif``...; returns their identifiers."""
    import pyvips

    root.mkdir(parents=True, exist_ok=True)
    names = []
    for n in range(count):
        base = pyvips.Image.perlin(width, height, cell_size=64, seed=n + 1, uchar=True)
        rgb = base.bandjoin([base.rot180(), base.fliphor()]).copy(interpretation="srgb")
        path = root / f"img{n}.tif"
        if not path.exists():
            rgb.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=85)
        names.append(f"img{n}")
    return names


FAIL_TIMEOUT = 2  # seconds nginx leaves a failed upstream alone (the deploy recipe says 10)


@dataclass
class Instance:
    port: int
    cache: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    # Two workers: with one, ``serve`` runs the app in its own process, where /metrics (as of
    # this writing) reads the multiprocess files no value was written to, and shows nothing.
    workers: int = 2

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, images: Path, manifests: Path, shared_url: str, wait: bool = True) -> None:
        exe = Path(sys.executable).parent / "iiifserver"
        cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        cmd += ["--images", str(images), "--manifests", str(manifests), "--cache", str(self.cache)]
        cmd += ["--shared-cache-url", shared_url, "--trusted-proxies", "127.0.0.1", "--log-level", "warning"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance on {self.port} exited:\n{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"instance on {self.port} not ready within {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """``sig`` to the instance's process group (its own session: the group id is its PID)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        return _tree_cpu(self.proc.pid) if self.proc is not None else 0.0


@dataclass
class Cluster:
    """redis-server, ``n`` instances (own disk caches, one Redis) and nginx in front, all on loopback."""

    root: Path
    n: int = 3
    images: Path = field(init=False)
    manifests: Path = field(init=False)
    identifiers: list[str] = field(default_factory=list)
    redis: RedisServer | None = None
    instances: list[Instance] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    nginx_port: int = 0

    def __post_init__(self) -> None:
        self.images = self.root / "images"
        self.manifests = self.root / "manifests"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}{PREFIX}"

    def start(self) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed")
        self.identifiers = make_images(self.images)
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.root / "redis")
        self.redis.start()
        try:
            for i in range(self.n):
                instance = Instance(free_port(), self.root / f"cache{i}", self.root / f"instance{i}.log")
                self.instances.append(instance)
                instance.start(self.images, self.manifests, self.redis.url, wait=False)
            for instance in self.instances:
                instance.wait_ready()
            self._start_nginx()
        except BaseException:
            self.stop()
            raise

    def replace(self, index: int, sig: int = signal.SIGTERM) -> None:
        """Stop instance ``index`` with ``sig`` and start its replacement on the same port; returns
        once it answers /ready."""
        instance = self.instances[index]
        instance.stop(sig)
        assert self.redis is not None
        instance.start(self.images, self.manifests, self.redis.url)

    def stop(self) -> None:
        if self.nginx is not None:
            nginx, self.nginx = self.nginx, None
            if nginx.poll() is None:
                nginx.send_signal(signal.SIGQUIT)  # graceful: master and its workers
                try:
                    nginx.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    nginx.kill()
                    nginx.wait(timeout=10)
        for instance in self.instances:
            instance.stop()
        if self.redis is not None:
            self.redis.stop()

    def nginx_cpu_seconds(self) -> float:
        return _tree_cpu(self.nginx.pid) if self.nginx is not None else 0.0

    def _start_nginx(self) -> None:
        assert NGINX is not None
        prefix = self.root / "nginx"
        for folder in ("logs", "temp/client", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"):
            (prefix / folder).mkdir(parents=True, exist_ok=True)
        self.nginx_port = free_port()
        site = (NGINX_DIR / "iiifserver.conf").read_text()
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.nginx_port};").replace("listen [::]:80;", "")
        (prefix / "iiifserver.conf").write_text(site)
        # A server that failed is left alone for fail_timeout: a rolling restart must wait that
        # long after each replacement is ready, or the proxy may count every instance out at once.
        servers = "\n".join(
            f"    server 127.0.0.1:{i.port} max_fails=2 fail_timeout={FAIL_TIMEOUT}s;" for i in self.instances
        )
        (prefix / "upstream.conf").write_text(f"upstream iiifserver {{\n{servers}\n    keepalive 32;\n}}\n")
        mime = Path("/etc/nginx/mime.types")
        temp = prefix / "temp"
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
    {f"include {mime};" if mime.exists() else ""}
    access_log off;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include iiifserver.conf;
}}
"""
        )
        with (prefix / "logs" / "stderr.log").open("wb") as log:
            self.nginx = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not answer")


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (from /proc; Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


# --- the workload -------------------------------------------------------------------------------


def viewer_urls(identifiers: list[str], rng: random.Random) -> list[str]:
    """A mix of what a viewer asks: info.json, aligned tiles at three levels, some regions and
    the top collection (manifests of the loose images hang off it)."""
    urls = []
    for ident in identifiers:
        urls.append(f"/iiif/3/{ident}/info.json")
        for scale, (cols, rows) in ((1, (8, 6)), (2, (4, 3)), (4, (2, 2))):
            step = 256 * scale
            for x in range(cols):
                for y in range(rows):
                    w, h = min(step, 2048 - x * step), min(step, 1536 - y * step)
                    urls.append(f"/iiif/3/{ident}/{x * step},{y * step},{w},{h}/{-(-w // scale)},/0/default.jpg")
        for _ in range(20):
            x, y = rng.randrange(0, 1500), rng.randrange(0, 1000)
            urls.append(f"/iiif/3/{ident}/{x},{y},300,200/150,/0/default.jpg")
        urls.append(f"/iiif/presentation/3/{ident}/manifest")
    urls.append("/iiif/presentation/3/collection")
    return urls


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def run_load(
    base: str, urls: list[str], clients: int, stop: threading.Event, *, seed: int = 1, fresh_regions: bool = False
) -> LoadResult:
    """``clients`` threads, each an httpx client, asking random ``urls`` of ``base`` until ``stop``.

    ``fresh_regions``: a fraction of requests ask a region never asked before (renders keep
    happening). A request fails when it raises or answers anything but 200.
    """
    result = LoadResult()
    lock = threading.Lock()
    started = time.monotonic()

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=base, timeout=30) as http:
            counter = 0
            while not stop.is_set():
                if fresh_regions and rng.random() < 0.1:
                    counter += 1
                    ident = urls[0].split("/")[3]  # the first image's identifier
                    x, y, h = rng.randrange(1600), rng.randrange(1100), counter % 300 + 64
                    path = f"/iiif/3/{ident}/{x},{y},{n + 100},{h}/90,/0/default.jpg"
                else:
                    path = rng.choice(urls)
                try:
                    status = http.get(path).status_code
                    error = None if status == 200 else f"{status} {path}"
                except httpx.HTTPError as exc:
                    error = f"{exc.__class__.__name__} {path}"
                with lock:
                    if error is None:
                        result.ok += 1
                    else:
                        result.failed += 1
                        result.failures.append(error)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - started
    return result


def load_for(
    base: str, urls: list[str], clients: int, seconds: float, during: Callable[[], None] | None = None
) -> LoadResult:
    """``run_load`` for ``seconds`` (or until ``during()`` returns, if longer)."""
    stop = threading.Event()
    holder: list[LoadResult] = []
    runner = threading.Thread(target=lambda: holder.append(run_load(base, urls, clients, stop, fresh_regions=True)))
    runner.start()
    started = time.monotonic()
    if during is not None:
        during()
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    stop.set()
    runner.join()
    return holder[0]


def metric(base: str, line_start: str) -> float:
    """The value of the first /metrics line starting with ``line_start`` (0 if absent)."""
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def shared_hit_latency(cluster: Cluster, rounds: int = 30) -> dict[str, float]:
    """Median ms of a render on instance A against the same region then asked of B (a shared hit)."""
    a, b = cluster.instances[0], cluster.instances[1]
    ident = cluster.identifiers[0]
    renders, hits = [], []
    with httpx.Client(timeout=30) as http:
        for n in range(rounds):
            path = f"/iiif/3/{ident}/{17 + n * 13},{29 + n * 7},{400 + n},{300 + n}/200,/0/default.jpg"
            t0 = time.perf_counter()
            assert http.get(a.base + path).status_code == 200
            t1 = time.perf_counter()
            time.sleep(0.02)  # the shared write is made in the background
            t2 = time.perf_counter()
            assert http.get(b.base + path).status_code == 200
            t3 = time.perf_counter()
            renders.append((t1 - t0) * 1000)
            hits.append((t3 - t2) * 1000)
    return {"render_ms": statistics.median(renders), "shared_hit_ms": statistics.median(hits), "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    import tempfile

    rows = []
    latency: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for n in (1, 2, 3):
            cluster = Cluster(Path(tmp) / f"n{n}", n=n)
            cluster.start()
            try:
                urls = viewer_urls(cluster.identifiers, random.Random(7))
                load_for(cluster.base, urls, args.clients, 2.0)  # warm-up
                cpu0 = sum(i.cpu_seconds() for i in cluster.instances)
                nginx0 = cluster.nginx_cpu_seconds()
                result = load_for(cluster.base, urls, args.clients, args.seconds)
                server_cpu = sum(i.cpu_seconds() for i in cluster.instances) - cpu0
                nginx_cpu = cluster.nginx_cpu_seconds() - nginx0
                rows.append(
                    {
                        "instances": n,
                        "requests": result.ok,
                        "failed": result.failed,
                        "rps": round(result.rate, 1),
                        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(result.ok, 1), 3),
                        "nginx_cpu_share": round(nginx_cpu / max(server_cpu + nginx_cpu, 1e-9), 3),
                    }
                )
                print(rows[-1], flush=True)
                if n >= 2:
                    latency = shared_hit_latency(cluster)
                    print(latency, flush=True)
            finally:
                cluster.stop()
    host = socket.gethostname()
    cpu = cpu_model()
    stamp = datetime.date.today().isoformat()
    cpu_tag = "".join(c if c.isalnum() else "-" for c in cpu).strip("-")[:40]
    base = args.out / f"{stamp}-{host}-{cpu_tag}-scale-out"
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "date": stamp,
        "host": host,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "seconds": args.seconds,
        "clients": args.clients,
        "rows": rows,
        "shared_tier": latency,
    }
    base.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Scale-out, {stamp}, {host}: {cpu} ({os.cpu_count()} cores)",
        "",
        f"nginx in front of 1-3 instances (two workers each, own disk cache, one shared Redis), all on "
        f"this machine; {args.clients} client threads for {args.seconds:g} s of a viewer mix (tiles, "
        "info.json, regions, 10 % new regions, manifests). The instances share the same cores, so "
        "throughput cannot grow with their number here; the machine may be shared: figures are noisy.",
        "",
        "| instances | requests/s | failed | server CPU ms/request | nginx share of CPU |",
        "|---|---|---|---|---|",
        *(
            f"| {r['instances']} | {r['rps']} | {r['failed']} | {r['server_cpu_ms_per_request']} | "
            f"{r['nginx_cpu_share']:.0%} |"
            for r in rows
        ),
        "",
    ]
    if latency:
        lines += [
            f"Shared tier: a region rendered on instance A, then asked of instance B: median "
            f"{latency['shared_hit_ms']:.2f} ms (shared hit) against {latency['render_ms']:.2f} ms (render), "
            f"{int(latency['rounds'])} regions, client-side time over loopback.",
            "",
        ]
    base.with_suffix(".md").write_text("\n".join(lines))
    print(f"results: {base}.md, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
