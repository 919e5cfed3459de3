"""Description text -> plain data (YAML or JSON), within limits that keep one hostile file harmless.

Owns: the limits on what one description may make the server hold or walk (nesting depth, nodes and
characters once YAML aliases are expanded, the length of one text value), the bounded YAML loader
that enforces them while composing (before Python's recursion limit or memory can be reached),
the same checks on parsed JSON, and ``LimitError``, raised when a limit is passed.
Must not know: files, the description format (``description`` checks fields), HTTP, iiif_prezi3.

Why while composing: PyYAML composes recursively (a few thousand nested ``[`` raise RecursionError)
and an alias is a reference, so nine lines of nested aliases ("billion laughs") load in a
millisecond as a structure whose expansion has 10^9 leaves: anything that walks it later (a
``repr``, the parser, the JSON encoder) never finishes and, in one C call, holds the GIL while
it runs. So every node is counted as its expanded size at the moment it is composed: an alias
costs the size of what it names, and the load stops as soon as a budget is passed.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import Node
from yaml.resolver import Resolver

MAX_DEPTH = 64  # nested mappings and lists; ranges nested 20 deep need about 45
MAX_NODES = 500_000  # values, keys and containers, aliases counted as what they name
MAX_TEXT_CHARS = 64 * 1024  # one text value (a label, a summary)
MAX_TOTAL_CHARS = 16 * 1024 * 1024  # all text, aliases expanded: what a built manifest could repeat


class LimitError(ValueError):
    """A description passes one of the limits above; the message says which, in the author's terms."""


class _Budget:
    """Running totals of one load, and each anchor's expanded size (nodes, characters)."""

    def __init__(self) -> None:
        self.depth = 0
        self.nodes = 0
        self.chars = 0
        self.anchors: dict[str, tuple[int, int]] = {}

    def spend(self, nodes: int, chars: int, where: str) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > MAX_NODES:
            raise LimitError(f"has more than {MAX_NODES:,} values{where} (YAML aliases count as copies)")
        if self.chars > MAX_TOTAL_CHARS:
            raise LimitError(
                f"has more than {MAX_TOTAL_CHARS // 1024 // 1024} MiB of text{where} (YAML aliases count as copies)"
            )


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}" if mark is not None else ""


class _BoundedComposer(Composer):
    """PyYAML's composer with a depth bound and expansion budget checked at every node."""

    _budget: _Budget

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        budget = self._budget
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser's, mixed in below
        if isinstance(event, AliasEvent):
            size = budget.anchors.get(event.anchor)  # type: ignore[arg-type]
            if size is not None:  # an unknown alias is the composer's own error
                budget.spend(*size, _at(event.start_mark))
            return self._compose(parent, index)
        if budget.depth >= MAX_DEPTH:
            raise LimitError(f"nests more than {MAX_DEPTH} levels deep{_at(event.start_mark)}")
        chars = 0
        if isinstance(event, ScalarEvent):
            chars = len(event.value)
            if chars > MAX_TEXT_CHARS:
                raise LimitError(
                    f"has a value longer than {MAX_TEXT_CHARS // 1024} KiB characters{_at(event.start_mark)}"
                )
        nodes_before, chars_before = budget.nodes, budget.chars
        budget.spend(1, chars, _at(event.start_mark))
        budget.depth += 1
        try:
            node = self._compose(parent, index)
        finally:
            budget.depth -= 1
        if event.anchor is not None:
            budget.anchors[event.anchor] = (budget.nodes - nodes_before, budget.chars - chars_before)
        return node

    def _compose(self, parent: Node | None, index: Any) -> Node:
        node = super().compose_node(parent, index)
        assert node is not None  # only None at a stream's end, which get_single_node checks first
        return node


def _loader_class() -> type:
    # libyaml's scanner and parser (about three times faster) under our composer when PyYAML has
    # them; libyaml's own composer is C recursion we could not bound, so it is never used.
    if getattr(yaml, "__with_libyaml__", False):
        from yaml._yaml import CParser

        class FastLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):
            def __init__(self, stream: str) -> None:
                CParser.__init__(self, stream)
                _BoundedComposer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)
                self._budget = _Budget()

        return FastLoader

    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class PureLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._budget = _Budget()

    return PureLoader


_LOADER = _loader_class()


def load_yaml(text: str) -> Any:
    """YAML (safe tags only) -> data; ``yaml.YAMLError`` for broken YAML, ``LimitError`` past a limit."""
    loader = _LOADER(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_json(text: str) -> Any:
    """JSON -> data; ``orjson.JSONDecodeError`` for broken JSON, ``LimitError`` past a limit."""
    data = orjson.loads(text)  # orjson stops at 1024 levels itself; ours is lower, checked below
    check_shape(data)
    return data


def check_shape(data: Any) -> None:
    """Walk parsed data without recursion, checking depth, node count and text lengths."""
    budget = _Budget()
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise LimitError(f"nests more than {MAX_DEPTH} levels deep")
        chars = len(value) if isinstance(value, str) else 0
        if chars > MAX_TEXT_CHARS:
            raise LimitError(f"has a value longer than {MAX_TEXT_CHARS // 1024} KiB characters")
        budget.spend(1, chars, "")
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, depth + 1))
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
