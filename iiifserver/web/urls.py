"""Public URLs of this server.

Owns: the base URL that ids in info.json (and Location headers) are built from: the configured
public URL, else the request's own scheme and Host, with X-Forwarded-Proto/Host/Prefix believed
only from trusted proxies (attack case E10: never from arbitrary clients).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from starlette.requests import Request
from starlette.types import Scope

from iiifserver.config import Settings, TrustedProxies

_HOST = re.compile(r"[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?", re.ASCII)
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~\-]+)*", re.ASCII)


def public_base(request: Request, settings: Settings) -> str:
    """``scheme://host[/prefix]`` with no trailing slash."""
    return scope_base(request.scope, settings)


def scope_base(scope: Scope, settings: Settings, headers: Mapping[bytes, bytes] | None = None) -> str:
    """``public_base`` from the ASGI scope; ``headers``: its first values by lower-case name, if at hand."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if headers is None:
        headers = first_values(scope["headers"], BASE_HEADERS)
    client = scope.get("client")
    trusted = client is not None and client[0] in _trusted(settings.trusted_proxies)
    return _base(
        # From the scope, not request.url: that has no scheme when neither Host nor server is known.
        scope.get("scheme") or "http",
        headers.get(b"host", b""),
        tuple(scope.get("server") or ("localhost", None)),
        tuple(headers.get(name, b"") for name in _FORWARDED) if trusted else None,
    )


BASE_HEADERS = (b"host", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix")
_FORWARDED = BASE_HEADERS[1:]


def first_values(raw: Iterable[tuple[bytes, bytes]], names: Iterable[bytes]) -> dict[bytes, bytes]:
    """The first value of each of ``names`` among raw ASGI headers (whose names are lower-case)."""
    wanted = frozenset(names)
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in wanted and name not in found:
            found[name] = value
    return found


@functools.lru_cache(maxsize=16)
def _trusted(trusted_proxies: str) -> TrustedProxies:
    # One per setting value, so its per-address memory of CIDR matches is shared by all requests.
    return TrustedProxies(trusted_proxies)


# Pure, and the same few inputs arrive on every request: remembered (bounded, so hostile Host
# headers only evict).
@functools.lru_cache(maxsize=1024)
def _base(
    scheme: str, raw_host: bytes, server: tuple[object, ...], forwarded: tuple[bytes, bytes, bytes] | None
) -> str:
    host = raw_host.decode("latin-1")
    prefix = ""
    if forwarded is not None:
        proto, fwd_host, fwd_prefix = (_first(value.decode("latin-1")) for value in forwarded)
        if proto in ("http", "https"):
            scheme = proto
        if fwd_host:
            host = fwd_host
        fwd_prefix = fwd_prefix.rstrip("/")
        if fwd_prefix and _PREFIX.fullmatch(fwd_prefix):
            prefix = fwd_prefix
    if not _HOST.fullmatch(host):
        host = _server_host(server)
    return f"{scheme}://{host}{prefix}"


def _server_host(server: tuple[object, ...]) -> str:
    """The listening address, for a request without a usable Host header (HTTP/1.0, garbage).

    ASGI allows a ``None`` port (uvicorn sends ``(socket_path, None)`` on a Unix socket), and an
    IPv6 address needs brackets; anything that still is not a host name becomes ``localhost``.
    """
    name, port = str(server[0]), server[1]
    if ":" in name:
        name = f"[{name}]"
    host = name if port is None else f"{name}:{port}"
    return host if _HOST.fullmatch(host) else "localhost"


def _first(value: str | None) -> str:
    return value.split(",")[0].strip() if value else ""
