"""``iiifserver manifests build | validate | import``: every document built (and written), each
bad description reported with its file and field, non-zero exit on problems, CSV import to YAML."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from iiifserver.cli import main
from tests.presentation.conftest import SCHEMA, make_image, write


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    images, manifests = tmp_path / "img", tmp_path / "manifests"
    make_image(images / "painting.tif", 300, 200)
    for n in (1, 2):
        make_image(images / "fonds" / "letters" / f"l{n}.tif", 100, 150)
    write(
        manifests / "painting.yaml",
        "label: {fr: Tableau, en: Painting}\nrights: http://creativecommons.org/licenses/by/4.0/\n",
    )
    return images, manifests


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_build_writes_every_document(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    out = tmp_path / "out"
    code, output = _run(
        "manifests", "build", "-s", f"images={images}", "-s", f"manifests={manifests}", "--out", str(out),
        "-s", "public_url=https://iiif.example.org",
    )  # fmt: skip
    assert code == 0, output
    assert "0 problem(s)" in output
    painting = json.loads((out / "painting" / "manifest.json").read_text())
    assert painting["id"] == "https://iiif.example.org/iiif/presentation/3/painting/manifest"
    assert json.loads((out / "fonds" / "letters" / "manifest.json").read_text())["type"] == "Manifest"
    top = json.loads((out / "collection.json").read_text())
    assert top["id"] == "https://iiif.example.org/iiif/presentation/3/collection"
    assert json.loads((out / "collection" / "fonds.json").read_text())["items"][0]["id"].endswith(
        "/fonds/letters/manifest"
    )
    assert not list(out.rglob("*.tmp"))


def test_build_writes_collection_pages(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    for n in range(3):
        make_image(images / f"extra-{n}.tif", 50, 50)
    out = tmp_path / "out"
    code, output = _run(
        "manifests", "build", "-s", f"images={images}", "-s", f"manifests={manifests}", "--out", str(out),
        "-s", "collection_page_size=2",
    )  # fmt: skip
    assert code == 0, output
    assert len(json.loads((out / "collection.json").read_text())["items"]) == 3  # 5 members, 2 a page
    assert (out / "collection-page-3.json").is_file()


def test_validate_reports_each_problem_and_fails(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    write(manifests / "bad-rights.yaml", "label: x\nrights: https://example.org/licence\npages: [painting]\n")
    write(manifests / "bad-field.yaml", "label: x\ncolour: red\npages: [painting]\n")
    write(manifests / "bad-yaml.yaml", "label: [oops\n")
    write(manifests / "missing-image.yaml", "label: x\npages: [painting, nowhere/p1]\n")
    code, output = _run("manifests", "validate", "-s", f"images={images}", "-s", f"manifests={manifests}")
    assert code == 1
    assert "bad-rights.yaml: field 'rights'" in output
    assert "bad-field.yaml: field 'colour': unknown field" in output
    assert "bad-yaml.yaml: broken YAML at line 2" in output
    assert "missing-image.yaml: field 'pages[1].image': no image 'nowhere/p1'" in output
    assert "4 problem(s)" in output
    assert str(tmp_path) not in output.replace(str(manifests), "")  # no path other than what was given


def test_validate_passes_on_good_descriptions_with_the_schema(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    code, output = _run(
        "manifests", "validate", "-s", f"images={images}", "-s", f"manifests={manifests}", "--schema", str(SCHEMA)
    )
    assert code == 0, output
    assert "all descriptions are valid" in output


def test_import_writes_one_yaml_per_object(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    make_image(images / "album" / "a.tif", 60, 40)
    make_image(images / "album" / "b.tif", 60, 40)
    sheet = write(
        tmp_path / "catalogue.csv",
        "object,image,page_label,label@fr,label@en,metadata:en=Creator|fr=Auteur,rights\n"
        "album,album/a,Front,Album,Album,Anonyme,http://creativecommons.org/publicdomain/zero/1.0/\n"
        "album,album/b,Back,,,,\n"
        "broken,painting,,X,X,,https://nope.example/\n",
    )
    code, output = _run("manifests", "import", str(sheet), "-s", f"manifests={manifests}")
    assert code == 1  # one bad object
    assert "catalogue.csv line 4: field 'rights'" in output
    data = yaml.safe_load((manifests / "album.yaml").read_text(encoding="utf-8"))
    assert data["label"] == {"fr": "Album", "en": "Album"}
    assert data["pages"] == [
        {"image": "album/a", "label": {"none": "Front"}},
        {"image": "album/b", "label": {"none": "Back"}},
    ]
    assert data["metadata"] == [{"label": {"en": "Creator", "fr": "Auteur"}, "value": {"none": "Anonyme"}}]
    assert not (manifests / "broken.yaml").exists()
    # The written description serves.
    code, output = _run("manifests", "validate", "-s", f"images={images}", "-s", f"manifests={manifests}")
    assert code == 0, output
    # A second import does not overwrite, unless forced.
    code, output = _run("manifests", "import", str(sheet), "-s", f"manifests={manifests}")
    assert "exists (use --force" in output
    code, output = _run("manifests", "import", str(sheet), "-s", f"manifests={manifests}", "--force")
    assert "1 descriptions written" in output
