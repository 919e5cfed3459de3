"""--object: converted images become an object description in manifests/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from iiifserver.cli import main
from iiifserver.ingest.describe import DescriptionError, check_name, description, identifier
from tests.ingest.conftest import Master


@pytest.fixture
def pages(masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path) -> Path:
    folder, known = masters_dir
    book = tmp_path / "scans" / "book"
    book.mkdir(parents=True)
    for name in ("page-10.jpg", "page-2.jpg", "page-1.jpg"):
        shutil.copy(folder / known["rotated"].name, book / name)
    return book


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", "--quiet", *args])
    return result.exit_code, result.output


def test_object_description_lists_pages_in_natural_order(pages: Path, tmp_path: Path) -> None:
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    out = images / "books" / "b1"
    code, output = run(
        str(pages), "--out", str(out), "--object", "b1", "-s", f"images={images}", "-s", f"manifests={manifests}"
    )
    assert code == 0, output
    assert "object b1: 3 pages in" in output
    written = yaml.safe_load((manifests / "b1.yaml").read_text(encoding="utf-8"))
    assert written == {
        "label": {"none": ["b1"]},
        "pages": [
            {"image": "books/b1/page-1", "label": {"none": ["page-1"]}},
            {"image": "books/b1/page-2", "label": {"none": ["page-2"]}},
            {"image": "books/b1/page-10", "label": {"none": ["page-10"]}},
        ],
    }
    # an existing description is kept unless --force (nothing new to add); the images are up to date by then
    args = [str(pages), "--out", str(out), "--object", "b1", "-s", f"images={images}", "-s", f"manifests={manifests}"]
    before = (manifests / "b1.yaml").read_text(encoding="utf-8")
    code, output = run(*args)
    assert code == 0, output
    assert "object b1: 0 pages added to" in output
    assert (manifests / "b1.yaml").read_text(encoding="utf-8") == before
    (pages / "page-2.jpg").unlink()
    code, output = run(*args, "--force")
    assert code == 0, output
    written = yaml.safe_load((manifests / "b1.yaml").read_text(encoding="utf-8"))
    assert [p["image"] for p in written["pages"]] == ["books/b1/page-1", "books/b1/page-10"]
    # The description is published: the presentation side serves it as a manifest of those pages.
    code, output = _cli("manifests", "validate", "-s", f"images={images}", "-s", f"manifests={manifests}")
    assert code == 0, output
    code, output = _cli(
        "get", "/iiif/presentation/3/b1/manifest", "-s", f"images={images}", "-s", f"manifests={manifests}"
    )
    assert code == 0, output
    manifest = json.loads(output)
    assert [c["label"] for c in manifest["items"]] == [{"none": ["page-1"]}, {"none": ["page-10"]}]
    assert manifest["items"][0]["items"][0]["items"][0]["body"]["service"][0]["id"].endswith(
        "/iiif/3/books%2Fb1%2Fpage-1"
    )


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_output_outside_the_image_root_is_a_usage_error(pages: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    code, output = run(str(pages), "--out", str(tmp_path / "elsewhere"), "--object", "b1", "-s", f"images={images}")
    assert code == 2
    assert "--object needs the output folder" in output
    assert not (tmp_path / "elsewhere").exists()  # nothing converted


def test_no_description_when_a_master_failed(pages: Path, tmp_path: Path) -> None:
    (pages / "page-3.jpg").write_bytes((pages / "page-1.jpg").read_bytes()[:500])
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    code, output = run(
        str(pages),
        "--out",
        str(images / "b"),
        "--object",
        "b",
        "-s",
        f"images={images}",
        "-s",
        f"manifests={manifests}",
    )
    assert code == 1
    assert "object b: not described, as some masters failed" in output
    assert not (manifests / "b.yaml").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("image=x", "unknown setting 'image'; did you mean images?"),
        ("manifests", "'manifests' is not NAME=VALUE"),
        ("workers=two", "workers: expected int, got 'two'"),
    ],
)
def test_bad_setting_stops_convert_before_any_work(pages: Path, tmp_path: Path, setting: str, message: str) -> None:
    out = tmp_path / "images" / "b"
    code, output = run(str(pages), "--out", str(out), "--object", "b", "--setting", setting)
    assert code == 2
    assert message in output
    assert not out.exists()


def test_setting_from_the_environment_and_the_flag(
    pages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    monkeypatch.setenv("IIIFSERVER_IMAGES", str(images))
    monkeypatch.setenv("IIIFSERVER_MANIFESTS", str(tmp_path / "elsewhere"))
    code, output = run(str(pages), "--out", str(images / "b"), "--object", "b", "-s", f"manifests={manifests}")
    assert code == 0, output
    assert (manifests / "b.yaml").is_file()  # the flag wins over IIIFSERVER_MANIFESTS
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("name", ["", "../x", "a//b", "a b", "/abs", ".hidden", "a\\b"])
def test_bad_object_names(name: str) -> None:
    with pytest.raises(DescriptionError, match="object name"):
        check_name(name)


def test_good_object_names() -> None:
    assert check_name("collection/ms-12_v2.1") == "collection/ms-12_v2.1"


def test_identifier_and_description(tmp_path: Path) -> None:
    root = tmp_path / "images"
    assert identifier(root / "a" / "b" / "p-1.tif", root) == "a/b/p-1"
    doc = description("Book", ["x/p-10", "x/p-9"])
    assert [p["image"] for p in doc["pages"]] == ["x/p-9", "x/p-10"]
    assert doc["pages"][0]["label"] == {"none": ["p-9"]}


# -- adding pages to an existing object --------------------------------------------------------

WRITTEN_BY_HAND = """\
# The book of hours, described by the registrar.
label: {en: ["Book of hours"], fr: ["Livre d'heures"]}
summary: {en: ["Use of Paris, about 1470."]}
metadata:
  - label: {en: ["Shelfmark"]}
    value: {none: ["MS 12"]}
