"""Tests for iiifserver.presentation.discovery: the Change Discovery documents, checked against the
shape checks of ``discovery_shapes`` (themselves checked here on the specification's examples)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from iiifserver.presentation.discovery import (
    Activity,
    ActivityType,
    Kind,
    activity_document,
    collection_document,
    page_count,
    page_document,
    page_range,
    resource_url,
    xsd_datetime,
)
from tests.presentation.discovery_shapes import activity_problems, collection_problems, page_problems

BASE = "https://iiif.example.org"
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z

# Section 3.1, "Complete Ordered Collection Example", verbatim.
SPEC_COLLECTION: dict[str, Any] = {
    "@context": "http://iiif.io/api/discovery/1/context.json",
    "id": "https://example.org/activity/all-changes",
    "type": "OrderedCollection",
    "totalItems": 21456,
    "rights": "http://creativecommons.org/licenses/by/4.0/",
    "seeAlso": [
        {
            "id": "https://example.org/dataset/all-dcat.jsonld",
            "type": "Dataset",
            "label": {"en": ["DCAT description of Collection"]},
            "format": "application/ld+json",
            "profile": "http://www.w3.org/ns/dcat#",
        }
    ],
    "partOf": [{"id": "https://example.org/aggregated-changes", "type": "OrderedCollection"}],
    "first": {"id": "https://example.org/activity/page-0", "type": "OrderedCollectionPage"},
    "last": {"id": "https://example.org/activity/page-214", "type": "OrderedCollectionPage"},
}

# Section 3.2, "Complete Ordered Collection Page Example", verbatim.
SPEC_PAGE: dict[str, Any] = {
    "@context": "http://iiif.io/api/discovery/1/context.json",
    "id": "https://example.org/activity/page-1",
    "type": "OrderedCollectionPage",
    "startIndex": 20,
    "partOf": {"id": "https://example.org/activity/all-changes", "type": "OrderedCollection"},
    "prev": {"id": "https://example.org/activity/page-0", "type": "OrderedCollectionPage"},
    "next": {"id": "https://example.org/activity/page-2", "type": "OrderedCollectionPage"},
    "orderedItems": [
        {
            "type": "Update",
            "object": {"id": "https://example.org/iiif/1/manifest", "type": "Manifest"},
            "endTime": "2018-03-10T10:00:00Z",
        }
    ],
}

# Section 2.1.5: a Refresh has no object and uses startTime.
SPEC_REFRESH = {"type": "Refresh", "summary": "System refresh initiated", "startTime": "2020-06-21T00:00:00Z"}


def test_the_checks_accept_the_specifications_examples() -> None:
    assert collection_problems(SPEC_COLLECTION) == []
    assert page_problems(SPEC_PAGE) == []
    assert activity_problems(SPEC_REFRESH) == []


def _broken(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("@context",), "http://iiif.io/api/presentation/3/context.json", "@context"),
        (("@context",), _DELETE, "@context"),
        (("type",), "Collection", "type must be OrderedCollection"),
        (("id",), "urn:x:y", "id must be an HTTP(S) URI"),
        (("last",), _DELETE, "last is required"),
        (("last", "type"), "OrderedCollection", "last.type"),
        (("first",), "https://example.org/activity/page-0", "first must be a JSON object"),
        (("totalItems",), -1, "totalItems"),
        (("totalItems",), "12", "totalItems"),
    ],
)
def test_the_collection_check_catches(path: tuple[str, ...], value: Any, problem: str) -> None:
    problems = collection_problems(_broken(SPEC_COLLECTION, path, value))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("type",), "OrderedCollection", "type must be OrderedCollectionPage"),
        (("orderedItems",), [], "at least one item"),
        (("startIndex",), 1.5, "startIndex"),
        (("prev", "type"), "OrderedCollection", "prev.type"),
        (("partOf", "type"), "Collection", "partOf.type"),
        (("orderedItems", 0, "type"), "Modify", "registered activity type"),
        (("orderedItems", 0, "object"), _DELETE, "object is required"),
        (("orderedItems", 0, "object", "id"), "/iiif/1/manifest", "object.id"),
        (("orderedItems", 0, "endTime"), "2018-03-10T10:00:00+02:00", "UTC"),
        (("orderedItems", 0, "endTime"), "yesterday", "UTC"),
        (("orderedItems", 0, "type"), "Move", "target"),
    ],
)
def test_the_page_check_catches(path: tuple[str | int, ...], value: Any, problem: str) -> None:
    problems = page_problems(_broken(SPEC_PAGE, path, value))
    assert any(problem in p for p in problems), problems


def test_the_page_check_catches_items_out_of_order() -> None:
    page = copy.deepcopy(SPEC_PAGE)
    later = copy.deepcopy(page["orderedItems"][0])
    later["endTime"] = "2018-03-09T10:00:00.5Z"
    page["orderedItems"].append(later)
    assert any("earliest endTime" in p for p in page_problems(page))


def _activity(position: int, kind_type: ActivityType = ActivityType.CREATE, **fields: Any) -> Activity:
    values: dict[str, Any] = {"kind": Kind.MANIFEST, "object_id": f"book-{position}", "end_time_ns": T0 + position}
    values.update(fields)
    return Activity(position, kind_type, **values)


@pytest.mark.parametrize(("total", "pages"), [(0, 1), (1, 1), (100, 1), (101, 2), (250, 3)])
def test_paging(total: int, pages: int) -> None:
    assert page_count(total, 100) == pages
    document = collection_document(BASE, total, 100)
    assert collection_problems(document) == []
    assert document["totalItems"] == total
    assert document["first"]["id"] == f"{BASE}/iiif/discovery/activity/page/0"
    assert document["last"]["id"] == f"{BASE}/iiif/discovery/activity/page/{pages - 1}"
    assert document["id"] == f"{BASE}/iiif/discovery/activity/all-changes"


def test_pages_link_backwards_and_forwards() -> None:
    total, size = 250, 100
    seen: list[int] = []
    for number in range(page_count(total, size)):
        positions = page_range(number, size)
        activities = [_activity(p) for p in positions if p < total]
        document = page_document(BASE, number, activities, total, size)
        assert page_problems(document) == [], number
        assert document["startIndex"] == number * size
        assert document["partOf"] == {"id": f"{BASE}/iiif/discovery/activity/all-changes", "type": "OrderedCollection"}
        assert ("prev" in document) == (number > 0)
        assert ("next" in document) == (number < 2)
        if number > 0:
            assert document["prev"]["id"].endswith(f"/page/{number - 1}")
        seen += [int(item["object"]["id"].split("book-")[1].split("/")[0]) for item in document["orderedItems"]]
    assert seen == list(range(total))  # each activity on exactly one page, oldest first


def test_activity_shapes() -> None:
    created = activity_document(BASE, _activity(0))
    assert created == {
        "type": "Create",
        "object": {"id": f"{BASE}/iiif/presentation/3/book-0/manifest", "type": "Manifest"},
        "endTime": "2023-11-14T22:13:20.000Z",
    }
    moved = activity_document(
        BASE, _activity(1, ActivityType.MOVE, object_id="old name/x", target_id="new", kind=Kind.MANIFEST)
    )
    assert moved["object"]["id"] == f"{BASE}/iiif/presentation/3/old%20name/x/manifest"
    assert moved["target"] == {"id": f"{BASE}/iiif/presentation/3/new/manifest", "type": "Manifest"}
    assert activity_problems(moved) == []
    top = activity_document(BASE, _activity(2, ActivityType.UPDATE, kind=Kind.COLLECTION, object_id=""))
    assert top["object"] == {"id": f"{BASE}/iiif/presentation/3/collection", "type": "Collection"}
    deleted = activity_document(BASE, _activity(3, ActivityType.DELETE, kind=Kind.COLLECTION, object_id="a/b"))
    assert deleted["object"]["id"] == f"{BASE}/iiif/presentation/3/collection/a/b"
    assert "target" not in deleted


def test_xsd_datetime() -> None:
    assert xsd_datetime(T0) == "2023-11-14T22:13:20.000Z"
    assert xsd_datetime(T0 + 123_999_999) == "2023-11-14T22:13:20.123Z"
    assert xsd_datetime(0) == "1970-01-01T00:00:00.000Z"


def test_resource_url() -> None:
    assert resource_url(BASE, Kind.MANIFEST, "a/b c") == f"{BASE}/iiif/presentation/3/a/b%20c/manifest"
    assert resource_url(BASE, Kind.COLLECTION, "books") == f"{BASE}/iiif/presentation/3/collection/books"
