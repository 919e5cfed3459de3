"""convert --cluster on a real Dask LocalCluster of 2 workers (no mocks): the same outputs as the
local pool, a worker killed mid-batch (retried, or failed alone with --retries 0), and the
client killed mid-batch then run again (it resumes; nothing finished is redone)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import psutil
import pytest
import pyvips
from click.testing import CliRunner
from distributed import Client, LocalCluster

from iiifserver.cli import main
from iiifserver.ingest.cluster import RESOURCE, ClusterError, Target, local_resources
from iiifserver.ingest.convert import TEMP_SUFFIX
from iiifserver.ingest.journal import JOURNAL_NAME, Journal, State
from iiifserver.ingest.stamp import file_sha256, read_checksum
from tests.ingest.conftest import Master, truncate

# Each test starts a Dask cluster (worker processes): the full suite's, not the everyday tier's.
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from iiifserver.cli import main; main()"]
TEMPORARY = re.compile(r"^\.(?P<output>.+)\.(?P<pid>\d+)" + re.escape(TEMP_SUFFIX) + "$")


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", "--quiet", *args])
    return result.exit_code, result.output


def outputs(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tif"))


def temporaries(out: Path) -> list[str]:
    return [p.name for p in out.rglob(f"*{TEMP_SUFFIX}")]


def journal_rows(out: Path) -> dict[str, tuple[State, int]]:
    with Journal.for_output(out) as journal:
        return {r.name: (r.state, r.attempts) for r in journal.rows()}


def assert_intact(out: Path, count: int) -> None:
    """What `iiifserver verify` checks: each output's bytes against the SHA-256 in its stamp."""
    names = outputs(out)
    assert len(names) == count, names
    for name in names:
        assert file_sha256(out / name) == read_checksum(out / name), name
    result = CliRunner().invoke(main, ["verify", "--quiet", "-s", f"images={out}"])
    assert result.exit_code == 0, result.output
    assert f"{count} intact, 0 changed, 0 unreadable" in result.output


@pytest.fixture(scope="module")
def busy_masters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six noisy masters of 7 MP: each conversion takes a moment, long enough to be caught."""
    folder = tmp_path_factory.mktemp("busy")
    for i in range(6):
        noise = pyvips.Image.gaussnoise(2600, 2600, seed=i + 1, sigma=50, mean=128).cast("uchar")
        noise.bandjoin([noise.rot90(), noise.flipver()]).copy(interpretation="srgb").jpegsave(
            str(folder / f"scan-{i + 1}.jpg"), Q=92
        )
    return folder


@pytest.fixture
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """A cluster the test owns (so it can kill a worker): 2 workers of one thread, each with the
    MEMORY resource; a worker that dies fails its task at once, and --retries decides."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            resources=local_resources(2048, 2),
            dashboard_address=None,
        ) as local,
        Client(local) as client,
    ):
        yield local, client


