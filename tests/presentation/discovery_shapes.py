"""Shape checks of IIIF Change Discovery API 1.0 documents, written from the specification's text
(https://iiif.io/api/discovery/1.0/, sections 2 and 3), independently of ``iiifserver.presentation``.

Each function returns the problems found (empty: the document conforms). MUSTs are always checked;
``strict`` adds the SHOULDs iiifserver promises (``first`` on the collection, ``partOf`` on pages,
``endTime`` on activities, ``@context`` first). ``test_discovery.py`` runs them on the
specification's own examples (they pass) and on broken documents (each problem is caught).
"""

from __future__ import annotations

import re
from typing import Any

CONTEXT = "http://iiif.io/api/discovery/1/context.json"
# Section 3.3: the activity types this specification uses.
ACTIVITY_TYPES = {"Create", "Update", "Delete", "Move", "Add", "Remove", "Refresh"}
# xsd:dateTime expressed in UTC (section 3.3, endTime): a Z or a zero offset.
UTC_DATETIME = re.compile(r"-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)")


def _is_http_uri(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"https?://[^\s/]+", value) is not None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _context_problems(document: dict[str, Any], strict: bool) -> list[str]:
    # 3.4.1: the top resource MUST have @context: the Discovery context, or an array ending with it.
    problems: list[str] = []
    context = document.get("@context")
    if context != CONTEXT and not (isinstance(context, list) and context and context[-1] == CONTEXT):
        problems.append(f"@context must be {CONTEXT} (or an array ending with it), not {context!r}")
    elif strict and next(iter(document)) != "@context":
        problems.append("@context should be the first key")
    return problems


def _reference_problems(name: str, value: Any, wanted_type: str) -> list[str]:
    """A JSON object with ``id`` (an HTTP(S) URI) and ``type`` equal to ``wanted_type``."""
    if not isinstance(value, dict):
        return [f"{name} must be a JSON object, not {value!r}"]
    problems = []
    if not _is_http_uri(value.get("id")):
        problems.append(f"{name}.id must be an HTTP(S) URI, not {value.get('id')!r}")
    if value.get("type") != wanted_type:
        problems.append(f"{name}.type must be {wanted_type}, not {value.get('type')!r}")
    return problems


def collection_problems(document: Any, *, strict: bool = True) -> list[str]:
    """Section 3.1, Ordered Collection."""
    if not isinstance(document, dict):
        return ["an Ordered Collection is a JSON object"]
    problems = _context_problems(document, strict)
    if not _is_http_uri(document.get("id")):
        problems.append("id must be an HTTP(S) URI")
    if document.get("type") != "OrderedCollection":
        problems.append(f"type must be OrderedCollection, not {document.get('type')!r}")
    if "last" not in document:
        problems.append("last is required")
    else:
        problems += _reference_problems("last", document["last"], "OrderedCollectionPage")
    if "first" in document:
        problems += _reference_problems("first", document["first"], "OrderedCollectionPage")
    elif strict:
        problems.append("first should be present")
    if "totalItems" in document and not _is_count(document["totalItems"]):
        problems.append(f"totalItems must be a non-negative integer, not {document['totalItems']!r}")
    if "orderedItems" in document or "items" in document:
        problems.append("the collection refers to its pages; it does not contain activities")
    return problems


def page_problems(document: Any, *, strict: bool = True) -> list[str]:
    """Section 3.2, Ordered Collection Page, and each of its activities (3.3)."""
    if not isinstance(document, dict):
        return ["an Ordered Collection Page is a JSON object"]
    problems = _context_problems(document, strict)
    if not _is_http_uri(document.get("id")):
        problems.append("id must be an HTTP(S) URI")
    if document.get("type") != "OrderedCollectionPage":
        problems.append(f"type must be OrderedCollectionPage, not {document.get('type')!r}")
    if "partOf" in document:
        problems += _reference_problems("partOf", document["partOf"], "OrderedCollection")
    elif strict:
        problems.append("partOf should be present")
    if "startIndex" in document and not _is_count(document["startIndex"]):
        problems.append(f"startIndex must be a non-negative integer, not {document['startIndex']!r}")
    for link in ("prev", "next"):
        if link in document:
            problems += _reference_problems(link, document[link], "OrderedCollectionPage")
    items = document.get("orderedItems")
    if not isinstance(items, list) or not items:
        problems.append("orderedItems must be an array with at least one item")
        return problems
    for index, item in enumerate(items):
        problems += [f"orderedItems[{index}]: {p}" for p in activity_problems(item, strict=strict)]
    # Ordered from the earliest endTime to the most recent (when they have one).
    times = [item.get("endTime") for item in items if isinstance(item, dict)]
    stamped = [t for t in times if isinstance(t, str) and UTC_DATETIME.fullmatch(t)]
    if stamped != sorted(stamped, key=_sort_key):
        problems.append("orderedItems must run from the earliest endTime to the most recent")
    return problems


def activity_problems(activity: Any, *, strict: bool = True) -> list[str]:
    """Section 3.3, Activities (as embedded in a page)."""
    if not isinstance(activity, dict):
        return ["an activity is a JSON object"]
    problems: list[str] = []
    kind = activity.get("type")
    if kind not in ACTIVITY_TYPES:
        problems.append(f"type must be a registered activity type, not {kind!r}")
    if "id" in activity and not _is_http_uri(activity["id"]):
        problems.append("id, when present, must be an HTTP(S) URI")
    if kind != "Refresh":  # Refresh "does not have an object or target"
        obj = activity.get("object")
        if not isinstance(obj, dict):
            problems.append("object is required and must be a JSON object")
        else:
            if not _is_http_uri(obj.get("id")):
                problems.append(f"object.id must be an HTTP(S) URI, not {obj.get('id')!r}")
            if not isinstance(obj.get("type"), str):
                problems.append("object.type is required")
    if kind == "Move":
        target = activity.get("target")
        if not isinstance(target, dict):
            problems.append("a Move must have a target object")
        else:
            if not _is_http_uri(target.get("id")):
                problems.append("target.id must be an HTTP(S) URI")
            elif isinstance(activity.get("object"), dict) and target.get("id") == activity["object"].get("id"):
                problems.append("target.id must differ from object.id")
            if (
                strict
                and isinstance(activity.get("object"), dict)
                and target.get("type") != activity["object"].get("type")
            ):
                problems.append("target.type should be the object's type")
    for name in ("endTime", "startTime"):
        if name in activity and not (isinstance(activity[name], str) and UTC_DATETIME.fullmatch(activity[name])):
            problems.append(f"{name} must be an xsd:dateTime in UTC, not {activity[name]!r}")
    if strict and kind != "Refresh" and "endTime" not in activity:
        problems.append("endTime should be present")
    return problems


def _sort_key(stamp: str) -> str:
    # All in UTC: comparing the text works once the zone is written one way and fractions padded.
    main, _, fraction = stamp.replace("+00:00", "Z").replace("-00:00", "Z").rstrip("Z").partition(".")
    return f"{main}.{fraction.ljust(9, '0')}"
