"""Conditional requests: the one ETag matcher, and If-None-Match over If-Modified-Since."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from iiifserver.web.headers import etag_matches, http_date, not_modified, not_modified_by

TAG = b'"abc"'
MTIME_NS = 1_700_000_000_123_456_789


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (b'"abc"', True),
        (b'W/"abc"', True),  # weak comparison (RFC 9110 section 13.1.2)
        (b'"x", "abc"', True),
        (b'"x",W/"abc" ', True),
        (b"*", True),
        (b'"abcd"', False),
        (b"abc", False),  # unquoted: another tag
        (b'"x", "y"', False),
        (b"", False),
    ],
)
def test_etag_matches(header: bytes, matches: bool) -> None:
    assert etag_matches(header, TAG) is matches


def test_if_none_match_wins_over_if_modified_since() -> None:
    later = http_date(MTIME_NS + 10**12).encode()
    assert not_modified_by(None, later, TAG, MTIME_NS)
    assert not not_modified_by(b'"other"', later, TAG, MTIME_NS)  # present and not matching: 200
    assert not_modified_by(TAG, b"garbage", TAG, MTIME_NS)


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (http_date(MTIME_NS), True),  # the same second
        (http_date(MTIME_NS - 10**9), False),  # a second earlier: modified since
        ("Sun, 22 Nov 2026 10:00:00", False),  # no zone: ignored
        ("not a date", False),
    ],
)
def test_if_modified_since(since: str, expected: bool) -> None:
    assert not_modified_by(None, since.encode(), TAG, MTIME_NS) is expected


def test_not_modified_reads_starlette_headers() -> None:
    assert not_modified(Headers({"if-none-match": 'W/"abc"'}), '"abc"', MTIME_NS)
    assert not not_modified(Headers({}), '"abc"', MTIME_NS)
