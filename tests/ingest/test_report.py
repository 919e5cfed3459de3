"""The summary's wording and totals."""

from __future__ import annotations

from pathlib import Path

from iiifserver.ingest.report import Outcome, Status, Summary, summary_lines


def test_summary_lines() -> None:
    summary = Summary(
        (
            Outcome("a.jpg", Status.CONVERTED, Path("o/a.tif"), megapixels=30.0),
            Outcome("b.jpg", Status.CONVERTED, Path("o/b.tif"), megapixels=10.0),
            Outcome("c.jpg", Status.SKIPPED, Path("o/c.tif")),
            Outcome("d.jpg", Status.FAILED, reason="cannot convert: VipsJpeg: premature end of JPEG image"),
        ),
        seconds=4.0,
    )
    assert summary_lines(summary) == [
        "converted 2, skipped 1 (up to date), failed 1 in 4.0 s: 40.0 MP at 10.0 MP/s",
        "failed: d.jpg: cannot convert: VipsJpeg: premature end of JPEG image",
    ]
    assert not summary.ok


def test_interrupted_is_not_ok() -> None:
    summary = Summary((), seconds=0.0, interrupted=True)
    assert summary_lines(summary) == [
        "interrupted: converted 0, skipped 0 (up to date), failed 0 in 0.0 s: 0.0 MP at 0.0 MP/s"
    ]
    assert not summary.ok
    assert Summary((), seconds=1.0).ok
