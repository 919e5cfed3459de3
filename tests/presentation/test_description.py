"""The description parser (``iiifserver.presentation.description``): every check that needs no filesystem.

Tested here, table-driven: language maps (shapes, dropped empties, language tags, required-ness),
rights URIs, unknown fields at every level (named by their dotted path), pages (shorthand, mapping,
identifiers, behaviours, folder images), ranges (page numbers, spans, image ids, nesting), thumbnails,
navDate normalisation to UTC ``xsd:dateTime``, behaviours, viewingDirection, collection paths,
providers, links and URLs, ``check_object_id``, ``natural_key``, ``folder_label``, ``lists_pages``,
``parse_collection`` and ``DescriptionError`` itself.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iiifserver.errors import IIIFError
from iiifserver.presentation.description import (
    CANVAS_BEHAVIORS,
    MANIFEST_BEHAVIORS,
    RANGE_BEHAVIORS,
    VIEWING_DIRECTIONS,
    DescriptionError,
    check_object_id,
    folder_label,
    is_rights_uri,
    language_map,
    lists_pages,
    natural_key,
    parse_collection,
    parse_object,
)
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

SOURCE = "book.yaml"
PAGES = ["p1", "p2", "p3", "p4", "p5"]


def obj(**fields: Any) -> dict[str, Any]:
    """A raw description with five pages (p1..p5) and the given fields."""
    return {"pages": list(PAGES), **fields}


def parse(data: Any, folder_images: tuple[str, ...] = ()) -> ObjectDescription:
    return parse_object(data, SOURCE, folder_images)


def failure(data: Any, folder_images: tuple[str, ...] = ()) -> DescriptionError:
    with pytest.raises(DescriptionError) as info:
        parse_object(data, SOURCE, folder_images)
    assert info.value.source == SOURCE
    return info.value


def none(*texts: str) -> LanguageMap:
    return (("none", texts),)


# -- DescriptionError ----------------------------------------------------------------------------


def test_description_error_carries_source_field_reason_and_status() -> None:
    error = DescriptionError("manifests/book.yaml", "pages[1].image", "is required")
    assert isinstance(error, IIIFError)
    assert (error.source, error.field, error.reason, error.status) == (
        "manifests/book.yaml",
        "pages[1].image",
        "is required",
        500,
    )
    assert str(error) == "bad object description manifests/book.yaml: field 'pages[1].image': is required"


def test_description_error_without_field_names_only_the_file() -> None:
    error = DescriptionError("catalogue.csv line 4", "", "more cells than columns")
    assert str(error) == "bad object description catalogue.csv line 4: more cells than columns"


def test_raised_error_message_names_file_field_and_reason() -> None:
    error = failure(obj(rights="CC-BY"))
    message = str(error)
    assert SOURCE in message
    assert "'rights'" in message
    assert error.reason in message


# -- top-level shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (None, "expected a mapping of fields, got nothing"),
        ([], "expected a mapping of fields, got a list"),
        (["p1"], "expected a mapping of fields, got a list"),
        ("book", "expected a mapping of fields, got str 'book'"),
        (3, "expected a mapping of fields, got int 3"),
        ({1: "x", "pages": ["p1"]}, "field names must be text, got 1"),
        ({None: "x", "pages": ["p1"]}, "field names must be text, got None"),
    ],
)
def test_top_level_must_be_a_mapping_with_text_keys(data: Any, phrase: str) -> None:
    error = failure(data)
    assert error.field == ""
    assert phrase in error.reason


def test_non_text_key_inside_a_page_names_the_page() -> None:
    error = failure({"pages": ["p1", {"image": "p2", 2: "x"}]})
    assert error.field == "pages[1]"
    assert "field names must be text, got 2" in error.reason


def test_minimal_object_has_defaults() -> None:
    assert parse({"pages": ["p1"]}) == ObjectDescription(source=SOURCE, pages=(Page("p1"),))


# -- language maps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Book of hours", (("none", ("Book of hours",)),)),
        ("  padded  ", (("none", ("padded",)),)),
        (1984, (("none", ("1984",)),)),
        (1.5, (("none", ("1.5",)),)),
        (["a", "b"], (("none", ("a", "b")),)),
        (("a", "b"), (("none", ("a", "b")),)),
        (["", "a", "   "], (("none", ("a",)),)),
        ({"fr": "Livre"}, (("fr", ("Livre",)),)),
        ({"fr": ["Livre", "Heures"], "en": "Book"}, (("fr", ("Livre", "Heures")), ("en", ("Book",)))),
        ({"none": "x"}, (("none", ("x",)),)),
        ({"en-GB": "x", "zh-Hant-TW": "y", "nld": "z"}, (("en-GB", ("x",)), ("zh-Hant-TW", ("y",)), ("nld", ("z",)))),
        ({"fr": "", "en": "Book"}, (("en", ("Book",)),)),
        ({"fr": None, "en": ["", "Book"]}, (("en", ("Book",)),)),
        ({"fr": []}, ()),
        (None, ()),
        ("", ()),
        ([], ()),
        ({}, ()),
    ],
)
def test_language_map_shapes(value: Any, expected: LanguageMap) -> None:
    assert language_map(value, SOURCE, "label") == expected
    assert parse(obj(label=value)).label == expected
    assert parse(obj(summary=value)).summary == expected


@pytest.mark.parametrize("key", ["fr_FR", "1", "", " fr", "fr-", "fr--x", "english", "f", "NONE", "fr-toolongsubtag"])
def test_language_map_rejects_bad_language_tags(key: str) -> None:
    error = failure(obj(label={key: "x"}))
    assert error.field == "label"
    assert "is not a language tag" in error.reason
    assert repr(key) in error.reason


@pytest.mark.parametrize("key", [1, None, 1.5, True])
def test_language_map_rejects_non_text_language_keys(key: Any) -> None:
    with pytest.raises(DescriptionError) as info:
        language_map({key: "x"}, SOURCE, "summary")
    assert info.value.field == "summary"
    assert "is not a language tag" in info.value.reason


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (obj(metadata=[{"label": {"fr_FR": "Auteur"}, "value": "x"}]), "metadata[0].label"),
        (obj(metadata=[{"label": "a", "value": "b"}, {"label": "c", "value": {"1": "d"}}]), "metadata[1].value"),
        (obj(summary={"": "x"}), "summary"),
        (obj(pages=["p1", {"image": "p2", "label": {"fr_FR": "x"}}]), "pages[1].label"),
        (obj(pages=[{"image": "p1", "summary": {"x1": "x"}}]), "pages[0].summary"),
        (obj(ranges=[{"label": {"en_GB": "x"}, "pages": [1]}]), "ranges[0].label"),
        (obj(provider={"id": "https://kbr.be/", "label": {"fr_BE": "KBR"}}), "provider[0].label"),
        (obj(requiredStatement={"label": {"12": "x"}, "value": "y"}), "requiredStatement.label"),
        (obj(homepage={"id": "https://kbr.be/", "label": {"fr_BE": "x"}}), "homepage[0].label"),
    ],
)
def test_bad_language_tag_error_names_the_field_path(data: dict[str, Any], field: str) -> None:
    error = failure(data)
    assert error.field == field
    assert "is not a language tag" in error.reason


@pytest.mark.parametrize(
    ("value", "field", "phrase"),
    [
        (True, "label.none", "expected text, got bool True"),
        ({"fr": False}, "label.fr", "expected text, got bool False"),
        ({"fr": {"x": "y"}}, "label.fr", "expected text, got a mapping"),
        ([["nested"]], "label.none", "expected text, got a list"),
        ({"en": ["ok", None, ["x"]]}, "label.en", "expected text, got"),
    ],
)
def test_language_map_rejects_non_text_values(value: Any, field: str, phrase: str) -> None:
    error = failure(obj(label=value))
    assert error.field == field
    assert phrase in error.reason


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (obj(metadata=[{"label": "Creator"}]), "metadata[0].value"),
        (obj(metadata=[{"value": "Anon"}]), "metadata[0].label"),
        (obj(metadata=[{"label": "", "value": "Anon"}]), "metadata[0].label"),
        (obj(metadata=[{"label": {"en": ""}, "value": "Anon"}]), "metadata[0].label"),
        (obj(metadata=[{"label": ["", " "], "value": "Anon"}]), "metadata[0].label"),
        (obj(metadata=[{"label": "Creator", "value": {}}]), "metadata[0].value"),
        (obj(metadata=[{"label": "a", "value": "b"}, {"label": "c", "value": None}]), "metadata[1].value"),
        (obj(requiredStatement={"label": "Attribution"}), "requiredStatement.value"),
        (obj(requiredStatement={"value": "KBR"}), "requiredStatement.label"),
        (obj(ranges=[{"pages": [1]}]), "ranges[0].label"),
        (obj(ranges=[{"label": {"fr": ""}, "pages": [1]}]), "ranges[0].label"),
        (obj(ranges=[{"label": "a", "pages": [1], "ranges": [{"pages": [2]}]}]), "ranges[0].ranges[0].label"),
        (obj(provider={"id": "https://kbr.be/"}), "provider[0].label"),
        (
            obj(provider=[{"id": "https://kbr.be/", "label": "KBR"}, {"homepage": "https://x.org/"}]),
            "provider[1].label",
        ),
    ],
)
def test_required_language_maps(data: dict[str, Any], field: str) -> None:
    error = failure(data)
    assert error.field == field
    assert error.reason == "is required"


def test_language_map_optional_fields_may_be_absent_or_empty() -> None:
    description = parse(obj(label="", summary={"fr": ""}, pages=[{"image": "p1", "label": None, "summary": []}]))
    assert (description.label, description.summary, description.pages) == ((), (), (Page("p1"),))


_TAGS = st.sampled_from(["none", "fr", "en", "nl", "de", "en-GB", "zh-Hant", "nld"]) | st.from_regex(
    r"[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True
)
_TEXTS = st.text(min_size=1, max_size=20).map(str.strip).filter(bool)


@given(st.dictionaries(_TAGS, st.lists(_TEXTS, min_size=1, max_size=4), min_size=1, max_size=5))
def test_valid_language_maps_round_trip(value: dict[str, list[str]]) -> None:
    expected = tuple((language, tuple(texts)) for language, texts in value.items())
    assert language_map(value, SOURCE, "label") == expected
    single = {language: texts[0] for language, texts in value.items()}
    assert language_map(single, SOURCE, "label") == tuple((k, (v,)) for k, v in single.items())


# -- rights --------------------------------------------------------------------------------------


GOOD_RIGHTS = [
    "http://creativecommons.org/licenses/by/4.0/",
    "http://creativecommons.org/licenses/by-nc-sa/4.0/",
    "http://creativecommons.org/licenses/by-nd/3.0/",
    "http://creativecommons.org/licenses/by/3.0/be/",
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/publicdomain/mark/1.0/",
    "http://rightsstatements.org/vocab/InC/1.0/",
    "http://rightsstatements.org/vocab/NoC-US/1.0/",
    "http://rightsstatements.org/vocab/CNE/1.0/",
    "http://rightsstatements.org/vocab/InC-EDU/1.0/",
]
BAD_RIGHTS = [
    "https://creativecommons.org/licenses/by/4.0/",
    "https://rightsstatements.org/vocab/InC/1.0/",
    "http://creativecommons.org/licenses/by/4.0",
    "http://rightsstatements.org/vocab/InC/1.0",
    "http://www.creativecommons.org/licenses/by/4.0/",
    "http://example.org/licenses/by/4.0/",
    "http://rightsstatements.org/page/InC/1.0/",
    "http://rightsstatements.org/vocab/InC/2.0/",
    "http://creativecommons.org/licenses/by/4.0/deed.fr",
    "http://creativecommons.org/licences/by/4.0/",
    "CC-BY 4.0",
    "Public domain",
    "All rights reserved",
]


@pytest.mark.parametrize("uri", GOOD_RIGHTS)
def test_rights_accepted(uri: str) -> None:
    assert is_rights_uri(uri)
    assert parse(obj(rights=uri)).rights == uri
    assert parse_collection({"rights": uri}, SOURCE).rights == uri


def test_rights_surrounding_spaces_are_trimmed() -> None:
    assert parse(obj(rights="  http://rightsstatements.org/vocab/InC/1.0/ ")).rights == (
        "http://rightsstatements.org/vocab/InC/1.0/"
    )


@pytest.mark.parametrize("uri", BAD_RIGHTS)
def test_rights_rejected(uri: str) -> None:
    assert not is_rights_uri(uri)
    error = failure(obj(rights=uri))
    assert error.field == "rights"
    assert "Creative Commons" in error.reason
    assert "RightsStatements.org" in error.reason
    assert repr(uri) in error.reason


@pytest.mark.parametrize("value", [None, ""])
def test_rights_absent(value: Any) -> None:
    assert parse(obj(rights=value)).rights == ""


def test_rights_must_be_text() -> None:
    error = failure(obj(rights=["http://creativecommons.org/licenses/by/4.0/"]))
    assert (error.field, error.reason) == ("rights", "expected text, got a list")


# -- unknown fields ------------------------------------------------------------------------------

PROVIDER = {"id": "https://www.kbr.be/", "label": "KBR"}


@pytest.mark.parametrize(
    ("data", "field", "known"),
    [
        (obj(colour="red"), "colour", "behavior, collection, degraded_max, homepage, label, metadata, navDate"),
        (obj(Label="x"), "Label", "label"),
        (obj(pages=["p1", {"image": "p2", "colour": "red"}]), "pages[1].colour", "degraded_max, image, label, summary"),
        (obj(ranges=[{"label": "a", "pages": [1], "colour": 1}]), "ranges[0].colour", "behavior, label, pages, ranges"),
        (
            obj(ranges=[{"label": "a", "ranges": [{"label": "b", "pages": [1], "page": 2}]}]),
            "ranges[0].ranges[0].page",
            "behavior, label, pages, ranges",
        ),
        (obj(provider={**PROVIDER, "colour": 1}), "provider[0].colour", "homepage, id, label, logo, seeAlso"),
        (obj(provider=[PROVIDER, {**PROVIDER, "name": "x"}]), "provider[1].name", "homepage, id, label, logo"),
        (obj(metadata=[{"label": "a", "value": "b", "lang": "fr"}]), "metadata[0].lang", "label, value"),
        (obj(requiredStatement={"label": "a", "value": "b", "x": 1}), "requiredStatement.x", "label, value"),
        (obj(homepage={"id": "https://kbr.be/", "colour": 1}), "homepage[0].colour", "format, id, label, language"),
        (obj(seeAlso=["https://kbr.be/a.json", {"id": "https://kbr.be/", "url": 1}]), "seeAlso[1].url", "profile"),
        (obj(provider={**PROVIDER, "logo": {"id": "https://kbr.be/l.png", "w": 1}}), "provider[0].logo[0].w", "id"),
        (obj(provider={**PROVIDER, "homepage": {"id": "https://kbr.be/", "x": 1}}), "provider[0].homepage[0].x", "id"),
        (obj(thumbnail={"page": 1, "colour": 1}), "thumbnail.colour", "image, page"),
    ],
)
def test_unknown_fields_are_named_by_path(data: dict[str, Any], field: str, known: str) -> None:
    error = failure(data)
    assert error.field == field
    assert error.reason.startswith("unknown field (known: ")
    assert known in error.reason


# -- pages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        (["p1"], (Page("p1"),)),
        (["p1", "sub/dir/p2"], (Page("p1"), Page("sub/dir/p2"))),
        ([" p1 "], (Page("p1"),)),
        ([{"image": "p1"}], (Page("p1"),)),
        ([{"image": 12}], (Page("12"),)),
        ([{"image": "fr-é_1.2"}], (Page("fr-é_1.2"),)),
        (
            [{"image": "p1", "label": "Folio 1r", "summary": {"en": "Recto"}, "behavior": "facing-pages"}],
            (Page("p1", none("Folio 1r"), (("en", ("Recto",)),), ("facing-pages",)),),
        ),
        (
            [{"image": "p1", "behavior": ["non-paged", "no-auto-advance"]}, "p2"],
            (Page("p1", behavior=("non-paged", "no-auto-advance")), Page("p2")),
        ),
    ],
)
def test_pages(pages: list[Any], expected: tuple[Page, ...]) -> None:
    assert parse({"pages": pages}).pages == expected


@pytest.mark.parametrize(
    ("pages", "field", "phrase"),
    [
        ([{"label": "x"}], "pages[0].image", "is required"),
        (["p1", {"image": ""}], "pages[1].image", "is required"),
        (["p1", {"image": None}], "pages[1].image", "is required"),
        ([""], "pages[0].image", "is required"),
        ([{"image": ["p1"]}], "pages[0].image", "expected text, got a list"),
        ([5], "pages[0]", "expected a mapping of fields, got int 5"),
        ([None], "pages[0]", "expected a mapping of fields, got nothing"),
        ([["p1"]], "pages[0]", "expected a mapping of fields, got a list"),
    ],
)
def test_page_shape_errors(pages: list[Any], field: str, phrase: str) -> None:
    error = failure({"pages": pages})
    assert error.field == field
    assert phrase in error.reason


@pytest.mark.parametrize(
    "image", ["..", "../p1", "a/../b", "a/..", ".", "./a", "a/./b", "a//b", "/a", "a/", "a\x00b", "/", "//"]
)
def test_page_image_bad_identifiers(image: str) -> None:
    for pages in ([image], [{"image": image}], ["p1", image]):
        error = failure({"pages": pages})
        assert error.field == f"pages[{len(pages) - 1}].image"
        assert error.reason == f"{image!r} is not an image identifier"


@pytest.mark.parametrize("behavior", sorted(CANVAS_BEHAVIORS))
def test_page_behaviours_allowed(behavior: str) -> None:
    assert parse({"pages": [{"image": "p1", "behavior": behavior}]}).pages[0].behavior == (behavior,)


@pytest.mark.parametrize("behavior", ["paged", "continuous", "sequence", "repeat", "multi-part", "hidden", "", 1])
def test_page_behaviours_refused(behavior: Any) -> None:
    error = failure({"pages": ["p1", {"image": "p2", "behavior": ["non-paged", behavior]}]})
    assert error.field == "pages[1].behavior"
    assert f"{str(behavior)!r} is not one of auto-advance, facing-pages, no-auto-advance, non-paged" == error.reason


@pytest.mark.parametrize("pages", [{"image": "p1"}, "p1", 3])
def test_pages_must_be_a_list(pages: Any) -> None:
    error = failure({"pages": pages})
    assert error.field == "pages"
    assert error.reason.startswith("expected a list, got ")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"pages": ["a"]}, True),
        ({"pages": [{"image": "a"}]}, True),
        ({"pages": "a"}, True),
        ({}, False),
        ({"pages": None}, False),
        ({"pages": []}, False),
        ({"pages": ""}, False),
        ({"label": "x"}, False),
        (None, False),
        ([], False),
        (["pages"], False),
        ("pages", False),
    ],
)
def test_lists_pages(data: Any, expected: bool) -> None:
    assert lists_pages(data) is expected


@pytest.mark.parametrize("data", [{}, {"pages": []}, {"pages": None}, {"pages": ""}, {"label": "Hours"}])
def test_folder_images_used_when_no_pages(data: dict[str, Any]) -> None:
    folder = ("hours/page-1", "hours/page_2", "hours/Folio10r", "cover")
    description = parse(data, folder)
    assert description.pages == (
        Page("hours/page-1", label=none("Page 1")),
        Page("hours/page_2", label=none("Page 2")),
        Page("hours/Folio10r", label=none("Folio10r")),
        Page("cover", label=none("Cover")),
    )


def test_folder_images_ignored_when_pages_are_listed() -> None:
    description = parse({"pages": ["listed"]}, ("folder/a", "folder/b"))
    assert description.pages == (Page("listed"),)


def test_folder_images_back_ranges_and_thumbnail() -> None:
    description = parse({"ranges": [{"label": "All", "pages": "1-2"}], "thumbnail": "b/two"}, ("b/one", "b/two"))
    assert description.ranges == (RangeSpec(none("All"), (0, 1)),)
    assert (description.thumbnail, description.thumbnail_image) == (1, "")


@pytest.mark.parametrize("data", [{}, {"pages": []}, {"label": "Hours"}, {"pages": None}])
def test_no_pages_and_no_folder_images(data: dict[str, Any]) -> None:
    error = failure(data)
    assert error.field == "pages"
    assert "the object has no images" in error.reason


# -- ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pages", "members"),
    [
        ([1], (0,)),
        ([1, 2, 5], (0, 1, 4)),
        ([3, 1], (2, 0)),
        ("3", (2,)),
        ("2-3", (1, 2)),
        ("1, 4-5", (0, 3, 4)),
        (" 2 - 4 ", (1, 2, 3)),
        ("1-1", (0,)),
        ("1,1", (0, 0)),
        (["p3", 1], (2, 0)),
        (["p5", "p1"], (4, 0)),
    ],
)
def test_range_pages(pages: Any, members: tuple[int, ...]) -> None:
    description = parse(obj(ranges=[{"label": "Chapter", "pages": pages}]))
    assert description.ranges == (RangeSpec(none("Chapter"), members),)


def test_nested_ranges_follow_pages() -> None:
    data = obj(
        ranges=[
            {
                "label": {"en": "Part one", "fr": "Première partie"},
                "behavior": "sequence",
                "ranges": [{"label": "Chapter 2", "pages": "3-4"}, {"label": "Chapter 3", "pages": ["p5"]}],
                "pages": [1, 2],
            },
            {"label": "Index", "pages": [5], "behavior": ["no-nav", "thumbnail-nav"]},
        ]
    )
    assert parse(data).ranges == (
        RangeSpec(
            (("en", ("Part one",)), ("fr", ("Première partie",))),
            (0, 1, RangeSpec(none("Chapter 2"), (2, 3)), RangeSpec(none("Chapter 3"), (4,))),
            ("sequence",),
        ),
        RangeSpec(none("Index"), (4,), ("no-nav", "thumbnail-nav")),
    )


@pytest.mark.parametrize(
    ("ranges", "field", "phrase"),
    [
        ([{"label": "a", "pages": "3-2"}], "ranges[0].pages", "span '3-2' runs backwards"),
        ([{"label": "a", "pages": "1, 5-4"}], "ranges[0].pages", "span '5-4' runs backwards"),
        ([{"label": "a", "pages": [1, 9]}], "ranges[0].pages[1]", "page 9 does not exist (the object has 5 pages)"),
        ([{"label": "a", "pages": [0]}], "ranges[0].pages[0]", "page 0 does not exist"),
        ([{"label": "a", "pages": [-1]}], "ranges[0].pages[0]", "page -1 does not exist"),
        ([{"label": "a", "pages": "0-1"}], "ranges[0].pages[0]", "page 0 does not exist"),
        ([{"label": "a", "pages": "4-6"}], "ranges[0].pages[2]", "page 6 does not exist"),
        ([{"label": "a", "pages": ["p1", "nope"]}], "ranges[0].pages[1]", "'nope' is not one of the object's pages"),
        ([{"label": "a", "pages": ["2"]}], "ranges[0].pages[0]", "'2' is not one of the object's pages"),
        ([{"label": "a", "pages": [True]}], "ranges[0].pages[0]", "expected a page number or image, got True"),
        ([{"label": "a", "pages": [1.5]}], "ranges[0].pages[0]", "expected a page number or image, got float 1.5"),
        ([{"label": "a", "pages": [[1]]}], "ranges[0].pages[0]", "expected a page number or image, got a list"),
        ([{"label": "a", "pages": "1;2"}], "ranges[0].pages", "expected a list, got str '1;2'"),
        ([{"label": "a", "pages": "one"}], "ranges[0].pages", "expected a list, got str 'one'"),
        ([{"label": "a"}], "ranges[0]", "a range needs pages or ranges"),
        ([{"label": "a", "pages": [], "ranges": []}], "ranges[0]", "a range needs pages or ranges"),
        ([{"label": "a", "pages": [1]}, {"label": "b", "ranges": [{"label": "c"}]}], "ranges[1].ranges[0]", "needs"),
        ([{"label": "a", "ranges": {"label": "b"}}], "ranges[0].ranges", "expected a list, got a mapping"),
        (["Chapter 1"], "ranges[0]", "expected a mapping of fields, got str 'Chapter 1'"),
        ([{"label": "a", "pages": [1], "behavior": "facing-pages"}], "ranges[0].behavior", "'facing-pages' is not one"),
        ([{"label": "a", "pages": [1], "behavior": "repeat"}], "ranges[0].behavior", "'repeat' is not one of"),
    ],
)
def test_range_errors(ranges: list[Any], field: str, phrase: str) -> None:
    error = failure(obj(ranges=ranges))
    assert error.field == field
    assert phrase in error.reason


@pytest.mark.parametrize("ranges", [{"label": "a", "pages": [1]}, "1-3"])
def test_ranges_must_be_a_list(ranges: Any) -> None:
    error = failure(obj(ranges=ranges))
    assert error.field == "ranges"
    assert error.reason.startswith("expected a list")


@pytest.mark.parametrize("behavior", sorted(RANGE_BEHAVIORS))
def test_range_behaviours_allowed(behavior: str) -> None:
    assert parse(obj(ranges=[{"label": "a", "pages": [1], "behavior": behavior}])).ranges[0].behavior == (behavior,)


@pytest.mark.parametrize("behavior", ["unordered", "individuals", "continuous", "paged"])
def test_range_behaviours_the_spec_allows_on_ranges(behavior: str) -> None:
    assert parse(obj(ranges=[{"label": "a", "pages": [1], "behavior": behavior}])).ranges[0].behavior == (behavior,)


def nested(levels: int) -> dict[str, Any]:
    """A range with ``levels`` ranges nested under it; the innermost has page 1."""
    spec: dict[str, Any] = {"label": "leaf", "pages": [1]}
    for _ in range(levels):
        spec = {"label": "node", "ranges": [spec]}
    return spec


def test_ranges_nest_twenty_deep() -> None:
    spec = parse(obj(ranges=[nested(20)])).ranges[0]
    depth = 0
    while isinstance(spec.members[0], RangeSpec):
        spec = spec.members[0]
        depth += 1
    assert depth == 20
    assert spec == RangeSpec(none("leaf"), (0,))


@pytest.mark.parametrize("levels", [21, 30])
def test_ranges_nesting_deeper_than_twenty_refused(levels: int) -> None:
    error = failure(obj(ranges=[nested(levels)]))
    assert error.field == "ranges[0]" + ".ranges[0]" * 21
    assert error.reason == "ranges nest more than 20 deep"


# -- thumbnail -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thumbnail", "expected"),
    [
        (None, (None, "")),
        (1, (0, "")),
        (2, (1, "")),
        (5, (4, "")),
        ("p3", (2, "")),
        ("covers/book", (None, "covers/book")),
        ("2", (None, "2")),
        ({"page": 2}, (1, "")),
        ({"page": "p4"}, (3, "")),
        ({"image": "covers/book"}, (None, "covers/book")),
        ({"image": "p2"}, (None, "p2")),
        ({"image": "cover", "page": 3}, (None, "cover")),
    ],
)
def test_thumbnail(thumbnail: Any, expected: tuple[int | None, str]) -> None:
    description = parse(obj(thumbnail=thumbnail))
    assert (description.thumbnail, description.thumbnail_image) == expected


@pytest.mark.parametrize(
    ("thumbnail", "field", "phrase"),
    [
        (0, "thumbnail", "page 0 does not exist (the object has 5 pages)"),
        (6, "thumbnail", "page 6 does not exist"),
        (-1, "thumbnail", "page -1 does not exist"),
        ({"page": 9}, "thumbnail", "page 9 does not exist"),
        (True, "thumbnail", "expected a page number or image, got True"),
        (1.0, "thumbnail", "expected a page number or image, got float 1.0"),
        ([1], "thumbnail", "expected a page number or image, got a list"),
        ({}, "thumbnail", "expected a page number or image, got nothing"),
        ({"page": None}, "thumbnail", "expected a page number or image, got nothing"),
        ({1: "x"}, "thumbnail", "field names must be text"),
    ],
)
def test_thumbnail_errors(thumbnail: Any, field: str, phrase: str) -> None:
    error = failure(obj(thumbnail=thumbnail))
    assert error.field == field
    assert phrase in error.reason


@pytest.mark.parametrize("thumbnail", ["../cover", {"image": "a//b"}])
def test_thumbnail_bad_image_identifier_refused(thumbnail: Any) -> None:
    error = failure(obj(thumbnail=thumbnail))
    assert error.field.startswith("thumbnail")
    assert "is not an image identifier" in error.reason


@pytest.mark.parametrize(
    ("thumbnail", "field"), [("../cover", "thumbnail"), ({"image": "a//b"}, "thumbnail.image")], ids=["str", "mapping"]
)
def test_thumbnail_bad_image_error_names_the_field_written(thumbnail: Any, field: str) -> None:
    assert failure(obj(thumbnail=thumbnail)).field == field


# -- navDate -------------------------------------------------------------------------------------

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", ""),
        (1450, "1450-01-01T00:00:00Z"),
        (9999, "9999-01-01T00:00:00Z"),
        ("1450", "1450-01-01T00:00:00Z"),
        (" 1450 ", "1450-01-01T00:00:00Z"),
        ("1450-03", "1450-03-01T00:00:00Z"),
        ("1450-03-15", "1450-03-15T00:00:00Z"),
        (dt.date(1450, 3, 15), "1450-03-15T00:00:00Z"),
        (dt.datetime(2020, 5, 17, 10, 30), "2020-05-17T10:30:00Z"),
        (dt.datetime(2020, 5, 17, 10, 30, tzinfo=PLUS_TWO), "2020-05-17T08:30:00Z"),
        (dt.datetime(2020, 5, 17, 10, 30, tzinfo=dt.UTC), "2020-05-17T10:30:00Z"),
        ("2020-05-17T10:30:00Z", "2020-05-17T10:30:00Z"),
        ("2020-05-17T10:30:00+02:00", "2020-05-17T08:30:00Z"),
        ("2020-05-17T01:30:00+02:00", "2020-05-16T23:30:00Z"),
        ("2020-05-17T22:30:00-05:00", "2020-05-18T03:30:00Z"),
        ("2020-05-17T10:30:00.123456Z", "2020-05-17T10:30:00Z"),
        ("2020-05-17 10:30", "2020-05-17T10:30:00Z"),
        ("2020-05-17T10:30", "2020-05-17T10:30:00Z"),
    ],
)
def test_nav_date(value: Any, expected: str) -> None:
    nav_date = parse(obj(navDate=value)).nav_date
    assert nav_date == expected
    if expected:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", nav_date)


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("spring 1450", "'spring 1450' is not a date (use YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)"),
        ("1450-13", "'1450-13' is not a date"),
        ("1450-00", "'1450-00' is not a date"),
        ("1450-02-30", "'1450-02-30' is not a date"),
        ("14500", "'14500' is not a date"),
        ("c. 1450", "'c. 1450' is not a date"),
        ("2020-05-17T25:00:00Z", "is not a date"),
        ("0000", "'0000' is not a date"),
        (0, "expected a date, got int 0"),
        (-5, "expected a date, got int -5"),
        (10000, "expected a date, got int 10000"),
        (True, "expected a date, got bool True"),
        (1450.5, "expected a date, got float 1450.5"),
        (["1450"], "expected a date, got a list"),
        ({"year": 1450}, "expected a date, got a mapping"),
    ],
)
def test_nav_date_errors(value: Any, phrase: str) -> None:
    error = failure(obj(navDate=value))
    assert error.field == "navDate"
    assert phrase in error.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (800, "0800-01-01T00:00:00Z"),
        ("0800-06", "0800-06-01T00:00:00Z"),
        (dt.date(999, 12, 31), "0999-12-31T00:00:00Z"),
    ],
)
def test_nav_date_early_years_are_four_digits(value: Any, expected: str) -> None:
    assert parse(obj(navDate=value)).nav_date == expected


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_nav_date_out_of_range_after_utc_conversion(value: str) -> None:
    assert failure(obj(navDate=value)).field == "navDate"


# -- behavior, viewingDirection, collection ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        ("paged", ("paged",)),
        (["individuals", "no-repeat"], ("individuals", "no-repeat")),
        (("continuous",), ("continuous",)),
        (" paged ", ("paged",)),
        *[(b, (b,)) for b in sorted(MANIFEST_BEHAVIORS)],
    ],
)
def test_manifest_behavior(value: Any, expected: tuple[str, ...]) -> None:
    assert parse(obj(behavior=value)).behavior == expected


@pytest.mark.parametrize("value", ["facing-pages", "sequence", "multi-part", "together", "Paged", "paged individuals"])
def test_manifest_behavior_refused(value: str) -> None:
    error = failure(obj(behavior=["paged", value]))
    assert error.field == "behavior"
    assert error.reason.startswith(f"{value!r} is not one of auto-advance, continuous, individuals")


@pytest.mark.parametrize("value", [None, "", *sorted(VIEWING_DIRECTIONS)])
def test_viewing_direction(value: Any) -> None:
    assert parse(obj(viewingDirection=value)).viewing_direction == (value or "")


@pytest.mark.parametrize(("value", "phrase"), [("rtl", "'rtl' is not one of"), ("Right-to-left", "is not one of")])
def test_viewing_direction_refused(value: str, phrase: str) -> None:
    error = failure(obj(viewingDirection=value))
    assert error.field == "viewingDirection"
    assert phrase in error.reason
    assert "bottom-to-top, left-to-right, right-to-left, top-to-bottom" in error.reason


def test_viewing_direction_must_be_text() -> None:
    error = failure(obj(viewingDirection=["left-to-right"]))
    assert (error.field, error.reason) == ("viewingDirection", "expected text, got a list")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("manuscripts", "manuscripts"),
        ("manuscripts/hours", "manuscripts/hours"),
        ("/manuscripts/hours/", "manuscripts/hours"),
        (" manuscripts/ ", "manuscripts"),
        ("", ""),
        ("/", ""),
        (2024, "2024"),
        ("fr-é_1.2", "fr-é_1.2"),
    ],
)
def test_collection_path(value: Any, expected: str) -> None:
    assert parse(obj(collection=value)).collection == expected


def test_collection_absent_is_none() -> None:
    assert parse(obj()).collection is None


@pytest.mark.parametrize("value", ["a//b", "a/../b", "..", "a/./b", "a b", "a?b", "a#b", "a%b", "a\\b"])
def test_collection_path_refused(value: str) -> None:
    error = failure(obj(collection=value))
    assert error.field == "collection"
    assert error.reason.endswith("is not a collection path")


def test_collection_path_must_be_text() -> None:
    error = failure(obj(collection=["a"]))
    assert (error.field, error.reason) == ("collection", "expected text, got a list")


# -- provider ------------------------------------------------------------------------------------

KBR = "https://www.kbr.be/"


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (
            {"label": "KBR", "homepage": KBR},
            Agent(KBR, none("KBR"), homepage=(Link(KBR, "Text", format="text/html"),)),
        ),
        (
            {"id": "https://viaf.org/viaf/1/", "label": {"fr": "KBR", "nl": "KBR"}, "homepage": KBR},
            Agent(
                "https://viaf.org/viaf/1/",
                (("fr", ("KBR",)), ("nl", ("KBR",))),
                homepage=(Link(KBR, "Text", format="text/html"),),
            ),
        ),
        ({"id": KBR, "label": "KBR"}, Agent(KBR, none("KBR"))),
        (
            {"id": KBR, "label": "KBR", "logo": "/iiif/3/logos/kbr.png"},
            Agent(KBR, none("KBR"), logo=(Link("/iiif/3/logos/kbr.png", "Image", format="image/png"),)),
        ),
        (
            {"id": KBR, "label": "KBR", "seeAlso": "https://www.kbr.be/org.json"},
            Agent(KBR, none("KBR"), see_also=(Link("https://www.kbr.be/org.json", "Dataset"),)),
        ),
        (
            {"label": "KBR", "homepage": [{"id": KBR, "label": "Site"}, "https://kbr.be/en/"]},
            Agent(
                KBR,
                none("KBR"),
                homepage=(
                    Link(KBR, "Text", label=none("Site"), format="text/html"),
                    Link("https://kbr.be/en/", "Text", format="text/html"),
                ),
            ),
        ),
    ],
)
def test_provider(provider: dict[str, Any], expected: Agent) -> None:
    assert parse(obj(provider=provider)).provider == (expected,)
    assert parse(obj(provider=[provider, provider])).provider == (expected, expected)


@pytest.mark.parametrize(
    ("logo", "expected_format"),
    [
        ("/iiif/3/logos/kbr.png", "image/png"),
        ("https://kbr.be/logo.PNG", "image/png"),
        ("https://kbr.be/logo.jpg", "image/jpeg"),
        ("https://kbr.be/logo.jpeg", "image/jpeg"),
        ("https://kbr.be/logo.svg", "image/svg+xml"),
        ("https://kbr.be/logo.svg?v=2", "image/svg+xml"),
        ("https://kbr.be/iiif/3/logo/full/max/0/default", "image/jpeg"),
        ("/iiif/3/logo/full/max/0/default", "image/jpeg"),
        ("https://kbr.be/logo", ""),
        ({"id": "https://kbr.be/logo", "format": "image/webp"}, "image/webp"),
        ({"id": "https://kbr.be/logo.png", "format": "image/gif"}, "image/gif"),
    ],
)
def test_provider_logo_format(logo: Any, expected_format: str) -> None:
    (agent,) = parse(obj(provider={"id": KBR, "label": "KBR", "logo": logo})).provider
    (link,) = agent.logo
    assert (link.type, link.format) == ("Image", expected_format)
    assert link.id == (logo["id"] if isinstance(logo, dict) else logo)


def test_provider_logo_type_is_always_image() -> None:
    (agent,) = parse(
        obj(provider={"id": KBR, "label": "KBR", "logo": {"id": "/iiif/3/l.png", "type": "Text"}})
    ).provider
    assert agent.logo == (Link("/iiif/3/l.png", "Image", format="image/png"),)


@pytest.mark.parametrize(
    ("provider", "field", "phrase"),
    [
        ({"label": "KBR"}, "provider[0].id", "is required (or give a homepage)"),
        ({"label": "KBR", "homepage": []}, "provider[0].id", "is required (or give a homepage)"),
        ({"id": "ftp://kbr.be/", "label": "KBR"}, "provider[0].id", "'ftp://kbr.be/' is not an http(s) URL"),
        ({"id": "/iiif/3/kbr", "label": "KBR"}, "provider[0].id", "is not an http(s) URL"),
        ({"id": "", "label": "KBR"}, "provider[0].id", "is required"),
        ({"id": KBR, "label": "KBR", "logo": "//cdn.kbr.be/l.png"}, "provider[0].logo[0].id", "is not an http(s) URL"),
        ({"id": KBR, "label": "KBR", "logo": "/iiif/3/a b.png"}, "provider[0].logo[0].id", "is not an http(s) URL"),
        ({"id": KBR, "label": "KBR", "logo": "logos/kbr.png"}, "provider[0].logo[0].id", "is not an http(s) URL"),
        ({"id": KBR, "label": "KBR", "homepage": "/about"}, "provider[0].homepage[0].id", "is not an http(s) URL"),
        ({"id": KBR, "label": "KBR", "seeAlso": "data:x"}, "provider[0].seeAlso[0].id", "is not an http(s) URL"),
        ({"id": KBR, "label": "KBR", "logo": [5]}, "provider[0].logo[0]", "expected a mapping of fields, got int 5"),
        ({"id": KBR, "label": "KBR", "logo": [[KBR]]}, "provider[0].logo[0]", "expected a mapping of fields"),
    ],
)
def test_provider_errors(provider: dict[str, Any], field: str, phrase: str) -> None:
    error = failure(obj(provider=provider))
    assert error.field == field
    assert phrase in error.reason


@pytest.mark.parametrize("provider", ["KBR", 5])
def test_provider_must_be_a_mapping(provider: Any) -> None:
    error = failure(obj(provider=provider))
    assert error.field == "provider[0]"
    assert error.reason.startswith("expected a mapping of fields")


# -- links and URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("homepage", "https://kbr.be/book", (Link("https://kbr.be/book", "Text", format="text/html"),)),
        ("homepage", "http://kbr.be/book", (Link("http://kbr.be/book", "Text", format="text/html"),)),
        (
            "homepage",
            {"id": "https://kbr.be/b", "label": {"fr": "Notice"}, "format": "text/plain", "language": ["fr", "nl"]},
            (Link("https://kbr.be/b", "Text", (("fr", ("Notice",)),), "text/plain", language=("fr", "nl")),),
        ),
        (
            "homepage",
            {"id": "https://kbr.be/b", "language": "fr"},
            (Link("https://kbr.be/b", "Text", format="text/html", language=("fr",)),),
        ),
        (
            "homepage",
            ["https://kbr.be/a", "https://kbr.be/b"],
            (
                Link("https://kbr.be/a", "Text", format="text/html"),
                Link("https://kbr.be/b", "Text", format="text/html"),
            ),
        ),
        ("seeAlso", "https://kbr.be/b.json", (Link("https://kbr.be/b.json", "Dataset"),)),
        (
            "seeAlso",
            {
                "id": "https://kbr.be/b.xml",
                "type": "Text",
                "format": "application/xml",
                "profile": "http://www.loc.gov/mods/v3",
            },
            (Link("https://kbr.be/b.xml", "Text", format="application/xml", profile="http://www.loc.gov/mods/v3"),),
        ),
        ("homepage", None, ()),
        ("seeAlso", [], ()),
    ],
)
def test_links(field: str, value: Any, expected: tuple[Link, ...]) -> None:
    description = parse(obj(**{field: value}))
    assert (description.homepage if field == "homepage" else description.see_also) == expected
    collection = parse_collection({field: value}, SOURCE)
    assert (collection.homepage if field == "homepage" else collection.see_also) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://kbr.be/",
        "javascript:alert(1)",
        "mailto:info@kbr.be",
        "file:///etc/passwd",
        "www.kbr.be",
        "kbr.be/book",
        "https://",
        "https:///path",
        "/book",
        "//kbr.be/book",
        "https://kbr.be/a b",
        "https://kbr.be/a\tb",
        "https://kbr.be/a\nb",
        "https://kbr.be/\u00a0x",
        "5",
    ],
)
def test_urls_refused(url: str) -> None:
    for field in ("homepage", "seeAlso"):
        error = failure(obj(**{field: url}))
        assert error.field == f"{field}[0].id"
        assert error.reason == f"{url!r} is not an http(s) URL"


@pytest.mark.parametrize("value", ["", {"label": "x"}, {"id": None}])
def test_url_required(value: Any) -> None:
    error = failure(obj(homepage=value))
    assert (error.field, error.reason) == ("homepage[0].id", "is required")


def test_url_surrounding_spaces_are_trimmed() -> None:
    assert parse(obj(homepage="  https://kbr.be/b  ")).homepage[0].id == "https://kbr.be/b"


# -- metadata and requiredStatement --------------------------------------------------------------


def test_metadata_and_required_statement() -> None:
    description = parse(
        obj(
            metadata=[
                {"label": {"en": "Creator", "fr": "Auteur"}, "value": "Anonymous"},
                {"label": "Date", "value": ["c. 1450", "c. 1460"]},
            ],
            requiredStatement={"label": "Attribution", "value": {"en": "KBR", "nl": "KBR"}},
        )
    )
    assert description.metadata == (
        MetadataEntry((("en", ("Creator",)), ("fr", ("Auteur",))), none("Anonymous")),
        MetadataEntry(none("Date"), none("c. 1450", "c. 1460")),
    )
    assert description.required_statement == MetadataEntry(none("Attribution"), (("en", ("KBR",)), ("nl", ("KBR",))))


@pytest.mark.parametrize(
    ("data", "field", "phrase"),
    [
        (obj(metadata={"label": "a", "value": "b"}), "metadata", "expected a list, got a mapping"),
        (obj(metadata="Creator: Anon"), "metadata", "expected a list, got str"),
        (obj(metadata=["Creator"]), "metadata[0]", "expected a mapping of fields, got str 'Creator'"),
        (obj(requiredStatement="KBR"), "requiredStatement", "expected a mapping of fields, got str 'KBR'"),
    ],
)
def test_metadata_shape_errors(data: dict[str, Any], field: str, phrase: str) -> None:
    error = failure(data)
    assert error.field == field
    assert phrase in error.reason


# -- a full description --------------------------------------------------------------------------


def test_full_object_description() -> None:
    data = {
        "label": {"en": "Book of hours", "fr": "Livre d'heures"},
        "summary": "Flemish, 15th century",
        "metadata": [{"label": "Shelfmark", "value": "ms. 9026"}],
        "rights": "http://creativecommons.org/publicdomain/mark/1.0/",
        "requiredStatement": {"label": "Attribution", "value": "KBR"},
        "provider": {"label": "KBR", "homepage": KBR, "logo": "/iiif/3/logos/kbr.png"},
        "homepage": "https://opac.kbr.be/9026",
        "seeAlso": "https://opac.kbr.be/9026.json",
        "navDate": 1450,
        "behavior": "paged",
        "viewingDirection": "left-to-right",
        "pages": ["ms9026/f1r", {"image": "ms9026/f1v", "label": "1v", "behavior": "facing-pages"}, "ms9026/f2r"],
        "ranges": [{"label": "Calendar", "pages": "1-2"}],
        "thumbnail": 2,
        "collection": "/manuscripts/",
    }
    assert parse(data) == ObjectDescription(
        source=SOURCE,
        label=(("en", ("Book of hours",)), ("fr", ("Livre d'heures",))),
        summary=none("Flemish, 15th century"),
        metadata=(MetadataEntry(none("Shelfmark"), none("ms. 9026")),),
        rights="http://creativecommons.org/publicdomain/mark/1.0/",
        required_statement=MetadataEntry(none("Attribution"), none("KBR")),
        provider=(
            Agent(
                KBR,
                none("KBR"),
                homepage=(Link(KBR, "Text", format="text/html"),),
                logo=(Link("/iiif/3/logos/kbr.png", "Image", format="image/png"),),
            ),
        ),
        homepage=(Link("https://opac.kbr.be/9026", "Text", format="text/html"),),
        see_also=(Link("https://opac.kbr.be/9026.json", "Dataset"),),
        pages=(
            Page("ms9026/f1r"),
            Page("ms9026/f1v", label=none("1v"), behavior=("facing-pages",)),
            Page("ms9026/f2r"),
        ),
        ranges=(RangeSpec(none("Calendar"), (0, 1)),),
        nav_date="1450-01-01T00:00:00Z",
        behavior=("paged",),
        viewing_direction="left-to-right",
        thumbnail=1,
        thumbnail_image="",
        collection="manuscripts",
    )


# -- parse_collection ----------------------------------------------------------------------------


def test_parse_collection_accepts_its_fields() -> None:
    data = {
        "label": {"en": "Manuscripts"},
        "summary": "Medieval",
        "metadata": [{"label": "Count", "value": 12}],
        "rights": "http://rightsstatements.org/vocab/NoC-US/1.0/",
        "requiredStatement": {"label": "Attribution", "value": "KBR"},
        "provider": {"label": "KBR", "homepage": KBR},
        "homepage": "https://kbr.be/mss",
        "seeAlso": "https://kbr.be/mss.json",
    }
    description = parse_collection(data, "manuscripts/_collection.yaml")
    assert type(description) is Description
    assert description == Description(
        source="manuscripts/_collection.yaml",
        label=(("en", ("Manuscripts",)),),
        summary=none("Medieval"),
        metadata=(MetadataEntry(none("Count"), none("12")),),
        rights="http://rightsstatements.org/vocab/NoC-US/1.0/",
        required_statement=MetadataEntry(none("Attribution"), none("KBR")),
        provider=(Agent(KBR, none("KBR"), homepage=(Link(KBR, "Text", format="text/html"),)),),
        homepage=(Link("https://kbr.be/mss", "Text", format="text/html"),),
        see_also=(Link("https://kbr.be/mss.json", "Dataset"),),
    )


def test_parse_collection_empty_mapping() -> None:
    assert parse_collection({}, "c.yaml") == Description(source="c.yaml")


@pytest.mark.parametrize("field", ["pages", "ranges", "navDate", "behavior", "viewingDirection", "collection", "x"])
def test_parse_collection_refuses_object_fields(field: str) -> None:
    with pytest.raises(DescriptionError) as info:
        parse_collection({"label": "x", field: ["p1"]}, "c.yaml")
    assert (info.value.source, info.value.field) == ("c.yaml", field)
    assert info.value.reason.startswith("unknown field (known: access, degraded_max, homepage, label, metadata")


@pytest.mark.parametrize(("data", "phrase"), [(None, "got nothing"), (["x"], "got a list"), ("x", "got str 'x'")])
def test_parse_collection_needs_a_mapping(data: Any, phrase: str) -> None:
    with pytest.raises(DescriptionError) as info:
        parse_collection(data, "c.yaml")
    assert info.value.field == ""
    assert phrase in info.value.reason


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rights": "CC0"}, "rights"),
        ({"label": {"fr_FR": "x"}}, "label"),
        ({"provider": {"label": "KBR"}}, "provider[0].id"),
        ({"homepage": "ftp://x"}, "homepage[0].id"),
        ({"metadata": [{"label": "x"}]}, "metadata[0].value"),
    ],
)
def test_parse_collection_checks_its_fields(data: dict[str, Any], field: str) -> None:
    with pytest.raises(DescriptionError) as info:
        parse_collection(data, "c.yaml")
    assert info.value.field == field


def test_parse_collection_does_not_silently_drop_a_thumbnail() -> None:
    with pytest.raises(DescriptionError) as info:
        parse_collection({"label": "x", "thumbnail": "../../secret"}, "c.yaml")
    assert info.value.field.startswith("thumbnail")


# -- object ids, natural order, folder labels ----------------------------------------------------


@pytest.mark.parametrize(
    "object_id", ["book", "a/b", "fr-é_1.2", "ms.9026", "A/B/C", "..a", "a..", "a.b/c..d", "日本", "x" * 300]
)
def test_check_object_id_accepts(object_id: str) -> None:
    assert check_object_id(object_id, SOURCE) == object_id


@pytest.mark.parametrize(
    "object_id",
    [
        "",
        "/",
        "a//b",
        "/a",
        "a/",
        ".",
        "..",
        "./a",
        "a/.",
        "a/..",
        "a/../b",
        "a?b",
        "a#b",
        "a%b",
        "a%2Fb",
        "a b",
        " a",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x1fb",
        "a\x7fb",
        "a\\b",
    ],
)
def test_check_object_id_refuses(object_id: str) -> None:
    with pytest.raises(DescriptionError) as info:
        check_object_id(object_id, "catalogue.csv line 3")
    assert (info.value.source, info.value.field) == ("catalogue.csv line 3", "")
    assert info.value.reason == (
        f"{object_id!r} is not a usable object id (use letters, digits, '-', '_', '.', and '/')"
    )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["page-10", "page-2", "page-1"], ["page-1", "page-2", "page-10"]),
        (["f10r", "f2v", "f2r", "f1r"], ["f1r", "f2r", "f2v", "f10r"]),
        (["B", "a", "C"], ["a", "B", "C"]),
        (["Page-2", "page-10", "PAGE-1"], ["PAGE-1", "Page-2", "page-10"]),
        (["vol2/p10", "vol2/p9", "vol10/p1", "vol1/p1"], ["vol1/p1", "vol2/p9", "vol2/p10", "vol10/p1"]),
        (["10", "9", "a", "1a"], ["1a", "9", "10", "a"]),
        (["x", "x1", "x0"], ["x", "x0", "x1"]),
    ],
)
def test_natural_key_order(names: list[str], expected: list[str]) -> None:
    assert sorted(names, key=natural_key) == expected


def test_natural_key_values() -> None:
    assert natural_key("Page-10b") == ((1, "page-"), (0, 10), (1, "b"))
    assert natural_key("page-2") == natural_key("PAGE-2") == natural_key("page-02")


@given(
    st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12), st.text("ab-_", max_size=4)
)
def test_natural_key_sorts_numbers_numerically(a: int, b: int, prefix: str) -> None:
    left, right = natural_key(f"{prefix}{a}.tif"), natural_key(f"{prefix}{b}.tif")
    assert (left < right) == (a < b)
    assert (left == right) == (a == b)


# Category "No" (superscripts, circled digits) is left out: see test_natural_key_accepts_superscript_digits.
@given(st.lists(st.text(st.characters(blacklist_categories=("No", "Cs")), max_size=8), max_size=8))
def test_natural_key_orders_any_names(names: list[str]) -> None:
    ordered = sorted(names, key=natural_key)
    for left, right in itertools.pairwise(ordered):
        assert natural_key(left) <= natural_key(right)
        assert natural_key(left) == natural_key(right) or left.casefold() != right.casefold()


@pytest.mark.parametrize("name", ["fig1²", "p1①", "10³"])
def test_natural_key_accepts_superscript_digits(name: str) -> None:
    assert sorted(["a", name, "z"], key=natural_key)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("book_of-hours", "Book of hours"),
        ("page-1", "Page 1"),
        ("page_001", "Page 001"),
        ("a  b__c--d", "A b c d"),
        ("  hours ", "Hours"),
        ("_hours_", "Hours"),
        ("MixedCase", "MixedCase"),
        ("Mixed_Case", "Mixed Case"),
        ("KBR-ms", "KBR ms"),
        ("001", "001"),
        ("f1r", "F1r"),
        ("école", "École"),
        ("x", "X"),
        ("___", "___"),
    ],
)
def test_folder_label(name: str, label: str) -> None:
    assert folder_label(name) == label
