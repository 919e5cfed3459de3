"""``iiifserver verify``: converted images re-hashed against the checksums in their stamps."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from iiifserver.cli import main
from iiifserver.ingest import verify as checks
from iiifserver.ingest.plan import FileState
from iiifserver.ingest.stamp import read_checksum, stamp_path, write_stamp


def converted(path: Path, data: bytes) -> Path:
    """A file with a stamp as `convert` writes it (the bytes need not be an image to be hashed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    write_stamp(path, path, FileState(len(data), 0), "fingerprint")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    converted(images / "a.tif", b"A" * 5000)
    converted(images / "book" / "page-1.tif", b"B" * 3000)
    converted(images / "book" / "page-2.tif", b"C" * 3000)
    return images


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", "-s", f"images={root}", "--quiet", *args])
    return result.exit_code, result.output


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_stamp_records_the_sha256_of_the_output(root: Path) -> None:
    assert read_checksum(root / "a.tif") == hashlib.sha256(b"A" * 5000).hexdigest()


def test_intact_tree_passes(root: Path) -> None:
    code, output = run(root)
    assert code == 0, output
    assert "3 intact, 0 changed" in output


def test_flipped_bytes_are_reported_and_exit_1_without_touching_anything(root: Path) -> None:
    page = root / "book" / "page-2.tif"
    data = bytearray(page.read_bytes())
    data[1234] ^= 0xFF
    page.write_bytes(bytes(data))
    before = snapshot(root)
    code, output = run(root)
    assert code == 1
    assert "error: book/page-2.tif: changed" in output
    assert "2 intact, 1 changed" in output
    assert snapshot(root) == before  # verify never writes


def test_missing_stamp_is_a_warning_unless_strict(root: Path) -> None:
    (root / "loose.tif").write_bytes(b"no stamp")
    code, output = run(root)
    assert code == 0
    assert "warning: loose.tif: no checksum" in output
    code, output = run(root, "--strict")
    assert code == 1
    assert "error: loose.tif: no checksum" in output


def test_a_stamp_from_before_checksums_counts_as_missing(root: Path) -> None:
    stamp = stamp_path(root / "a.tif")
    record = json.loads(stamp.read_text())
    del record["output_sha256"]
    stamp.write_text(json.dumps(record))
    code, output = run(root)
    assert code == 0
    assert "warning: a.tif: no checksum" in output


def test_identifiers_select_files_as_the_server_resolves_them(root: Path) -> None:
    (root / "a.tif").write_bytes(b"A" * 4999 + b"Z")
    code, output = run(root, "book/page-1")
    assert code == 0, output
    assert "1 intact, 0 changed" in output
    code, output = run(root, "a", "nope")
    assert code == 1
    assert "not found: nope" in output
    assert "error: a.tif: changed" in output


def test_hidden_files_and_other_extensions_are_not_checked(root: Path) -> None:
    (root / ".hidden.tif").write_bytes(b"x")
    (root / "notes.txt").write_bytes(b"x")
    assert [p.name for p in checks.image_files(root)] == ["a.tif", "page-1.tif", "page-2.tif"]


def test_unreadable_file_is_a_problem(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checks, "file_sha256", failing)
    finding = checks.check_file(root / "a.tif", root)
    assert finding.verdict is checks.Verdict.UNREADABLE
    assert finding.verdict.is_problem
    assert finding.detail == "Permission denied"


@pytest.mark.parametrize("threads", [1, 3])
def test_many_files_in_order_bounded_with_progress(tmp_path: Path, threads: int) -> None:
    files = [converted(tmp_path / f"{n:03}.tif", bytes([n]) * 100) for n in range(25)]
    os.truncate(files[7], 50)
    reports: list[checks.Progress] = []
    findings = list(checks.verify(files, tmp_path, threads=threads, progress=reports.append, progress_interval=0))
    assert [f.path for f in findings] == files
    assert [f.name for f in findings if f.verdict is not checks.Verdict.OK] == ["007.tif"]
    assert [r.files_done for r in reports] == [*range(1, 26), 25]
    assert reports[-1] == checks.Progress(25, 25, 2450, 2450)


def test_usage_error_without_an_image_folder(tmp_path: Path) -> None:
    code, output = run(tmp_path / "missing")
    assert code == 2
    assert "does not exist" in output
