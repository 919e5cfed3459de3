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
    # an existing description is kept unless --force; the images are up to date by then
    args = [str(pages), "--out", str(out), "--object", "b1", "-s", f"images={images}", "-s", f"manifests={manifests}"]
    code, output = run(*args)
    assert code == 2
    assert "b1.yaml exists; --force replaces it" in output
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
