"""IIIF Change Discovery API 1.0 documents: the activity log as an OrderedCollection and its pages.

Owns: the URLs of the log (``/iiif/discovery/activity/all-changes`` and
``/iiif/discovery/activity/page/{n}``, pages numbered from 0, oldest first), the ``Activity`` value
the change log stores and these documents read, how activities fall into pages (``page_size`` a
page, newest last, so every page but the last is full and never changes), and the JSON shape of
the collection, its pages and their activities (sections 2 and 3 of the specification).
Pure: no files, no clock, no HTTP. Must not know: how changes are found (``changes``) or kept
(``change_log``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iiifserver.presentation.builder import collection_url, manifest_url

CONTEXT = "http://iiif.io/api/discovery/1/context.json"
ACTIVITY_PREFIX = "/iiif/discovery/activity"
COLLECTION_NAME = "all-changes"


class ActivityType(enum.StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"
    MOVE = "Move"  # ``object`` is where it was, ``target`` where it is now


class Kind(enum.StrEnum):
    """The Presentation resources the log speaks of."""

    MANIFEST = "Manifest"
    COLLECTION = "Collection"


@dataclass(frozen=True, slots=True)
class Activity:
    """One recorded change. Ids are catalogue ids (an object id, a collection path; ``""`` is the
    top collection), made into URLs under the public base only when a document is built."""

    position: int  # 0 for the oldest: the ``startIndex`` arithmetic of the pages
    type: ActivityType
    kind: Kind
    object_id: str
    end_time_ns: int  # when the server recorded it (UTC, nanoseconds since the epoch)
    target_id: str | None = None  # Move only


def collection_id(base: str) -> str:
    return f"{base}{ACTIVITY_PREFIX}/{COLLECTION_NAME}"


def page_id(base: str, number: int) -> str:
    return f"{base}{ACTIVITY_PREFIX}/page/{number}"


def page_count(total: int, page_size: int) -> int:
    """Pages of a log of ``total`` activities; an empty log still has its (empty) page 0."""
    return max(1, -(-total // page_size))


def page_range(number: int, page_size: int) -> range:
    """The positions on page ``number``."""
    return range(number * page_size, (number + 1) * page_size)


def resource_url(base: str, kind: Kind, object_id: str) -> str:
    return manifest_url(base, object_id) if kind is Kind.MANIFEST else collection_url(base, object_id)


def xsd_datetime(time_ns: int) -> str:
    """UTC ``xsd:dateTime`` with a ``Z``; milliseconds kept, so activities a scan apart stay apart."""
    moment = datetime.fromtimestamp(time_ns // 1_000_000 / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def collection_document(base: str, total: int, page_size: int) -> dict[str, Any]:
    """The entry point (section 3.1): ``first`` and ``last`` pages and the number of activities."""
    pages = page_count(total, page_size)
    return {
        "@context": CONTEXT,
        "id": collection_id(base),
        "type": "OrderedCollection",
        "totalItems": total,
        "first": {"id": page_id(base, 0), "type": "OrderedCollectionPage"},
        "last": {"id": page_id(base, pages - 1), "type": "OrderedCollectionPage"},
    }


def page_document(base: str, number: int, activities: Sequence[Activity], total: int, page_size: int) -> dict[str, Any]:
    """Page ``number`` (section 3.2): ``activities`` are its items, oldest first; ``prev`` on all
    but the first page, ``next`` on all but the last."""
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "id": page_id(base, number),
        "type": "OrderedCollectionPage",
        "startIndex": number * page_size,
        "partOf": {"id": collection_id(base), "type": "OrderedCollection"},
    }
    if number > 0:
        document["prev"] = {"id": page_id(base, number - 1), "type": "OrderedCollectionPage"}
    if number < page_count(total, page_size) - 1:
        document["next"] = {"id": page_id(base, number + 1), "type": "OrderedCollectionPage"}
    document["orderedItems"] = [activity_document(base, activity) for activity in activities]
    return document


def activity_document(base: str, activity: Activity) -> dict[str, Any]:
    """One activity (section 3.3): embedded in a page, so without ``@context`` or ``id``."""
    document: dict[str, Any] = {
        "type": str(activity.type),
        "object": {"id": resource_url(base, activity.kind, activity.object_id), "type": str(activity.kind)},
    }
    if activity.type is ActivityType.MOVE:
        assert activity.target_id is not None
        document["target"] = {"id": resource_url(base, activity.kind, activity.target_id), "type": str(activity.kind)}
    document["endTime"] = xsd_datetime(activity.end_time_ns)
    return document
