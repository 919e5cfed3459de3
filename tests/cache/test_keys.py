"""Cache keys: injective over the parts, sensitive to every part, stable across releases."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from iiifserver.cache.keys import KeyHasher, cache_key, identifier_digest

Parts = tuple[str, str, str, str]
parts = st.tuples(st.text(), st.text(), st.text(), st.text())


def test_key_is_40_lowercase_hex_and_deterministic() -> None:
    key = cache_key("book/page1", "123-456-789", "full/max/0/default.jpg", "r1/q85/w80")
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert key == cache_key("book/page1", "123-456-789", "full/max/0/default.jpg", "r1/q85/w80")


def test_key_is_the_length_prefixed_sha256_the_service_used() -> None:
    # Same bytes as image/service.py's cache_key, so ETags survive the move.
    expected = hashlib.sha256()
    for part in ("id", "v", "full/max/0/default.jpg", "r1"):
        data = part.encode()
        expected.update(len(data).to_bytes(4, "big") + data)
    assert cache_key("id", "v", "full/max/0/default.jpg", "r1") == expected.hexdigest()[:40]


def test_moving_a_separator_between_parts_changes_the_key() -> None:
    assert cache_key("a_b", "c", "x", "y") != cache_key("a", "b_c", "x", "y")
    assert cache_key("a", "", "x", "y") != cache_key("", "a", "x", "y")


def test_version_token_and_render_tag_are_part_of_the_key() -> None:
    base = cache_key("id", "ino1-size2-mtime3", "full/max/0/default.jpg", "r1/q85")
    assert cache_key("id", "ino1-size2-mtime4", "full/max/0/default.jpg", "r1/q85") != base
    assert cache_key("id", "ino1-size2-mtime3", "full/max/0/default.jpg", "r2/q85") != base
    assert cache_key("id", "ino1-size2-mtime3", "full/max/0/default.jpg", "r1/q90") != base


def test_identifier_bytes_are_exact() -> None:
    # U+FFFD is what a lossy decoder makes of %FF and of %FE: both must stay distinct from it.
    assert cache_key("A", "v", "c", "r") != cache_key("a", "v", "c", "r")
    assert cache_key("\ufffd", "v", "c", "r") != cache_key("\udcff", "v", "c", "r")
    assert cache_key("\udcff", "v", "c", "r") != cache_key("\udcfe", "v", "c", "r")


@given(parts, parts)
def test_distinct_tuples_give_distinct_keys(first: Parts, second: Parts) -> None:
    assert (cache_key(*first) == cache_key(*second)) == (first == second)


@given(st.text(min_size=1), st.data())
def test_splitting_one_string_differently_gives_distinct_keys(text: str, data: st.DataObject) -> None:
    # The collisions a naive concatenation would produce: same characters, other boundaries.
    cuts = st.lists(st.integers(0, len(text)), min_size=3, max_size=3).map(sorted)
    a, b = data.draw(cuts), data.draw(cuts)

    def split(c: list[int]) -> Parts:
        return text[: c[0]], text[c[0] : c[1]], text[c[1] : c[2]], text[c[2] :]

    assert (cache_key(*split(a)) == cache_key(*split(b))) == (a == b)


def test_identifier_digest_is_fixed_length_hex_and_case_sensitive() -> None:
    digest = identifier_digest("Book/Page 1")
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert digest == identifier_digest("Book/Page 1")
    assert digest != identifier_digest("book/page 1")
    assert identifier_digest("../../etc/passwd").isalnum()


@given(st.text(), st.text(), st.lists(st.tuples(st.text(), st.text()), max_size=4))
def test_a_key_hasher_gives_the_keys_cache_key_gives(identifier: str, token: str, rest: list[tuple[str, str]]) -> None:
    hasher = KeyHasher(identifier, token)
    for canonical, tag in rest:  # reused: each key starts again from the same state
        assert hasher.key(canonical, tag) == cache_key(identifier, token, canonical, tag)
    assert hasher.key("full/max/0/default.jpg", "r3") != KeyHasher(identifier + "x", token).key(
        "full/max/0/default.jpg", "r3"
    )
