"""Tests for iiifserver.presentation.loader: YAML and JSON read within limits (nesting depth, nodes and
text once aliases are expanded, one value's length), refused fast and without recursion errors,
while ordinary descriptions (aliases included) load exactly as PyYAML's safe loader reads them."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import yaml

from iiifserver.presentation import loader
from iiifserver.presentation.loader import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_TEXT_CHARS,
    LimitError,
    check_shape,
    load_json,
    load_yaml,
)


def laughs(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" YAML: each level an anchored list of ``width`` aliases of the one before."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def nested_brackets(size: int) -> str:
    return "[" * (size // 2) + "]" * (size // 2)


def nested_mappings(depth: int) -> str:
    return "".join(f"{'  ' * n}k{n}:\n" for n in range(depth)) + f"{'  ' * depth}leaf\n"


def test_billion_laughs_is_refused_at_once() -> None:
    text = laughs()
    assert len(text.encode()) < 600
    start = time.perf_counter()
    with pytest.raises(LimitError, match=r"values.*aliases count as copies"):
        load_yaml(text)
    assert time.perf_counter() - start < 0.2


def test_the_alias_rule_counts_expansions_not_aliases() -> None:
    # Many aliases of a small anchor: a few thousand values once expanded, well under the bound.
    many = "label: &l {en: Letter}\npages:\n" + "".join(f"  - {{image: p{n}, label: *l}}\n" for n in range(2000))
    data = load_yaml(many)
    assert len(data["pages"]) == 2000
    assert data["pages"][1999]["label"] == {"en": "Letter"}
    # The same rule, at its edge: expansions just under MAX_NODES pass, just over are refused.
    width = 10
    levels = 1
    while width ** (levels + 1) < MAX_NODES // 2:
        levels += 1
    assert load_yaml(laughs(levels, width))  # about width**levels values: allowed
    with pytest.raises(LimitError):
        load_yaml(laughs(levels + 1, width))  # ten times more: over the bound


def test_anchor_size_includes_its_own_aliases() -> None:
    # An alias of an anchor that itself holds aliases costs the whole expansion.
    text = "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"
    assert load_yaml(text)["c"][2][2] == ["x", "x", "x"]


def test_merge_keys_count_what_they_merge() -> None:
    data = load_yaml("base: &b {rights: x, label: y}\nobj:\n  <<: *b\n  label: z\n")
    assert data["obj"] == {"rights": "x", "label": "z"}


@pytest.mark.parametrize("size", [200, 2_000, 40_000])
def test_nested_brackets_are_a_limit_or_syntax_error_never_recursion(size: int) -> None:
    start = time.perf_counter()
    # libyaml stops at 1000 levels itself (a ScannerError); below that our depth bound answers.
    with pytest.raises((LimitError, yaml.YAMLError)):
        load_yaml(nested_brackets(size))
    assert time.perf_counter() - start < 1.0


def test_depth_bound_exactly() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_yaml(ok) is not None
    with pytest.raises(LimitError, match=f"nests more than {MAX_DEPTH} levels"):
        load_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_deeply_nested_mappings() -> None:
    assert load_yaml(nested_mappings(MAX_DEPTH - 1))
    with pytest.raises(LimitError, match="nests more than"):
        load_yaml(nested_mappings(MAX_DEPTH + 5))


def test_pure_python_loader_bounds_depth_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without libyaml the whole parser is PyYAML's: our bound must answer before RecursionError.
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    pure = loader._loader_class()
    assert pure.__name__ == "PureLoader"
    monkeypatch.setattr(loader, "_LOADER", pure)
    with pytest.raises(LimitError, match="nests more than"):
        load_yaml(nested_brackets(4_000))
    with pytest.raises(LimitError, match="aliases count as copies"):
        load_yaml(laughs())
    assert load_yaml("label: {en: x}\npages: [a, b]\n") == {"label": {"en": "x"}, "pages": ["a", "b"]}


def test_huge_scalar_is_refused() -> None:
    with pytest.raises(LimitError, match="value longer than"):
        load_yaml("label: " + "x" * (MAX_TEXT_CHARS + 1) + "\n")
    assert len(load_yaml("label: " + "x" * MAX_TEXT_CHARS + "\n")["label"]) == MAX_TEXT_CHARS


def test_aliases_of_a_long_text_count_its_characters() -> None:
    # 40 KiB named once, repeated by 500 aliases: 20 MB of text in a built manifest.
    text = "v: &v " + "x" * 40_000 + "\nmetadata:\n" + "".join(f"  - {{label: m{n}, value: *v}}\n" for n in range(500))
    with pytest.raises(LimitError, match="MiB of text"):
        load_yaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "label: {en: Book}\nnavDate: 1921-03-04\npages: [p1, p2]\n",
        "a: &x {b: 1}\nc: *x\n",
        "- 1\n- 2.5\n- true\n- null\n- '2020'\n",
        "label: x # comment\n",
    ],
)
def test_same_data_as_pyyaml_safe_load(text: str) -> None:
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: *nope\n", "undefined alias"),
        ("a: &x 1\nb: &x 2\n", "duplicate anchor"),
        ("--- 1\n--- 2\n", "single document"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: [1, 2\n", "expected"),
    ],
)
def test_broken_yaml_is_a_yaml_error(text: str, error: str) -> None:
    with pytest.raises(yaml.YAMLError, match=error):
        load_yaml(text)


def test_json_depth_and_text_bounds() -> None:
    assert load_json('{"label": "x", "pages": ["a"]}') == {"label": "x", "pages": ["a"]}
    with pytest.raises(LimitError, match="nests more than"):
        load_json('{"label": "x", "pages": ' + "[" * 500 + "]" * 500 + "}")
    with pytest.raises(orjson.JSONDecodeError):
        load_json(nested_brackets(40_000))  # orjson's own bound (1024 levels)
    with pytest.raises(LimitError, match="value longer than"):
        load_json(orjson.dumps({"summary": "y" * (MAX_TEXT_CHARS + 1)}).decode())


def test_check_shape_counts_nodes_without_recursion() -> None:
    deep: Any = "leaf"
    for _ in range(5_000):  # deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(LimitError, match="nests more than"):
        check_shape(deep)
    with pytest.raises(LimitError, match="values"):
        check_shape(list(range(MAX_NODES + 1)))
    check_shape({"pages": list(range(1000))})
