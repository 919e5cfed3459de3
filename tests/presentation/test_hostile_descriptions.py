"""One hostile description file is that object's error only (attack case D12 and the issue's
"descriptions that take the service down"): billion-laughs aliases, 40 KB of nested brackets (YAML
and JSON), deeply nested mappings, a huge value, a scalar Python cannot convert. Each shows in
``manifests validate`` and as its manifest's 500 naming the file, is logged once however often it
is asked for, and every other manifest and the collection keep answering 200, quickly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from iiifserver.cli import main
from iiifserver.presentation.catalogue import Scanner, read_description_file
from iiifserver.presentation.description import DescriptionError
from iiifserver.presentation.loader import MAX_DEPTH, MAX_TEXT_CHARS
from tests.presentation.conftest import make_image, schema_errors, write
from tests.presentation.test_loader import laughs, nested_brackets, nested_mappings
from tests.web.conftest import Http

P = "/iiif/presentation/3"

# file name -> (content, what its error says)
HOSTILE: dict[str, tuple[str, str]] = {
    "laughs.yaml": (laughs(), "aliases count as copies"),
    "brackets.yaml": ("label: x\npages: " + nested_brackets(40_000) + "\n", "broken YAML"),  # libyaml: 1000 levels
    "shallow-brackets.yaml": ("label: x\npages: " + nested_brackets(400) + "\n", f"nests more than {MAX_DEPTH}"),
    "json-brackets.json": ('{"label": "x", "pages": ' + nested_brackets(40_000) + "}", "broken JSON"),
    "deep.json": ('{"label": "x", "pages": ' + nested_brackets(1_000) + "}", f"nests more than {MAX_DEPTH}"),
    "mappings.yaml": ("label: x\nseeAlso:\n" + "  " + nested_mappings(200).replace("\n", "\n  "), "nests more"),
    "huge.yaml": ("label: " + "x" * (MAX_TEXT_CHARS * 4) + "\npages: [painting]\n", "value longer than"),
    "bigint.yaml": ("label: x\nnavDate: " + "9" * 6000 + "\npages: [painting]\n", "cannot be read"),
}


@pytest.fixture
def site(tree: tuple[Path, Path]) -> tuple[Path, Path]:
    images, manifests = tree
    make_image(images / "painting.tif", 200, 150)
    make_image(images / "book" / "p1.tif", 100, 120)
    write(manifests / "painting.yaml", "label: {en: Painting}\n")
    for name, (content, _) in HOSTILE.items():
        write(manifests / name, content)
    return images, manifests


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_reading_a_hostile_file_is_its_error_and_fast(site: tuple[Path, Path], name: str) -> None:
    _, manifests = site
    start = time.perf_counter()
    result = read_description_file(manifests / name, name)
    assert time.perf_counter() - start < 1.0
    assert isinstance(result, DescriptionError)
    assert result.source == name
    assert HOSTILE[name][1] in result.reason


def test_billion_laughs_scan_is_well_under_a_second(tree: tuple[Path, Path]) -> None:
    images, manifests = tree
    write(manifests / "laughs.yaml", laughs())
    start = time.perf_counter()
    catalogue = Scanner(manifests, images).scan()
    assert time.perf_counter() - start < 0.5
    assert [problem.source for problem in catalogue.problems] == ["laughs.yaml"]


def test_others_keep_serving_and_each_error_is_logged_once(
    site: tuple[Path, Path], client: Callable[..., Http], caplog: pytest.LogCaptureFixture
) -> None:
    images, manifests = site
    http = client(images, manifests)  # rescans on every request (source_check_interval 0)
    caplog.set_level(logging.WARNING, logger="iiifserver.presentation")
    start = time.perf_counter()
    for _ in range(3):
        for name in HOSTILE:
            object_id = name.rpartition(".")[0]
            response = http.get(f"{P}/{object_id}/manifest")
            assert response.status_code == 500, (name, response.text)
            assert name in response.text
            assert str(manifests) not in response.text
        assert http.get(f"{P}/painting/manifest").status_code == 200
        assert http.get(f"{P}/book/manifest").status_code == 200
        collection = http.get(f"{P}/collection")
        assert collection.status_code == 200
        listed = {item["id"].rsplit("/", 2)[-2] for item in collection.json()["items"]}
        assert {"painting", "book"} <= listed
        assert not listed & {name.rpartition(".")[0] for name in HOSTILE}
    assert time.perf_counter() - start < 30  # no request waits on a stalled parse
    for name in HOSTILE:
        logged = [r for r in caplog.records if r.getMessage().startswith(f"bad object description {name}")]
        assert len(logged) == 1, (name, [r.getMessage()[:120] for r in caplog.records])


def test_validate_names_every_hostile_file(site: tuple[Path, Path]) -> None:
    images, manifests = site
    result = CliRunner().invoke(
        main, ["manifests", "validate", "-s", f"images={images}", "-s", f"manifests={manifests}"]
    )
    assert result.exit_code == 1
    for name, (_, reason) in HOSTILE.items():
        line = next((line for line in result.output.splitlines() if f"description {name}" in line), "")
        assert reason in line, (name, result.output[-3000:])
    assert f"{len(HOSTILE)} problem(s)" in result.output


def test_a_collection_file_that_fails_loses_only_its_labels(
    tree: tuple[Path, Path], client: Callable[..., Http]
) -> None:
    images, manifests = tree
    make_image(images / "fonds" / "a.tif", 100, 100)
    write(manifests / "fonds" / "_collection.yaml", laughs())
    http = client(images, manifests)
    assert http.get(f"{P}/collection").status_code == 200
    assert http.get(f"{P}/fonds/manifest").status_code == 200
    response = http.get(f"{P}/collection/fonds")
    assert response.status_code == 500
    assert "_collection.yaml" in response.text


def test_an_unforeseen_fault_in_parsing_is_that_objects_error(
    site: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, manifests = site
    from iiifserver.presentation import catalogue as catalogue_module
    from iiifserver.presentation.description import parse_object as real

    def flaky(data: Any, source: str, folder_images: tuple[str, ...] = ()) -> Any:
        if source == "painting.yaml":
            raise KeyError("a bug of ours")
        return real(data, source, folder_images)

    monkeypatch.setattr(catalogue_module, "parse_object", flaky)
    catalogue = Scanner(manifests, images).scan()
    error = catalogue.objects["painting"].error
    assert error is not None
    assert error.reason == "cannot be read (KeyError)"
    assert catalogue.objects["book"].error is None


def test_html_in_a_description_is_made_safe_in_the_manifest(
    tree: tuple[Path, Path], client: Callable[..., Http], schema_validator: jsonschema.Draft7Validator
) -> None:
    images, manifests = tree
    make_image(images / "painting.tif", 200, 150)
    write(
        manifests / "painting.yaml",
        """\
