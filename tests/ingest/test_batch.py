"""Bulk conversion through the command: summary, exit status, up to date, force, collisions,
a bad master amid good ones, interruption, the progress bar."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyvips
from click.testing import CliRunner
from rich.console import Console

from iiifserver.cli import main
from iiifserver.ingest.batch import BatchOptions, run_batch
from iiifserver.ingest.convert import TEMP_SUFFIX
from iiifserver.ingest.plan import ConvertOptions
from iiifserver.ingest.report import Status
from tests.ingest.conftest import Master, assert_pyramid, truncate

CLI = [sys.executable, "-c", "from iiifserver.cli import main; main()"]


@pytest.fixture
def masters(masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path) -> Path:
    """A few small masters in nested folders, plus one truncated file among them."""
    folder, known = masters_dir
    target = tmp_path / "masters"
    (target / "box 1").mkdir(parents=True)
    shutil.copy(folder / known["cmyk"].name, target / "box 1" / "page-1.jpg")
    shutil.copy(folder / known["alpha"].name, target / "box 1" / "page-2.png")
    shutil.copy(folder / known["rotated"].name, target / "page-10.jpg")
    return target


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", "--quiet", *args])
    return result.exit_code, result.output


def test_folder_converted_with_relative_paths_and_summary(masters: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = convert(str(masters), "--out", str(out), "--jobs", "2", "--tile-size", "512")
    assert code == 0, output
    assert "converted 3, skipped 0 (up to date), failed 0 in" in output
    assert "MP/s" in output
    assert [n for n in listing(out) if not n.split("/")[-1].startswith(".")] == [
        "box 1/page-1.tif",
        "box 1/page-2.tif",
        "page-10.tif",
    ]
    assert_pyramid(out / "page-10.tif", 512, 400, 600)
    assert not [n for n in listing(out) if n.endswith(TEMP_SUFFIX)]


def test_bad_master_fails_alone_and_exit_status_is_one(masters: Path, tmp_path: Path) -> None:
    truncate(masters / "page-10.jpg", masters / "box 1" / "page-3.jpg", 0.6)
    out = tmp_path / "out"
    code, output = convert(str(masters), "--out", str(out), "--jobs", "2")
    assert code == 1
    assert "converted 3, skipped 0 (up to date), failed 1 in" in output
    failure = next(line for line in output.splitlines() if line.startswith("failed: "))
    assert failure.startswith("failed: box 1/page-3.jpg: cannot ")
    assert "premature end" in failure.lower()
    assert "Traceback" not in output
    names = listing(out)
    assert "box 1/page-3.tif" not in names
    assert not any(n.endswith(TEMP_SUFFIX) for n in names)
    assert {"box 1/page-1.tif", "box 1/page-2.tif", "page-10.tif"} <= set(names)


def test_up_to_date_outputs_are_skipped_until_something_changes(masters: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert convert(str(masters), "--out", str(out), "--jobs", "1")[0] == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")}

    code, output = convert(str(masters), "--out", str(out), "--jobs", "1")
    assert code == 0
    assert "converted 0, skipped 3 (up to date), failed 0" in output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")} == before

    newer = time.time() + 5
    os.utime(masters / "page-10.jpg", (newer, newer))  # the master was edited
    code, output = convert(str(masters), "--out", str(out), "--jobs", "1")
    assert code == 0
    assert "converted 1, skipped 2 (up to date)" in output

    code, output = convert(str(masters), "--out", str(out), "--quality", "70")  # other settings
    assert code == 0
    assert "converted 3, skipped 0" in output

    code, output = convert(str(masters), "--out", str(out), "--quality", "70", "--force")
    assert code == 0
    assert "converted 3, skipped 0" in output

    (out / "page-10.tif").write_bytes(b"replaced by hand")
    code, output = convert(str(masters), "--out", str(out), "--quality", "70")
    assert code == 0
    assert "converted 1, skipped 2" in output
    assert (out / "page-10.tif").read_bytes()[:2] in (b"II", b"MM")


def test_name_collisions_are_reported_and_nothing_overwritten(masters: Path, tmp_path: Path) -> None:
    shutil.copy(masters / "page-10.jpg", masters / "page-10.png")  # not a PNG inside: never read
    out = tmp_path / "out"
    code, output = convert(str(masters), "--out", str(out))
    assert code == 1
    assert "failed: page-10.jpg: name collision: page-10.jpg and page-10.png would all become page-10.tif" in output
    assert "failed: page-10.png: name collision" in output
    assert "converted 2, skipped 0 (up to date), failed 2" in output
    assert not (out / "page-10.tif").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--background", "pink"], "background 'pink'"),
        (["--tile-size", "300"], "'300' is not one of"),
        (["--quality", "0"], "0 is not in the range"),
        (["--bigtiff", "maybe"], "'maybe' is not one of"),
    ],
)
def test_usage_errors_exit_two(args: list[str], message: str, masters: Path, tmp_path: Path) -> None:
    code, output = convert(str(masters), "--out", str(tmp_path / "out"), *args)
    assert code == 2
    assert message in output
    assert not (tmp_path / "out").exists()


def test_missing_source_and_file_as_out_are_usage_errors(masters: Path, tmp_path: Path) -> None:
    code, output = convert(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert code == 2
    assert "does not exist" in output
    (tmp_path / "file").write_text("x")
    code, output = convert(str(masters), "--out", str(tmp_path / "file"))
    assert code == 2


def test_progress_bar_shows_files_megapixels_and_eta(masters: Path, tmp_path: Path) -> None:
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=160, color_system=None)
    summary = run_batch([masters], tmp_path / "out", ConvertOptions(), BatchOptions(jobs=1), console)
    assert [o.status for o in summary.outcomes] == [Status.CONVERTED] * 3
    assert summary.megapixels == pytest.approx((900 * 700 + 640 * 480 + 600 * 400) / 1e6)
    text = sink.getvalue()
    assert "3/3 files" in text
    assert " MP" in text
    assert "ETA" in text


@pytest.fixture(scope="module")
def slow_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough (36 MP of noise) that a conversion takes a few seconds on this machine."""
    path = tmp_path_factory.mktemp("slow") / "noise.jpg"
    noise = pyvips.Image.gaussnoise(6000, 6000, seed=9, sigma=60, mean=128).cast("uchar")
    noise.bandjoin([noise.rot180(), noise.fliphor()]).copy(interpretation="srgb").jpegsave(str(path), Q=90)
    return path


