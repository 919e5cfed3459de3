"""The access log: one line per request, text or JSON, with time, id, real client, duration, way."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings, SettingsError, TrustedProxies, load_settings
from iiifserver.web.observer import AccessLog, RequestInfo, Way
from tests.web.conftest import ImageRoot


def info(headers: list[tuple[bytes, bytes]], client: str = "10.1.2.3") -> RequestInfo:
    return RequestInfo.of("GET", b"/iiif/3/a/info.json", b"", "1.1", (client, 4000), 0.0, 0.0025, headers)


def test_json_lines_carry_every_field(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog("json", TrustedProxies("10.0.0.0/8"))
    headers = [(b"x-request-id", b"abc-123"), (b"x-forwarded-for", b"198.51.100.7, 10.9.9.9")]
    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        log.answered(info(headers), 200, 512, Way.PROTOCOL_MEMO)
    line = json.loads(caplog.records[0].getMessage())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("time"))
    assert line == {
        "request_id": "abc-123",
        "client": "198.51.100.7",  # the right-most hop that is not a trusted proxy
        "method": "GET",
        "path": "/iiif/3/a/info.json",
        "http_version": "1.1",
        "status": 200,
        "bytes": 512,
        "duration_ms": 2.5,
        "way": "protocol_memo",
    }


def test_forwarded_for_is_ignored_from_untrusted_peers_and_ids_are_made(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog("json", TrustedProxies("127.0.0.1"))
    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        log.answered(info([(b"x-forwarded-for", b"1.2.3.4")]), 200, 1, Way.FRAMEWORK)
        log.answered(info([(b"x-request-id", b"bad\x01id")]), 200, 1, Way.FRAMEWORK)
    first, second = (json.loads(record.getMessage()) for record in caplog.records)
    assert first["client"] == "10.1.2.3"  # a client cannot pretend to be someone else
    assert first["request_id"] != second["request_id"]
    assert second["request_id"].isascii()
    assert "\x01" not in second["request_id"]


def test_every_request_logged_once_through_the_app(
    image_root: ImageRoot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(images=image_root.root, cache=tmp_path, access_log=True, log_format="json"))

    async def run() -> None:
        for path in ("/iiif/3/sample/info.json", "/iiif/3/sample/info.json", "/health", "/nothing"):
            await call(app, path, headers=[("host", "testserver")])
        await app.state.image_service.drain()

    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        asyncio.run(run())
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "iiifserver.access"]
    assert [(line["path"], line["status"], line["way"]) for line in lines] == [
        ("/iiif/3/sample/info.json", 200, "endpoint"),
        ("/iiif/3/sample/info.json", 200, "memo"),
        ("/health", 200, "framework"),
        ("/nothing", 404, "framework"),
    ]


def test_trusted_proxies_accept_cidr_ranges() -> None:
    proxies = TrustedProxies("127.0.0.0/8, 10.0.0.5, fd00::/8")
    assert "127.0.0.1" in proxies
    assert "127.9.9.9" in proxies
    assert "10.0.0.5" in proxies
    assert "10.0.0.6" not in proxies
    assert "fd12::1" in proxies
    assert "fe80::1" not in proxies
    assert "not-an-address" not in proxies
    assert "127.0.0.1" in proxies  # remembered answer, same result
    with pytest.raises(SettingsError, match="trusted_proxies"):
        load_settings(environ={}, overrides={"trusted_proxies": "10.0.0.0/33"})


def test_forwarded_headers_believed_from_a_cidr_range(make_http: Any) -> None:
    http = make_http(trusted_proxies="10.0.0.0/8")
    forwarded = {"x-forwarded-host": "images.example.org", "x-forwarded-proto": "https"}
    url = "/iiif/3/sample/info.json"
    assert http.get(url, headers=forwarded, client="10.20.30.40").json()["id"] == (
        "https://images.example.org/iiif/3/sample"
    )
    assert http.get(url, headers=forwarded, client="203.0.113.9").json()["id"] == "http://testserver/iiif/3/sample"
