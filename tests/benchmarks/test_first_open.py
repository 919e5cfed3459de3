"""benchmarks/first_open.py: one in-process measurement over a few tiny copies, the report, the recorded command."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pyvips

from benchmarks import first_open


def test_a_measurement_covers_every_part(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = images / "pyramid.tif"
    picture = pyvips.Image.xyz(1200, 900)[0].cast("uchar").bandjoin([128, 64]).copy(interpretation="srgb")
    picture.tiffsave(str(source), tile=True, pyramid=True, compression="jpeg", tile_width=256, tile_height=256)
    names = []
    for i in range(3):
        names.append(f"copy_{i}.tif")
        shutil.copyfile(source, images / names[-1])
    record = asyncio.run(first_open._measure(images, tmp_path / "scratch", names, restart=True))
    assert record["images"] == 2  # the first is the warm-up
    assert record["home_tiles_per_image"] >= 2
    for part in ("info", "home", "first_view", "open_tile", "restart_first_view"):
        assert record[part] > 0, part
    assert abs(record["first_view"] - (record["info"] + record["home"])) < 1e-6


def test_report_and_recorded_command_name_no_machine_paths() -> None:
    argv = ["--count", "5", "--image-dir", "/somewhere/images", "--results=/elsewhere", "--restart"]
    assert first_open._without_paths(argv) == ["--count", "5", "--restart"]
    run = {"home_tiles_per_image": 44.0, "info": 2.0, "home": 15.0, "first_view": 17.0, "open_tile": 0.2}
    record = {
        "machine": {"date": "2026-12-07 01:00", "cpu": "Some CPU", "cpus": 2, "host": "h", "commit": "abc"},
        "count": 5,
        "size": "big",
        "quality": 85,
        "repeats": 2,
        "restart": False,
        "viewport": [1600, 1000],
        "variants": {"this tree": first_open._summary([run, {**run, "info": 4.0, "first_view": 19.0}])},
    }
    record["machine"]["command"] = "python -m benchmarks.first_open " + " ".join(first_open._without_paths(argv))
    report = first_open._report(record)
    assert "Some CPU" in report
    assert "| this tree | 3.00 (2.00-4.00) | 15.00 (15.00-15.00) for 44 tiles | 18.00 (17.00-19.00) |" in report
    assert "/somewhere" not in report
    assert "/elsewhere" not in report


def test_a_baseline_tree_has_its_extension_built(tmp_path: Path) -> None:
    """The baseline commit's C extensions are compiled in its tree, so ``--baseline-commit``
    measures that commit as installed (downloads from the DCT blocks, regions resampled as
    planes), not its fallback paths."""
    tree = first_open._baseline_tree("HEAD", tmp_path)
    for name, function in (("_jpeg_blocks", "assemble"), ("_lanczos", "resample")):
        built = list((tree / "iiifserver" / "image").glob(f"{name}*.so"))
        assert len(built) == 1, name
        code = f"import iiifserver.image.{name} as m; print(m.__file__); print(hasattr(m, '{function}'))"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tree)}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str(built[0]), "True"]
