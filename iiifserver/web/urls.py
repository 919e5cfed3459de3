"""Public URLs of this server.

Owns: the base URL that ids in info.json (and Location headers) are built from: the configured
public URL, else the request's own scheme and Host, with X-Forwarded-Proto/Host/Prefix believed
only from trusted proxies (attack case E10: never from arbitrary clients).
"""

from __future__ import annotations

import re

from starlette.requests import Request

from iiifserver.config import Settings

_HOST = re.compile(r"[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?", re.ASCII)
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~\-]+)*", re.ASCII)


def public_base(request: Request, settings: Settings) -> str:
    """``scheme://host[/prefix]`` with no trailing slash."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    # From the scope, not request.url: that has no scheme when neither Host nor server is known.
    scheme = request.scope.get("scheme") or "http"
    host = request.headers.get("host", "")
    prefix = ""
    client = request.client.host if request.client else ""
    if client in settings.trusted_proxy_set:
        proto = _first(request.headers.get("x-forwarded-proto"))
        if proto in ("http", "https"):
            scheme = proto
        fwd_host = _first(request.headers.get("x-forwarded-host"))
        if fwd_host:
            host = fwd_host
        fwd_prefix = _first(request.headers.get("x-forwarded-prefix")).rstrip("/")
        if fwd_prefix and _PREFIX.fullmatch(fwd_prefix):
            prefix = fwd_prefix
    if not _HOST.fullmatch(host):
        host = _server_host(request)
    return f"{scheme}://{host}{prefix}"


def _server_host(request: Request) -> str:
    """The listening address, for a request without a usable Host header (HTTP/1.0, garbage).

    ASGI allows a ``None`` port (uvicorn sends ``(socket_path, None)`` on a Unix socket), and an
    IPv6 address needs brackets; anything that still is not a host name becomes ``localhost``.
    """
    server = request.scope.get("server") or ("localhost", None)
    name, port = str(server[0]), server[1]
    if ":" in name:
        name = f"[{name}]"
    host = name if port is None else f"{name}:{port}"
    return host if _HOST.fullmatch(host) else "localhost"


def _first(value: str | None) -> str:
    return value.split(",")[0].strip() if value else ""
