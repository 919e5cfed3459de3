"""The description model (``iiifserver.presentation.model``): frozen, slotted values with the
defaults the parser and the builder rely on."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from iiifserver.presentation.model import (
    Agent,
    Description,
    LanguageMap,
    Link,
    MetadataEntry,
    ObjectDescription,
    Page,
    RangeSpec,
)

HOURS: LanguageMap = (("en", ("Book of hours",)), ("fr", ("Livre d'heures",)))


def _samples() -> list[Any]:
    link = Link("https://example.org/", "Text", format="text/html")
    return [
        link,
        Agent("https://example.org/", HOURS, homepage=(link,)),
        MetadataEntry(HOURS, (("none", ("1450",)),)),
        Page("book/p1"),
        RangeSpec(HOURS, (0, RangeSpec(HOURS, (1, 2)))),
        Description("hours.yaml", label=HOURS),
        ObjectDescription("hours.yaml", label=HOURS, pages=(Page("book/p1"),)),
    ]


@pytest.mark.parametrize("value", _samples(), ids=lambda v: type(v).__name__)
def test_values_are_frozen_and_slotted(value: Any) -> None:
    first = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, "changed")
    assert not hasattr(value, "__dict__")  # slots: no per-instance dictionary


@pytest.mark.parametrize("value", _samples(), ids=lambda v: type(v).__name__)
def test_values_compare_and_hash_by_content(value: Any) -> None:
    twin = dataclasses.replace(value)
    assert twin == value
    assert twin is not value
    assert hash(twin) == hash(value)  # usable as keys: everything inside is a tuple or a string


def test_object_description_defaults() -> None:
    description = ObjectDescription("book.yaml")
    assert description.pages == description.ranges == description.behavior == ()
    assert (description.nav_date, description.viewing_direction, description.thumbnail_image) == ("", "", "")
    assert description.thumbnail is None  # the first page
    assert description.collection is None  # the folder decides
    assert description.required_statement is None
    assert (description.rights, description.label, description.metadata) == ("", (), ())


def test_an_object_is_a_description_with_pages() -> None:
    shared = {f.name for f in dataclasses.fields(Description)}
    own = {f.name for f in dataclasses.fields(ObjectDescription)} - shared
    assert isinstance(ObjectDescription("b.yaml"), Description)
    assert own == {
        "pages",
        "ranges",
        "nav_date",
        "behavior",
        "viewing_direction",
        "thumbnail",
        "thumbnail_image",
        "collection",
    }


def test_ranges_nest_pages_and_ranges_in_order() -> None:
    inner = RangeSpec((("none", ("Matins",)),), (2, 3))
    outer = RangeSpec(HOURS, (0, inner, 4))
    assert [type(member).__name__ for member in outer.members] == ["int", "RangeSpec", "int"]
    assert outer.members[1] == inner
    assert outer.behavior == ()
