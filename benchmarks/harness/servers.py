"""The servers of the benchmark, each started and stopped by PID, listening on 127.0.0.1 only.

    python -m benchmarks.harness.servers iipsrv start --images DIR [--memcached] [--jpeg-quality 85]
    python -m benchmarks.harness.servers iiifserver start --images DIR [--jpeg-quality 85] [--checkout DIR] [-- args]
    python -m benchmarks.harness.servers iipsrv|iiifserver stop|status|pids
    python -m benchmarks.harness.servers install      # apt-get: iipimage-server lighttpd spawn-fcgi memcached wrk

- **iipsrv** (the peer): Debian's ``iipimage-server`` as FastCGI processes (2 by default, one per
  core; ``spawn-fcgi``) behind ``lighttpd`` on port 8081, base ``/iiif`` (Image API 2 info.json,
  the same tile URL syntax as 3). Output JPEG quality ``--jpeg-quality`` (iipsrv's
  ``JPEG_QUALITY``), its in-process tile cache ``MAX_IMAGE_CACHE_SIZE`` 10 MB; with
  ``--memcached``, a memcached (512 MB, port 11311) as its response cache. iipsrv reads
  ``MEMCACHED_SERVERS`` and would try localhost:11211 on every request when unset, so it is set
  empty when memcached is off.
- **iiifserver** (under test): ``DIR/.venv/bin/iiifserver serve --host 127.0.0.1 --port 8083
  --images IMAGES --cache RUN/cache --workers 2 [--jpeg-quality Q] ARGS`` from a checkout (default: this repository;
  give another to benchmark a baseline commit), its cache emptied at every start so that a
  started server is cold.

State lives in a run folder (``--run``, default ``$BENCH_ROOT/run/<server>``): PID files,
configuration, logs. ``stop`` sends SIGTERM to the recorded PIDs, then SIGKILL to those still
alive after 10 s (a worker is killed only if its start time is the recorded one: PIDs are reused).

Owns process start-up, PID bookkeeping and the peers' configuration; knows nothing of load or
results.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iiifserver.processes import is_alive

REPO = Path(__file__).resolve().parents[2]
IIPSRV_FCGI = Path("/usr/lib/iipimage-server/iipsrv.fcgi")
PEER_PACKAGES = ("iipimage-server", "lighttpd", "spawn-fcgi", "memcached")


def bench_root() -> Path:
    """``$BENCH_ROOT``, else ``${TMPDIR:-/tmp}/iiifserver-bench``: images and run folders."""
    return Path(os.environ.get("BENCH_ROOT") or Path(os.environ.get("TMPDIR") or "/tmp") / "iiifserver-bench")


# ---------------------------------------------------------------- processes


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the PID, it names one process (PIDs are reused)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (all their threads), summed, in seconds; gone processes count 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


SETTLE_SHARE = 0.05  # of one core: what a server doing nothing but its timers uses
SETTLE_TIMEOUT = 240.0


def settle(pids: Callable[[], Sequence[int]], *, share: float = SETTLE_SHARE, timeout: float = SETTLE_TIMEOUT) -> float:
    """Wait until the processes ``pids()`` use under ``share`` of a core over a whole second: the
    work a server does once after it starts is over. Returns the seconds waited (``timeout`` at most).

    iiifserver compares its catalogue with the Change Discovery log when it starts (every manifest
    built, every image probed: about 8 s of CPU over the benchmark's 2,255 image files); a run begun
    meanwhile would measure that start-up, not the serving a peer without it is compared with.
    """
    began = time.monotonic()
    before = cpu_seconds(pids())
    while time.monotonic() - began < timeout:
        time.sleep(1.0)
        now = cpu_seconds(pids())
        if now - before < share:
            break
        before = now
    return time.monotonic() - began


def children(pid: int) -> list[int]:
    """Descendants of pid (children, grandchildren, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for kid in parents.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def read_pids(path: Path) -> list[tuple[int, str | None]]:
    """(pid, start time or None) per line 'PID [START]' of a PID file."""
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts and parts[0].isdigit():
                out.append((int(parts[0]), parts[1] if len(parts) > 1 else None))
    return out


def write_pids(path: Path, pids: Sequence[int]) -> None:
    path.write_text("".join(f"{p} {start_time(p) or ''}\n" for p in pids))


def live(entries: Sequence[tuple[int, str | None]]) -> list[int]:
    """The PIDs still running the recorded process."""
    return [p for p, t in entries if is_alive(p) and (t is None or start_time(p) == t)]


def terminate(pids: Sequence[int], grace: float = 10.0) -> None:
    """SIGTERM to each, then SIGKILL to those still alive after grace seconds."""
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.1)
    for p in pids:
        if is_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, seconds: float, still_running: Sequence[int] = ()) -> bool:
    """True once url answers with any HTTP status; False after seconds or when a watched PID died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if still_running and not all(is_alive(p) for p in still_running):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Collect an exited child of ours (no zombie); harmless if it runs on."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0)


# ---------------------------------------------------------------- iipsrv


@dataclass
class Iipsrv:
    """iipsrv FastCGI processes behind lighttpd, optionally with memcached."""

    images: Path
    run_dir: Path = field(default_factory=lambda: bench_root() / "run" / "iipsrv")
    port: int = 8081
    procs: int = 2
    jpeg_quality: int = 85
    cache_mb: int = 10
    memcached: bool = False
    memcached_mb: int = 512
    memcached_port: int = 11311
    name: str = "iipsrv"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/iiif"

    @property
    def socket(self) -> Path:
        return self.run_dir / "iipsrv.sock"

    def lighttpd_conf(self) -> str:
        return "\n".join(
            [
                'server.modules = ( "mod_fastcgi" )',
                f'server.document-root = "{self.run_dir / "www"}"',
                'server.bind = "127.0.0.1"',
                f"server.port = {self.port}",
                f'server.errorlog = "{self.run_dir / "lighttpd.error.log"}"',
                "server.max-connections = 2048",
                "server.max-keep-alive-requests = 100000",  # wrk keeps its connections
                "server.max-keep-alive-idle = 60",
                'server.stat-cache-engine = "disable"',
                'fastcgi.server = ( "/iiif" => (( "socket" => "'
                + str(self.socket)
                + '", "check-local" => "disable", "max-procs" => 1, "disable-time" => 1 )) )',
                "",
            ]
        )

    def iipsrv_env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "FILESYSTEM_PREFIX": f"{self.images.resolve()}/",
            "URI_MAP": "iiif=>IIIF",
            "JPEG_QUALITY": str(self.jpeg_quality),
            "MAX_IMAGE_CACHE_SIZE": str(self.cache_mb),
            "MAX_CVT": "5000",
            "CORS": "*",
            "LOGFILE": str(self.run_dir / "iipsrv.log"),
            "VERBOSITY": "1",
            # empty = no memcached (unset, iipsrv 1.1 would try localhost:11211 on every request)
            "MEMCACHED_SERVERS": f"127.0.0.1:{self.memcached_port}" if self.memcached else "",
        }

    def pid_files(self) -> list[Path]:
        return [self.run_dir / f"{n}.pid" for n in ("lighttpd", "iipsrv", "memcached")]

    def pids(self) -> list[int]:
        return [p for f in self.pid_files() for p in live(read_pids(f))]

    def start(self) -> str:
        if self.pids():
            raise RuntimeError(f"{self.name} already running: {self.pids()}")
        missing = [x for x in ("lighttpd", "spawn-fcgi") if not shutil.which(x)]
        if missing or not IIPSRV_FCGI.exists():
            raise RuntimeError(f"missing {missing or IIPSRV_FCGI}: python -m benchmarks.harness.servers install")
        for port in (self.port, *([self.memcached_port] if self.memcached else [])):
            if port_open(port):
                raise RuntimeError(f"127.0.0.1:{port} is in use")
        self.run_dir = self.run_dir.resolve()
        (self.run_dir / "www").mkdir(parents=True, exist_ok=True)
        for f in [*self.pid_files(), self.socket]:
            f.unlink(missing_ok=True)
        try:
            if self.memcached:
                if not shutil.which("memcached"):
                    raise RuntimeError("memcached missing: python -m benchmarks.harness.servers install")
                with (self.run_dir / "memcached.log").open("wb") as log:
                    mc = subprocess.Popen(
                        ["memcached", "-l", "127.0.0.1", "-p", str(self.memcached_port), "-U", "0",
                         "-m", str(self.memcached_mb), "-u", "nobody"],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                write_pids(self.run_dir / "memcached.pid", [mc.pid])
                time.sleep(0.3)
                if mc.poll() is not None:
                    raise RuntimeError(f"memcached exited: {(self.run_dir / 'memcached.log').read_text()[-500:]}")
            # spawn-fcgi forks the FastCGI processes (sharing one socket), writes their PIDs and exits
            out = subprocess.run(
                ["spawn-fcgi", "-s", str(self.socket), "-M", "0666", "-F", str(self.procs),
                 "-P", str(self.run_dir / "iipsrv.pid"), "--", str(IIPSRV_FCGI)],
                env=self.iipsrv_env(), capture_output=True, text=True, check=False, timeout=30,
            )  # fmt: skip
            if out.returncode:
                raise RuntimeError(f"spawn-fcgi failed: {out.stdout}{out.stderr}")
            write_pids(self.run_dir / "iipsrv.pid", [p for p, _ in read_pids(self.run_dir / "iipsrv.pid")])
            (self.run_dir / "lighttpd.conf").write_text(self.lighttpd_conf())
            with (self.run_dir / "lighttpd.out").open("wb") as log:
                web = subprocess.Popen(
                    ["lighttpd", "-D", "-f", str(self.run_dir / "lighttpd.conf")],  # -D: stays our child
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            write_pids(self.run_dir / "lighttpd.pid", [web.pid])
            if not wait_http(f"http://127.0.0.1:{self.port}/", 10, [web.pid]):
                reap(web)
                raise RuntimeError(f"lighttpd did not answer: {(self.run_dir / 'lighttpd.out').read_text()[-500:]}")
        except BaseException:
            self.stop()
            raise
        return self.base

    def stop(self) -> None:
        terminate(self.pids())
        for f in [*self.pid_files(), self.socket]:
            f.unlink(missing_ok=True)


# ---------------------------------------------------------------- iiifserver


@dataclass
class IiifServer:
    """iiifserver serve from a checkout holding .venv."""

    images: Path
    checkout: Path = REPO
    run_dir: Path = field(default_factory=lambda: bench_root() / "run" / "iiifserver")
    port: int = 8083
    workers: int = 2
    args: Sequence[str] = ()
    keep_cache: bool = False
    name: str = "iiifserver"
    settled_after: float = 0.0  # seconds its start-up work took, waited for by ``start`` (``settle``)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/iiif/3"

    @property
    def executable(self) -> Path:
        return self.checkout / ".venv" / "bin" / "iiifserver"

    @property
    def log(self) -> Path:
        return self.run_dir / "iiifserver.log"

    def command(self) -> list[str]:
        return [
            str(self.executable), "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--images", str(self.images.resolve()), "--cache", str((self.run_dir / "cache").resolve()),
            "--workers", str(self.workers), *self.args,
        ]  # fmt: skip

    def pids(self) -> list[int]:
        """The main process and all its descendants (the workers)."""
        main = live(read_pids(self.run_dir / "iiifserver.pid"))
        return [*main, *children(main[0])] if main else []

    def start(self) -> str:
        if self.pids():
            raise RuntimeError(f"iiifserver already running: {self.pids()}")
        if not self.executable.exists():
            raise RuntimeError(f"no {self.executable}: install that checkout first (scripts/install.sh)")
        if port_open(self.port):
            raise RuntimeError(f"127.0.0.1:{self.port} is in use")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.keep_cache:
            shutil.rmtree(self.run_dir / "cache", ignore_errors=True)
        (self.run_dir / "cache").mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            proc = subprocess.Popen(
                self.command(), cwd=self.checkout, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        write_pids(self.run_dir / "iiifserver.pid", [proc.pid])
        if not wait_http(f"http://127.0.0.1:{self.port}/iiif/3/", 30, [proc.pid]):
            reap(proc)
            self.stop()
            raise RuntimeError(f"iiifserver did not answer in 30 s: {self.log.read_text(errors='replace')[-800:]}")
        time.sleep(0.5)  # the other workers finish starting
        write_pids(self.run_dir / "iiifserver.workers", children(proc.pid))
        self.settled_after = settle(self.pids)
        return self.base

    def stop(self) -> None:
        main = live(read_pids(self.run_dir / "iiifserver.pid"))
        workers = {*read_pids(self.run_dir / "iiifserver.workers")}
        if main:
            workers |= {(p, start_time(p)) for p in children(main[0])}
            terminate(main)  # uvicorn's supervisor stops its workers
        terminate(live(sorted(workers, key=lambda w: w[0])), grace=2)
        for name in ("iiifserver.pid", "iiifserver.workers"):
            (self.run_dir / name).unlink(missing_ok=True)


Server = Iipsrv | IiifServer


def install(packages: Sequence[str] = (*PEER_PACKAGES, "wrk")) -> None:
    """apt-get install what is missing (root, Debian); then stop the system services apt may start."""
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    if shutil.which("service"):  # the benchmark runs its own instances on its own ports
        for service in ("lighttpd", "memcached"):
            subprocess.run(["service", service, "stop"], capture_output=True, check=False)


IIIFSERVER_CONFIGS = ("iiifserver", "iiifserver-no-metrics", "iiifserver-baseline")


def make(
    kind: str, images: Path, *, run_dir: Path | None = None, jpeg_quality: int = 85, checkout: Path = REPO,
    args: Sequence[str] = (), baseline_checkout: Path | None = None,
) -> Server:  # fmt: skip
    """A server by configuration name: iipsrv, iipsrv-memcached, iiifserver, iiifserver-no-metrics
    (the same checkout with ``--no-metrics``: the metrics' cost, measured in the same run) or
    iiifserver-baseline (``baseline_checkout``: another commit, measured in the same run).

    ``jpeg_quality`` is the output quality of either server: iiifserver gets ``--jpeg-quality``
    unless ``args`` give one (a server at another quality than its peer, or than the stored
    tiles, measures another workload: no stored tile passes through, every download is decoded).
    """
    run = run_dir or bench_root() / "run" / ("iiifserver" if kind in IIIFSERVER_CONFIGS else "iipsrv")
    if kind in IIIFSERVER_CONFIGS:
        args = with_quality(args, jpeg_quality)
    if kind == "iiifserver":
        return IiifServer(images, checkout=checkout, run_dir=run, args=args)
    if kind == "iiifserver-no-metrics":
        return IiifServer(images, checkout=checkout, run_dir=run, args=[*args, "--no-metrics"], name=kind)
    if kind == "iiifserver-baseline":
        if baseline_checkout is None:
            raise ValueError("iiifserver-baseline needs a baseline checkout")
        return IiifServer(images, checkout=baseline_checkout, run_dir=run, args=args, name=kind)
    if kind in ("iipsrv", "iipsrv-memcached"):
        return Iipsrv(images, run_dir=run, jpeg_quality=jpeg_quality, memcached=kind == "iipsrv-memcached", name=kind)
    raise ValueError(f"unknown server {kind!r}")


def with_quality(args: Sequence[str], jpeg_quality: int) -> list[str]:
    """iiifserver's serve ``args`` with ``--jpeg-quality jpeg_quality`` first, unless they set it."""
    if any(arg == "--jpeg-quality" or arg.startswith("--jpeg-quality=") for arg in args):
        return list(args)
    return ["--jpeg-quality", str(jpeg_quality), *args]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("server", choices=["iipsrv", "iipsrv-memcached", "iiifserver", "install"])
    ap.add_argument("action", nargs="?", choices=["start", "stop", "status", "pids"], default="status")
    ap.add_argument("--images", type=Path, default=bench_root() / "images")
    ap.add_argument("--run", type=Path, help="run folder (default $BENCH_ROOT/run/<server>)")
    ap.add_argument("--memcached", action="store_true", help="iipsrv: with memcached")
    ap.add_argument("--jpeg-quality", type=int, default=85, help="output JPEG quality of either server")
    ap.add_argument("--checkout", type=Path, default=REPO, help="iiifserver: the checkout holding .venv")
    ap.add_argument("serve_args", nargs=argparse.REMAINDER, help="iiifserver: after --, extra serve arguments")
    a = ap.parse_args(argv)
    if a.server == "install":
        install()
        return 0
    kind = "iipsrv-memcached" if a.server == "iipsrv" and a.memcached else a.server
    extra = a.serve_args[1:] if a.serve_args[:1] == ["--"] else a.serve_args
    server = make(kind, a.images, run_dir=a.run, jpeg_quality=a.jpeg_quality, checkout=a.checkout, args=extra)
    if a.action == "start":
        print(server.start())
    elif a.action == "stop":
        server.stop()
    elif a.action == "pids":
        print("\n".join(map(str, server.pids())))
    else:
        pids = server.pids()
        print(f"running: {' '.join(map(str, pids))}" if pids else "not running")
        return 0 if pids else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