def test_target_parsing() -> None:
    assert Target.parse("local:2") == Target(None, 2)
    assert Target.parse(" tcp://10.0.0.5:8786 ") == Target("tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "local:", "scheduler:8786", "tcp://"):
        with pytest.raises(ClusterError):
            Target.parse(bad)
    assert local_resources(2048, 2) == {RESOURCE: 1024 * 2**20}


def test_bad_cluster_address_is_a_usage_error(tmp_path: Path) -> None:
    master = tmp_path / "a.jpg"
    pyvips.Image.black(8, 8).jpegsave(str(master))
    code, output = cli(str(master), "--out", str(tmp_path / "out"), "--cluster", "local:none")
    assert code == 2
    assert "local:N" in output


def test_same_outputs_as_the_local_pool(masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path) -> None:
    folder, known = masters_dir
    masters = tmp_path / "masters"
    (masters / "box 1").mkdir(parents=True)
    shutil.copy(folder / known["cmyk"].name, masters / "box 1" / "page-1.jpg")
    shutil.copy(folder / known["alpha"].name, masters / "box 1" / "page-2.png")
    shutil.copy(folder / known["16bit"].name, masters / "page-3.tif")
    shutil.copy(folder / known["rotated"].name, masters / "page-10.jpg")
    truncate(folder / known["rotated"].name, masters / "page-11.jpg", 0.6)

    pool_code, pool_output = cli(str(masters), "--out", str(tmp_path / "pool"), "--jobs", "2")
    code, output = cli(str(masters), "--out", str(tmp_path / "dask"), "--cluster", "local:2")
    assert (pool_code, code) == (1, 1), output
    for text in (pool_output, output):
        assert "converted 4, skipped 0 (up to date), failed 1 in" in text
    failure = next(line for line in output.splitlines() if line.startswith("failed: "))
    assert failure == next(line for line in pool_output.splitlines() if line.startswith("failed: "))
    assert failure.startswith("failed: page-11.jpg: cannot ")
    assert (
        outputs(tmp_path / "dask")
        == outputs(tmp_path / "pool")
        == [
            "box 1/page-1.tif",
            "box 1/page-2.tif",
            "page-10.tif",
            "page-3.tif",
        ]
    )
    for name in outputs(tmp_path / "pool"):  # the same conversion, one libvips thread each: the same bytes
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "pool" / name).read_bytes(), name
    assert not temporaries(tmp_path / "dask")
    rows = journal_rows(tmp_path / "dask")
    assert rows["page-11.jpg"][0] is State.FAILED
    assert {name: state for name, (state, _) in rows.items() if name != "page-11.jpg"} == {
        "box 1/page-1.jpg": State.DONE,
        "box 1/page-2.png": State.DONE,
        "page-10.jpg": State.DONE,
        "page-3.tif": State.DONE,
    }
    assert not (tmp_path / "pool" / JOURNAL_NAME).exists()  # the local pool keeps none by default

    code, output = cli(str(masters), "--out", str(tmp_path / "dask"), "--cluster", "local:2")
    assert code == 1
    assert "converted 0, skipped 4 (up to date), failed 1" in output


def kill_a_busy_worker(process: subprocess.Popen[bytes], out: Path, client: Client) -> tuple[str, int]:
    """Wait for a worker to be writing a temporary file, then SIGKILL that worker's process only."""
    workers = set(client.run(os.getpid).values())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        for name in temporaries(out) if out.is_dir() else []:
            found = TEMPORARY.match(name)
            if found and int(found["pid"]) in workers:
                os.kill(int(found["pid"]), signal.SIGKILL)
                return found["output"], int(found["pid"])
        time.sleep(0.005)
    process.kill()
    process.communicate()
    pytest.fail("no worker was seen writing a temporary file")