label: {en: "<b>Portrait</b><script>alert(1)</script>"}
summary: {en: "<p>Oil on <i>canvas</i><img src=x onerror=alert(1)><a href='javascript:alert(1)'>x</a></p>"}
metadata:
  - label: "<i>Maker</i>"
    value: "Unknown <a href='https://example.org/' onclick='x'>workshop</a>"
requiredStatement:
  label: Attribution
  value: "<p>Example Museum<!-- internal note --></p>"
""",
    )
    http = client(images, manifests)
    response = http.get(f"{P}/painting/manifest")
    assert response.status_code == 200
    body = response.text.lower()
    for bad in ("<script", "onerror", "onclick", "javascript:", "<!--", "internal note"):
        assert bad not in body
    manifest = response.json()
    assert manifest["label"] == {"en": ["Portrait"]}
    assert manifest["summary"] == {"en": ["<p>Oil on <i>canvas</i><img/><a>x</a></p>"]}
    assert manifest["metadata"] == [
        {
            "label": {"none": ["Maker"]},
            "value": {"none": ['<span>Unknown <a href="https://example.org/">workshop</a></span>']},
        }
    ]
    assert manifest["requiredStatement"]["value"] == {"none": ["<p>Example Museum</p>"]}
    assert schema_errors(schema_validator, manifest) == []
