"""Pure planning: naming, collisions, order, options, the up-to-date rule, memory admission."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest

from iiifserver.ingest.plan import (
    BigTiff,
    ConvertOptions,
    FileState,
    Found,
    Header,
    Stamp,
    admit,
    discover,
    is_up_to_date,
    memory_estimate,
    natural_key,
    parse_background,
    plan_outputs,
    use_bigtiff,
)


def test_natural_order() -> None:
    names = ["page-10.tif", "page-2.tif", "Page-1.tif", "page-2b.tif", "cover.tif"]
    assert sorted(names, key=natural_key) == ["cover.tif", "Page-1.tif", "page-2.tif", "page-2b.tif", "page-10.tif"]


@pytest.mark.parametrize(
    ("text", "rgb"),
    [("#ffffff", (255, 255, 255)), ("#1a2B3c", (26, 43, 60)), ("#f00", (255, 0, 0)), ("0, 128,255", (0, 128, 255))],
)
def test_parse_background(text: str, rgb: tuple[int, int, int]) -> None:
    assert parse_background(text) == rgb


@pytest.mark.parametrize("text", ["white", "#12345", "1,2", "1,2,256", "-1,0,0", "#gggggg"])
def test_parse_background_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="background"):
        parse_background(text)


def test_fingerprint_changes_with_every_option() -> None:
    base = ConvertOptions()
    variants = [
        ConvertOptions(quality=90),
        ConvertOptions(tile_size=512),
        ConvertOptions(background=(0, 0, 0)),
        ConvertOptions(bigtiff=BigTiff.YES),
    ]
    prints = {base.fingerprint(), *(v.fingerprint() for v in variants)}
    assert len(prints) == 5


def test_discover_walks_folders_keeps_relative_paths_and_skips_the_output(tmp_path: Path) -> None:
    masters = tmp_path / "masters"
    for rel in ["b/page-10.jpg", "b/page-2.JPG", "a.tif", "notes.txt", ".hidden.jpg", ".cache/x.png", "out/old.tif"]:
        (masters / rel).parent.mkdir(parents=True, exist_ok=True)
        (masters / rel).write_bytes(b"x")
    single = tmp_path / "loose.data"
    single.write_bytes(b"x")
    found = discover([masters, single], masters / "out")
    assert [f.relative.as_posix() for f in found] == ["a.tif", "b/page-2.JPG", "b/page-10.jpg", "loose.data"]
    assert found[1].source == masters / "b" / "page-2.JPG"


def test_outputs_keep_relative_paths(tmp_path: Path) -> None:
    found = [Found(tmp_path / "m/b/p1.jpg", PurePath("b/p1.jpg")), Found(tmp_path / "m/c.png", PurePath("c.png"))]
    jobs, refused = plan_outputs(found, tmp_path / "out")
    assert refused == []
    assert [(j.output, j.name) for j in jobs] == [
        (tmp_path / "out/b/p1.tif", "b/p1.jpg"),
        (tmp_path / "out/c.tif", "c.png"),
    ]


def test_collisions_are_refused_not_overwritten(tmp_path: Path) -> None:
    found = [
        Found(tmp_path / "m/a.jpg", PurePath("a.jpg")),
        Found(tmp_path / "m/a.png", PurePath("a.png")),
        Found(tmp_path / "m/b.jpg", PurePath("b.jpg")),
    ]
    jobs, refused = plan_outputs(found, tmp_path / "out")
    assert [j.name for j in jobs] == ["b.jpg"]
    assert sorted(r.name for r in refused) == ["a.jpg", "a.png"]
    assert all("name collision: a.jpg and a.png would all become a.tif" in r.reason for r in refused)


def test_same_file_named_twice_is_one_job(tmp_path: Path) -> None:
    found = [Found(tmp_path / "a.jpg", PurePath("a.jpg")), Found(tmp_path / "a.jpg", PurePath("a.jpg"))]
    jobs, refused = plan_outputs(found, tmp_path / "out")
    assert len(jobs) == 1
    assert refused == []


def test_output_may_not_overwrite_its_master(tmp_path: Path) -> None:
    jobs, refused = plan_outputs([Found(tmp_path / "a.tif", PurePath("a.tif"))], tmp_path)
    assert jobs == []
    assert refused[0].reason == "the output would overwrite its own master"


SOURCE = FileState(size=1000, mtime_ns=5_000)
OUTPUT = FileState(size=300, mtime_ns=9_000)
FP = ConvertOptions().fingerprint()
STAMP = Stamp("/m/a.jpg", 1000, 5_000, FP, 300, 9_000)


def test_up_to_date_when_everything_agrees() -> None:
    assert is_up_to_date("/m/a.jpg", SOURCE, OUTPUT, STAMP, FP)


@pytest.mark.parametrize(
    ("source", "source_state", "output_state", "stamp", "fingerprint"),
    [
        pytest.param("/m/a.jpg", SOURCE, None, STAMP, FP, id="no output"),
        pytest.param("/m/a.jpg", SOURCE, OUTPUT, None, FP, id="no stamp"),
        pytest.param("/m/a.jpg", FileState(1000, 10_000), OUTPUT, STAMP, FP, id="master newer"),
        pytest.param("/m/a.jpg", FileState(1001, 5_000), OUTPUT, STAMP, FP, id="master changed"),
        pytest.param("/m/other.jpg", SOURCE, OUTPUT, STAMP, FP, id="another master"),
        pytest.param("/m/a.jpg", SOURCE, FileState(301, 9_000), STAMP, FP, id="output replaced"),
        pytest.param("/m/a.jpg", SOURCE, OUTPUT, STAMP, ConvertOptions(quality=70).fingerprint(), id="settings"),
    ],
)
def test_not_up_to_date(
    source: str, source_state: FileState, output_state: FileState | None, stamp: Stamp | None, fingerprint: str
) -> None:
    assert not is_up_to_date(source, source_state, output_state, stamp, fingerprint)


def test_memory_estimate_grows_with_width_and_rotation() -> None:
    narrow = Header(1000, 20000, 3, 1, out_of_order=False)
    wide = Header(20000, 1000, 3, 1, out_of_order=False)
    rotated = Header(20000, 1000, 3, 1, out_of_order=True)
    deep = Header(20000, 1000, 3, 2, out_of_order=False)
    assert memory_estimate(narrow, 256) < memory_estimate(wide, 256) < memory_estimate(deep, 256)
    assert memory_estimate(wide, 256) < memory_estimate(wide, 512)
    assert memory_estimate(rotated, 256) == memory_estimate(wide, 256) + 20000 * 1000 * 3


def test_admission_within_budget_and_jobs() -> None:
    mb = 2**20
    assert admit(5000 * mb, 0, 0, 100 * mb, 4)  # alone, even over the budget
    assert admit(40 * mb, 50 * mb, 1, 100 * mb, 4)
    assert not admit(60 * mb, 50 * mb, 1, 100 * mb, 4)  # would pass the budget
    assert not admit(1 * mb, 3 * mb, 4, 100 * mb, 4)  # all job slots busy


def test_bigtiff_decision() -> None:
    assert not use_bigtiff(BigTiff.AUTO, 20000, 20000)  # 400 MP
    assert use_bigtiff(BigTiff.AUTO, 40000, 25000)  # 1 GP: its pyramid could pass 4 GB
    assert use_bigtiff(BigTiff.YES, 10, 10)
    assert not use_bigtiff(BigTiff.NO, 40000, 25000)