def start_and_wait_for_temporary(args: list[str], out: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([*CLI, "convert", "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.is_dir() and any(n.endswith(TEMP_SUFFIX) for n in os.listdir(out)):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.01)
    process.kill()
    process.wait()
    pytest.fail("the conversion never started writing its temporary file")


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_leaves_no_file(slow_master: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    second = tmp_path / "second.jpg"
    shutil.copy(slow_master, second)
    process = start_and_wait_for_temporary([str(slow_master), str(second), "--out", str(out), "--jobs", "2"], out)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    assert "interrupted: converted 0" in err.decode()
    assert os.listdir(out) == []  # no output, no temporary file, no stamp


@pytest.mark.slow
def test_killed_run_leaves_no_half_output(slow_master: Path, tmp_path: Path) -> None:
    """SIGKILL gives the command no chance to clean up: its worker notices it is orphaned,
    stops, and removes its temporary file; the output name never holds a partial file."""
    out = tmp_path / "out"
    process = start_and_wait_for_temporary([str(slow_master), "--out", str(out), "--jobs", "1"], out)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(n.endswith(TEMP_SUFFIX) for n in os.listdir(out)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(out) == []
    code, output = convert(str(slow_master), "--out", str(out))
    assert code == 0, output
    assert sorted(os.listdir(out)) == [".noise.tif.convert.json", "noise.tif"]