@pytest.mark.parametrize("retries", [2, 0])
def test_worker_killed_mid_batch(
    retries: int, busy_masters: Path, cluster: tuple[LocalCluster, Client], tmp_path: Path
) -> None:
    local, client = cluster
    out = tmp_path / "out"
    args = [str(busy_masters), "--out", str(out), "--cluster", local.scheduler_address, "--retries", str(retries)]
    process = subprocess.Popen([*CLI, "convert", "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_output, killed_pid = kill_a_busy_worker(process, out, client)
    _, err = process.communicate(timeout=120)
    text = err.decode()
    killed = killed_output.replace(".tif", ".jpg")
    rows = journal_rows(out)
    assert not psutil.pid_exists(killed_pid) or psutil.Process(killed_pid).status() == psutil.STATUS_ZOMBIE
    if retries:
        assert process.returncode == 0, text
        assert "converted 6, skipped 0 (up to date), failed 0" in text
        assert rows[killed] == (State.DONE, 2)  # tried again once, on a worker that lives
        assert_intact(out, 6)
    else:
        assert process.returncode == 1, text
        assert "converted 5, skipped 0 (up to date), failed 1" in text
        assert f"failed: {killed}: its worker died 1 time(s) converting it" in text
        assert rows[killed] == (State.FAILED, 1)
        assert not (out / killed_output).exists()
        assert_intact(out, 5)
    assert {name: attempts for name, (_, attempts) in rows.items() if name != killed} == {
        f"scan-{i}.jpg": 1 for i in range(1, 7) if f"scan-{i}.jpg" != killed
    }  # every other master converted once, at the first attempt
    assert not temporaries(out)


def test_client_killed_mid_batch_then_resumed(busy_masters: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(busy_masters), "--out", str(out), "--cluster", "local:2"]
    process = subprocess.Popen([*CLI, "convert", "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        done = outputs(out) if out.is_dir() else []
        if len(done) >= 2 and temporaries(out):  # some finished, some being written
            break
        time.sleep(0.005)
    assert process.poll() is None, process.communicate()[1].decode()
    children = psutil.Process(process.pid).children(recursive=True)
    process.kill()
    process.communicate()
    for name in outputs(out):  # published before the kill: these must stay as they are
        if read_checksum(out / name) is not None:
            st = (out / name).stat()
            finished[name] = (st.st_ino, st.st_mtime_ns)
    _, alive = psutil.wait_procs(children, timeout=30)  # the workers follow their parent
    for child in alive:
        child.kill()
    assert not alive, "the workers outlived the killed client"
    assert finished, "nothing was finished before the kill"
    assert len(finished) < 6

    code, output = cli(*args)
    assert code == 0, output
    assert f"converted {6 - len(finished)}, skipped {len(finished)} (up to date), failed 0" in output
    for name, before in finished.items():
        st = (out / name).stat()
        assert (st.st_ino, st.st_mtime_ns) == before, f"{name} was converted again"
    assert_intact(out, 6)
    assert not temporaries(out)  # the killed run's half-written files were cleaned up
    assert {state for state, _ in journal_rows(out).values()} == {State.DONE}


def start_cluster(folder: Path) -> tuple[list[subprocess.Popen[bytes]], str]:
    """A scheduler and two workers as separate processes (`dask scheduler`, `dask worker`), as on
    a real cluster; the scheduler's address."""
    dask_cli = str(Path(sys.executable).parent / "dask")
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    scheduler = [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    scheduler += ["--scheduler-file", str(scheduler_file)]
    processes = [subprocess.Popen(scheduler, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.monotonic() + 60
    address = ""
    while not address and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            address = str(json.loads(scheduler_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            continue  # not written yet, or half written
    if not address:
        stop(processes)
        pytest.fail("the scheduler did not start")
    worker = [dask_cli, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"]
    worker += ["--resources", f"{RESOURCE}={1024 * 2**20}", "--death-timeout", "5"]
    processes.append(subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return processes, address


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_scheduler_killed_mid_batch_then_resumed(busy_masters: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    processes, address = start_cluster(tmp_path / "first")
    try:
        args = [str(busy_masters), "--out", str(out), "--cluster", address]
        client = subprocess.Popen([*CLI, "convert", "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and client.poll() is None:
            if out.is_dir() and outputs(out) and temporaries(out):
                break
            time.sleep(0.005)
        processes[0].kill()  # the scheduler, by its PID
        _, err = client.communicate(timeout=120)
        assert client.returncode == 130, err.decode()
        assert "the connection to the scheduler was lost: run the same command again to resume" in err.decode()
        assert "interrupted: converted " in err.decode()
    finally:
        stop(processes)
    finished = {name: (out / name).stat().st_mtime_ns for name in outputs(out) if read_checksum(out / name)}
    assert 0 < len(finished) < 6

    processes, address = start_cluster(tmp_path / "second")
    try:
        code, output = cli(str(busy_masters), "--out", str(out), "--cluster", address)
    finally:
        stop(processes)
    assert code == 0, output
    assert f"converted {6 - len(finished)}, skipped {len(finished)} (up to date), failed 0" in output
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == finished
    assert_intact(out, 6)
    assert not temporaries(out)
