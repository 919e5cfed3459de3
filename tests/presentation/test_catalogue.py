"""Tests for iiifserver.presentation.catalogue: descriptions found and read (errors named per file),
folder defaults, natural order, the collection tree, and rescans that follow changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iiifserver.presentation.catalogue import MAX_DESCRIPTION_BYTES, Scanner
from tests.presentation.conftest import make_image, write


def _scan(images: Path, manifests: Path) -> Scanner:
    return Scanner(manifests, images)


def test_folder_of_images_is_an_object_in_natural_order(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    for name in ("scan-10.tif", "scan-2.tif", "scan-1.tif", "Scan-3.tif"):
        make_image(images / "letters_of-1914" / name, 40, 30)
    catalogue = _scan(images, manifests).scan()
    entry = catalogue.objects["letters_of-1914"]
    assert entry.origin == "folder"
    assert entry.error is None
    assert entry.description is not None
    assert [p.image for p in entry.description.pages] == [
        "letters_of-1914/scan-1",
        "letters_of-1914/scan-2",
        "letters_of-1914/Scan-3",
        "letters_of-1914/scan-10",
    ]
    assert entry.description.label == (("none", ("Letters of 1914",)),)
    assert next(p.label for p in entry.description.pages) == (("none", ("Scan 1",)),)
    assert entry.description.behavior == ("individuals",)
    assert entry.collection == ""
    assert catalogue.collections[""].objects == ("letters_of-1914",)


def test_loose_top_images_are_objects_of_one_page(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "vase.tif", 40, 30)
    make_image(images / "plate.jpg", 40, 30)
    catalogue = _scan(images, manifests).scan()
    assert set(catalogue.objects) == {"vase", "plate"}
    assert catalogue.objects["vase"].origin == "image"
    vase = catalogue.objects["vase"].description
    assert vase is not None
    assert [p.image for p in vase.pages] == ["vase"]


def test_twin_files_keep_the_short_id_for_the_tiff(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "box" / "a.tif", 40, 30)
    make_image(images / "box" / "a.jpg", 40, 30)
    catalogue = _scan(images, manifests).scan()
    description = catalogue.objects["box"].description
    assert description is not None
    # The identifier "box/a" finds a.tif first (sources.py tries .tif before .jpg).
    assert [p.image for p in description.pages] == ["box/a", "box/a.jpg"]


def test_hidden_files_and_underscore_folders_are_not_objects(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / ".hidden.tif", 40, 30)
    make_image(images / "_assets" / "logo.tif", 40, 30)
    make_image(images / ".trash" / "x.tif", 40, 30)
    (images / "notes.txt").write_text("not an image")
    catalogue = _scan(images, manifests).scan()
    assert catalogue.objects == {}
    assert catalogue.collections[""].objects == ()


def test_description_wins_over_folder_and_uses_its_images(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    for n in (1, 2, 3):
        make_image(images / "book" / f"p{n}.tif", 40, 30)
    write(manifests / "book.yaml", "label: {en: The book}\nranges:\n  - label: Start\n    pages: 1-2\n")
    catalogue = _scan(images, manifests).scan()
    entry = catalogue.objects["book"]
    assert entry.origin == "description"
    assert entry.description is not None
    assert entry.description.label == (("en", ("The book",)),)
    assert [p.image for p in entry.description.pages] == ["book/p1", "book/p2", "book/p3"]
    assert entry.description.ranges[0].members == (0, 1)
    assert list(catalogue.objects) == ["book"]


def test_description_without_pages_uses_the_image_of_the_same_name(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "painting.tif", 40, 30)
    write(manifests / "painting.yaml", "label: Painting\n")
    entry = _scan(images, manifests).scan().objects["painting"]
    assert entry.description is not None
    assert [p.image for p in entry.description.pages] == ["painting"]


def test_images_listed_by_a_description_are_not_published_again(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "scans" / "a.tif", 40, 30)
    make_image(images / "scans" / "b.tif", 40, 30)
    make_image(images / "cover.tif", 40, 30)
    write(manifests / "volume.yaml", "label: Volume\npages: [cover, scans/a, scans/b]\n")
    catalogue = _scan(images, manifests).scan()
    assert set(catalogue.objects) == {"volume"}


def test_partly_listed_folder_is_still_an_object(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "scans" / "a.tif", 40, 30)
    make_image(images / "scans" / "b.tif", 40, 30)
    write(manifests / "one.yaml", "label: One\npages: [scans/a]\n")
    catalogue = _scan(images, manifests).scan()
    assert set(catalogue.objects) == {"one", "scans"}


def test_nested_folders_make_nested_collections(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "archives" / "letters" / "l1.tif", 40, 30)
    make_image(images / "archives" / "maps" / "sheet-1" / "m.tif", 40, 30)
    write(manifests / "archives" / "_collection.yaml", "label: {fr: Archives, en: Archives, nl: Archief}\n")
    catalogue = _scan(images, manifests).scan()
    assert set(catalogue.objects) == {"archives/letters", "archives/maps/sheet-1"}
    assert catalogue.collections[""].collections == ("archives",)
    assert catalogue.collections[""].objects == ()
    archives = catalogue.collections["archives"]
    assert archives.collections == ("archives/maps",)
    assert archives.objects == ("archives/letters",)
    assert archives.description is not None
    assert archives.description.label[2] == ("nl", ("Archief",))
    assert catalogue.collections["archives/maps"].objects == ("archives/maps/sheet-1",)


def test_explicit_collection_field_places_the_object(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "vase.tif", 40, 30)
    write(manifests / "vase.yaml", "label: Vase\ncollection: ceramics/greek\n")
    catalogue = _scan(images, manifests).scan()
    assert catalogue.objects["vase"].collection == "ceramics/greek"
    assert catalogue.collections[""].objects == ()
    assert catalogue.collections[""].collections == ("ceramics",)
    assert catalogue.collections["ceramics/greek"].objects == ("vase",)


def test_collection_members_sorted_by_label(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    for name in ("x", "y", "z"):
        make_image(images / f"{name}.tif", 40, 30)
    write(manifests / "x.yaml", "label: Charlie 10\n")
    write(manifests / "y.yaml", "label: Charlie 9\n")
    write(manifests / "z.yaml", "label: alpha\n")
    assert _scan(images, manifests).scan().collections[""].objects == ("z", "y", "x")


def test_nested_description_file_gives_a_nested_id(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 40, 30)
    write(manifests / "books" / "hours.json", '{"label": "Hours", "pages": ["p"]}')
    catalogue = _scan(images, manifests).scan()
    assert catalogue.objects["books/hours"].collection == "books"
    assert catalogue.collections["books"].objects == ("books/hours",)


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("broken.yaml", "label: [unclosed\n", "broken YAML at line"),
        ("broken.json", '{"label": ', "broken JSON"),
        ("latin1.yaml", "label: caf\xe9\n", "not UTF-8"),
        ("list.yaml", "- a\n- b\n", "expected a mapping"),
        ("empty.yaml", "", "expected a mapping"),
        ("rights.yaml", "label: x\nrights: https://creativecommons.org/licenses/by/4.0/\npages: [ok]\n", "rights"),
        ("unknown.yaml", "label: x\ncolour: red\npages: [ok]\n", "unknown field"),
        ("missing.yaml", "label: x\n", "no images"),
    ],
)
def test_a_bad_description_is_an_error_entry_and_others_keep_working(
    tree: tuple[Path, Path], name: str, content: str, phrase: str
) -> None:
    images, manifests = tree
    make_image(images / "ok.tif", 40, 30)
    write(manifests / "good.yaml", "label: Good\npages: [ok]\n")
    path = manifests / name
    if name == "latin1.yaml":
        path.write_bytes(content.encode("latin-1"))
    else:
        write(path, content)
    catalogue = _scan(images, manifests).scan()
    bad = catalogue.objects[os.path.splitext(name)[0]]
    assert bad.description is None
    assert bad.error is not None
    assert name in str(bad.error)
    assert phrase in str(bad.error)
    assert bad.error in catalogue.problems
    assert catalogue.objects["good"].error is None
    assert os.path.splitext(name)[0] not in catalogue.collections[""].objects or bad.error is not None


def test_oversized_description_is_refused(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    (manifests / "huge.yaml").write_bytes(b"#" * (MAX_DESCRIPTION_BYTES + 1))
    error = _scan(images, manifests).scan().objects["huge"].error
    assert error is not None
    assert "larger than" in str(error)


def test_the_same_object_described_twice_is_an_error(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 40, 30)
    write(manifests / "dup.yaml", "label: A\npages: [p]\n")
    write(manifests / "dup.json", '{"label": "B", "pages": ["p"]}')
    entry = _scan(images, manifests).scan().objects["dup"]
    assert entry.error is not None
    assert "already described by dup.json" in str(entry.error)


def test_bad_object_id_from_a_file_name_is_a_problem(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 40, 30)
    write(manifests / "what?.yaml", "label: A\npages: [p]\n")
    catalogue = _scan(images, manifests).scan()
    assert "what?" not in catalogue.objects
    assert any("not a usable object id" in str(p) for p in catalogue.problems)


def test_spreadsheet_in_the_manifests_folder_is_read(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "a1.tif", 40, 30)
    make_image(images / "a2.tif", 40, 30)
    make_image(images / "b.tif", 40, 30)
    write(
        manifests / "catalogue.csv",
        "object,image,label@fr,label@en,rights\n"
        "album,a1,Album,Album,http://creativecommons.org/licenses/by/4.0/\n"
        "album,a2,,,\n"
        "vase,b,Vase,Vase,http://example.org/nope\n",
    )
    catalogue = _scan(images, manifests).scan()
    album = catalogue.objects["album"]
    assert album.origin == "spreadsheet"
    assert album.description is not None
    assert [p.image for p in album.description.pages] == ["a1", "a2"]
    vase = catalogue.objects["vase"]
    assert vase.error is not None
    assert "catalogue.csv line 4" in str(vase.error)
    assert "rights" in str(vase.error)


def test_bad_collection_description_is_reported(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 40, 30)
    write(manifests / "_collection.yaml", "label: Top\npages: [p]\n")
    catalogue = _scan(images, manifests).scan()
    assert catalogue.collections[""].error is not None
    assert "_collection.yaml" in str(catalogue.collections[""].error)
    assert catalogue.objects["p"].error is None


def test_rescan_follows_edits_additions_and_removals(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 40, 30)
    scanner = _scan(images, manifests)
    write(manifests / "obj.yaml", "label: First\npages: [p]\n")
    first = scanner.scan()
    assert first.objects["obj"].description is not None
    write(manifests / "obj.yaml", "label: Second edition\npages: [p]\n")
    second = scanner.scan()
    description = second.objects["obj"].description
    assert description is not None
    assert description.label == (("none", ("Second edition",)),)
    assert second.objects["obj"].token != first.objects["obj"].token
    assert second.token != first.token
    make_image(images / "new" / "n.tif", 40, 30)
    third = scanner.scan()
    assert "new" in third.objects
    (manifests / "obj.yaml").unlink()
    fourth = scanner.scan()
    assert "obj" not in fourth.objects
    assert "p" in fourth.objects  # its image is published on its own again


def test_unchanged_tree_keeps_its_token(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    make_image(images / "p.tif", 40, 30)
    write(manifests / "obj.yaml", "label: A\npages: [p]\n")
    scanner = _scan(images, manifests)
    assert scanner.scan().token == scanner.scan().token


def test_missing_folders_give_an_empty_catalogue(tmp_path: Path) -> None:
    catalogue = Scanner(tmp_path / "no-manifests", tmp_path / "no-images").scan()
    assert catalogue.objects == {}
    assert catalogue.collections[""].objects == ()