pages:
  - image: "books/b1/page-1"
    label: {en: ["Front cover"]}   # photographed 2021
  - image: "books/b1/page-10"
    label: {en: ["Back cover"]}
ranges:
  - label: {en: ["Covers"]}
    pages: ["books/b1/page-1", "books/b1/page-10"]
rights: http://creativecommons.org/licenses/by/4.0/
"""


def test_new_masters_join_an_existing_object(pages: Path, tmp_path: Path) -> None:
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    out = images / "books" / "b1"
    settings = ["-s", f"images={images}", "-s", f"manifests={manifests}"]
    covers = tmp_path / "covers"
    covers.mkdir()
    for name in ("page-1.jpg", "page-10.jpg"):
        (covers / name).write_bytes((pages / name).read_bytes())
    code, output = run(str(covers), "--out", str(out), *settings)
    assert code == 0, output
    (manifests / "b1.yaml").parent.mkdir(parents=True, exist_ok=True)
    (manifests / "b1.yaml").write_text(WRITTEN_BY_HAND, encoding="utf-8")
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # One new master, without --force: converted, added between the covers; nothing else changes.
    new = tmp_path / "new"
    new.mkdir()
    (new / "page-2.jpg").write_bytes((pages / "page-2.jpg").read_bytes())
    code, output = run(str(new), "--out", str(out), "--object", "b1", *settings)
    assert code == 0, output
    assert "object b1: 1 pages added to" in output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in first} == first  # outputs kept
    text = (manifests / "b1.yaml").read_text(encoding="utf-8")
    assert text == WRITTEN_BY_HAND.replace(
        '  - image: "books/b1/page-10"',
        '  - image: "books/b1/page-2"\n    label: {none: ["page-2"]}\n  - image: "books/b1/page-10"',
    )
    # The whole folder again: everything up to date, nothing added twice.
    code, output = run(str(pages), "--out", str(out), "--object", "b1", *settings)
    assert code == 0, output
    assert "object b1: 0 pages added to" in output
    assert (manifests / "b1.yaml").read_text(encoding="utf-8") == text
    # Published as the registrar wrote it, with the new page in order.
    code, output = _cli("get", "/iiif/presentation/3/b1/manifest", *settings)
    assert code == 0, output
    manifest = json.loads(output)
    assert [c["label"] for c in manifest["items"]] == [
        {"en": ["Front cover"]},
        {"none": ["page-2"]},
        {"en": ["Back cover"]},
    ]
    assert manifest["summary"] == {"en": ["Use of Paris, about 1470."]}


def test_pages_in_flow_style_are_rewritten_keeping_every_field(pages: Path, tmp_path: Path) -> None:
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    out = images / "books" / "b1"
    manifests.mkdir()
    (manifests / "b1.yaml").write_text(
        'label: {en: ["Hours"]}\nnavDate: "1470-01-01T00:00:00Z"\npages: [books/b1/page-10]\n', encoding="utf-8"
    )
    code, output = run(
        str(pages), "--out", str(out), "--object", "b1", "-s", f"images={images}", "-s", f"manifests={manifests}"
    )
    assert code == 0, output
    assert "object b1: 2 pages added to" in output
    written = yaml.safe_load((manifests / "b1.yaml").read_text(encoding="utf-8"))
    assert written["label"] == {"en": ["Hours"]}
    assert written["navDate"] == "1470-01-01T00:00:00Z"
    assert written["pages"] == [
        {"image": "books/b1/page-1", "label": {"none": ["page-1"]}},
        {"image": "books/b1/page-2", "label": {"none": ["page-2"]}},
        "books/b1/page-10",
    ]


def test_a_broken_existing_description_is_a_usage_error(pages: Path, tmp_path: Path) -> None:
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "b1.yaml").write_text("label: [oops\n", encoding="utf-8")
    args = ["--out", str(images / "b1"), "--object", "b1", "-s", f"images={images}", "-s", f"manifests={manifests}"]
    code, output = run(str(pages), *args)
    assert code == 2
    assert "cannot be read" in output
    assert (manifests / "b1.yaml").read_text(encoding="utf-8") == "label: [oops\n"


def test_pages_numbered_by_a_range_are_not_shifted(pages: Path, tmp_path: Path) -> None:
    images, manifests = tmp_path / "images", tmp_path / "manifests"
    manifests.mkdir()
    by_number = 'label: {en: ["Hours"]}\npages: [books/b1/page-10]\nranges:\n  - {label: {en: [Cover]}, pages: "1"}\n'
    (manifests / "b1.yaml").write_text(by_number, encoding="utf-8")
    args = [
        "--out",
        str(images / "books" / "b1"),
        "--object",
        "b1",
        "-s",
        f"images={images}",
        "-s",
        f"manifests={manifests}",
    ]
    code, output = run(str(pages), *args)
    assert code == 2
    assert "refers to pages by number" in output
    assert (manifests / "b1.yaml").read_text(encoding="utf-8") == by_number
    # Pages that sort after every listed one shift no number: they are added.
    (manifests / "b1.yaml").write_text(by_number.replace("page-10", "page-1"), encoding="utf-8")
    code, output = run(str(pages), *args)
    assert code == 0, output
    written = yaml.safe_load((manifests / "b1.yaml").read_text(encoding="utf-8"))
    assert [p if isinstance(p, str) else p["image"] for p in written["pages"]] == [
        "books/b1/page-1",
        "books/b1/page-2",
        "books/b1/page-10",
    ]
    assert written["ranges"] == [{"label": {"en": ["Cover"]}, "pages": "1"}]
