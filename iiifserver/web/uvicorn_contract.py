"""What iiifserver relies on in uvicorn beyond its public API, checked before the server starts.

Owns: the list of uvicorn (and httptools) internals that ``web.http_protocol`` and ``serving``
build on, a check of each that serves nothing (attributes, signatures, and a scripted
conversation with the protocol over a fake transport), and the choice made from it at
start-up: our protocol and a socket per worker when everything holds; otherwise uvicorn's stock
httptools protocol with only the connection guard (``web.connection_guard``), or without it when
even the guard's hooks fail (then say loudly that a proxy must bound clients), or uvicorn's own
shared socket, with one warning naming what failed. An upgrade outside ``TESTED`` (the range
``pyproject.toml`` pins) may cost speed, never correctness.
Must not know: IIIF, the app.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import inspect
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from iiifserver.web.observer import Way
from iiifserver.web.response import Reply

log = logging.getLogger(__name__)
# The check's conversations speak through this: what uvicorn logs of them (say, a request it
# could not parse once an internal changed) is the check's business, reported as a breach.
_QUIET = logging.getLogger(__name__ + ".conversation")
_QUIET.setLevel(logging.CRITICAL + 1)

# The versions this contract was written and tested against: keep equal to pyproject.toml's pins.
TESTED = {"uvicorn": ">=0.55,<0.56", "httptools": ">=0.9,<0.10", "uvloop": ">=0.23,<0.24"}
STOCK_PROTOCOL = "httptools"  # uvicorn's own name for its HttpToolsProtocol

# The protocol instance attributes web/http_protocol.py reads or replaces, after connection_made.
PROTOCOL_ATTRIBUTES = (
    "app",
    "cycle",
    "pipeline",
    "flow",
    "server_state",
    "expect_100_continue",
    "root_path",
    "limit_concurrency",
    "parser",
    "transport",
    "scope",
)
PROTOCOL_METHODS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "shutdown",
    "on_headers_complete",
    "on_response_complete",
    "_start_asgi_task",  # our on_response_complete starts the next pipelined request itself
)
# What web/connection_guard.py hooks into or reads, in our protocol and in the guarded fallback.
GUARD_METHODS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
)
GUARD_ATTRIBUTES = ("app", "server_state", "loop", "transport", "cycle")  # and ``url`` once a request begins
CYCLE_ATTRIBUTES = ("response_started", "response_complete", "disconnected", "message_event")
PARSER_METHODS = ("get_method", "get_http_version", "should_keep_alive", "should_upgrade")


class Part(enum.Enum):
    PROTOCOL = "protocol"  # web/http_protocol.py: the HttpToolsProtocol subclass
    GUARD = "guard"  # web/connection_guard.py: deadlines and caps, in both protocols
    SUPERVISOR = "supervisor"  # serving.py: Multiprocess with a socket bound in each worker


@dataclass(frozen=True, slots=True)
class Breach:
    part: Part
    what: str

    def __str__(self) -> str:
        return f"{self.part.value}: {self.what}"


def check() -> list[Breach]:
    """Every relied-upon attribute, signature and behaviour that does not hold (empty: all hold)."""
    return [*protocol_breaches(), *supervisor_breaches()]


def http_protocol() -> type[asyncio.Protocol] | str:
    """The ``http`` for uvicorn's Config: ``web.http_protocol.HttpProtocol`` when its contract
    holds, else uvicorn's stock httptools protocol and one warning."""
    breaches = protocol_breaches()
    if not breaches:
        from iiifserver.web.http_protocol import HttpProtocol

        return HttpProtocol
    if any(breach.part is Part.GUARD for breach in breaches):
        _warn(
            breaches,
            "serving with uvicorn's stock httptools protocol WITHOUT the connection guard: slow and greedy "
            "clients are unbounded, put a proxy with header/body timeouts and size limits in front",
        )
        return STOCK_PROTOCOL
    from iiifserver.web.connection_guard import GuardedHttpToolsProtocol

    _warn(breaches, "serving with uvicorn's stock httptools protocol and the connection guard (correct, slower)")
    return GuardedHttpToolsProtocol


def per_worker_sockets() -> bool:
    """Whether ``serving`` may give each worker its own socket; else (one warning) uvicorn's
    shared socket, bound in the parent."""
    breaches = supervisor_breaches()
    if breaches:
        _warn(breaches, "workers share one socket, as uvicorn binds it (connections spread less evenly)")
        return False
    return True


def versions() -> dict[str, str]:
    """The installed version of each package in ``TESTED``."""
    found = {}
    for name in TESTED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def in_tested_range(version: str, spec: str) -> bool:
    """``version`` within ``spec`` (only the ``>=A.B,<C.D`` form ``TESTED`` uses)."""
    low, high = (part.strip().lstrip("<>=") for part in spec.split(","))
    try:
        numbers = _numbers(version)
    except ValueError:
        return False
    return _numbers(low) <= numbers[: len(_numbers(low))] and numbers[: len(_numbers(high))] < _numbers(high)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def _warn(breaches: list[Breach], consequence: str) -> None:
    installed = ", ".join(f"{name} {version}" for name, version in versions().items())
    tested = ", ".join(f"{name}{spec}" for name, spec in TESTED.items())
    failed = "; ".join(str(breach) for breach in breaches)
    log.warning(
        "uvicorn internals iiifserver relies on do not hold (%s); installed: %s; tested: %s; %s",
        failed,
        installed,
        tested,
        consequence,
    )


# -- the protocol ---------------------------------------------------------------------------


def protocol_breaches() -> list[Breach]:
    """What ``web.http_protocol`` relies on that does not hold (the guard's needs included)."""
    guard = guard_breaches()
    return [*guard, *_own_protocol_breaches()] if guard else _own_protocol_breaches()


def _own_protocol_breaches() -> list[Breach]:
    try:
        import httptools
        from uvicorn.config import Config
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.server import ServerState
    except ImportError as exc:
        return [_protocol(f"import: {exc}")]
    out: list[Breach] = []
    status_line = getattr(httptools_impl, "STATUS_LINE", None)
    if not isinstance(status_line, dict):
        out.append(_protocol("httptools_impl.STATUS_LINE is not a dict"))
    elif not all(isinstance(status_line.get(code), bytes) for code in range(100, 600)):
        out.append(_protocol("STATUS_LINE lacks a status line for some status in 100-599"))
    elif status_line[200] != b"HTTP/1.1 200 OK\r\n" or status_line[304] != b"HTTP/1.1 304 Not Modified\r\n":
        out.append(_protocol(f"STATUS_LINE[200] is {status_line[200]!r}, not b'HTTP/1.1 200 OK\\r\\n'"))
    base = getattr(httptools_impl, "HttpToolsProtocol", None)
    if not isinstance(base, type):
        return [*out, _protocol("httptools_impl.HttpToolsProtocol is missing")]
    out += [_protocol(f"HttpToolsProtocol.{name} is missing") for name in PROTOCOL_METHODS if not hasattr(base, name)]
    for name in ("on_headers_complete", "on_response_complete"):
        if hasattr(base, name) and list(inspect.signature(getattr(base, name)).parameters) != ["self"]:
            out.append(_protocol(f"HttpToolsProtocol.{name} takes arguments besides self"))
    if not callable(getattr(httptools, "parse_url", None)):
        out.append(_protocol("httptools.parse_url is missing"))
    if out:
        return out
    try:
        return _converse(Config, ServerState)
    except Exception as exc:  # any surprise in the conversation is a breach, never a crash
        return [_protocol(f"conversation failed: {type(exc).__name__}: {exc}")]


def _protocol(what: str) -> Breach:
    return Breach(Part.PROTOCOL, what)


class _Transport:
    """Records what the protocol writes; stands in for a connected socket."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False
        self.eof = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, chunks: Any) -> None:
        self.calls.append(("writelines", b"".join(bytes(chunk) for chunk in chunks)))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        self.closing = True


_HIT_LINES = b"x-contract: 1\r\ncontent-length: 2\r\n"


class _App:
    """Answers ``/hit`` in the protocol, the rest through ASGI; records both."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.called: list[str] = []

    def answer_in_protocol(self, scope: dict[str, Any]) -> Reply | None:
        self.asked.append(dict(scope))
        if scope["path"] != "/hit":
            return None
        return Reply(200, _HIT_LINES, b"ok", Way.PROTOCOL_MEMO)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.called.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"miss"})


def _converse(config_class: Any, state_class: Any) -> list[Breach]:
    """One connection to ``HttpProtocol`` over a fake transport: a request answered in the
    protocol (with a body to skip), a miss through uvicorn's cycle, a graceful shutdown."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _conversation(config_class, state_class)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop runs here: converse beside it
        return pool.submit(_conversation, config_class, state_class).result()


def _conversation(config_class: Any, state_class: Any) -> list[Breach]:
    from iiifserver.web.connection_guard import IDLE
    from iiifserver.web.http_protocol import HttpProtocol

    out: list[Breach] = []
    app = _App()
    config = config_class(app=app, log_config=None, proxy_headers=False, lifespan="off")
    state = state_class()
    state.default_headers = [(b"date", b"D")]
    loop = asyncio.new_event_loop()
    try:
        protocol = HttpProtocol(config=config, server_state=state, app_state={}, _loop=loop)
        protocol.access_log = False  # the check's own requests stay out of the server's access log
        protocol.logger = _QUIET
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        out += [_protocol(f"protocol.{name} is missing") for name in PROTOCOL_ATTRIBUTES if not hasattr(protocol, name)]
        if not hasattr(getattr(protocol, "flow", None), "write_paused"):
            out.append(_protocol("protocol.flow.write_paused is missing"))
        if not isinstance(getattr(getattr(protocol, "server_state", None), "default_headers", None), list):
            out.append(_protocol("server_state.default_headers is not a list"))
        parser = getattr(protocol, "parser", None)
        out += [_protocol(f"parser.{name} is missing") for name in PARSER_METHODS if not hasattr(parser, name)]
        if out:
            return out
        hit = b"GET /hit?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"  # a body to skip
        protocol.data_received(hit + b"GET /miss HTTP/1.1\r\n\r\n")
        expected = b"HTTP/1.1 200 OK\r\ndate: D\r\n" + _HIT_LINES + b"\r\nok"
        if not transport.calls or transport.calls[0] != ("writelines", expected):
            out.append(_protocol(f"an answer in the protocol was written as {transport.calls[:1]!r}"))
        asked = app.asked[0] if app.asked else {}
        seen = (asked.get("method"), asked.get("path"), asked.get("raw_path"), asked.get("query_string"))
        if seen != ("GET", "/hit", b"/hit", b"q=1") or (b"host", b"h") not in asked.get("headers", []):
            out.append(_protocol(f"the lookup saw scope {seen!r}"))
        if state.tasks:  # gather() of nothing would make a future on another loop
            loop.run_until_complete(asyncio.gather(*state.tasks))
        written = b"".join(data for _, data in transport.calls[1:])
        if app.called != ["/miss"] or not (written.startswith(b"HTTP/1.1 200 OK\r\n") and written.endswith(b"miss")):
            out.append(_protocol(f"a miss after an answer went {app.called!r}, wrote {written[:60]!r}"))
        if state.total_requests != 2:
            out.append(_protocol(f"server_state.total_requests is {state.total_requests}, not 2"))
        if protocol._phase != IDLE or protocol._open != 0 or protocol.timeout_keep_alive_task is not None:
            out.append(_protocol(f"after two answers the guard sees phase {protocol._phase}, {protocol._open} open"))
        protocol.shutdown()
        if not transport.closing:
            out.append(_protocol("shutdown() left an idle connection open"))
        protocol.connection_lost(None)
    finally:
        loop.close()
    return out


# -- the connection guard -------------------------------------------------------------------


def guard_breaches() -> list[Breach]:
    """What ``web.connection_guard`` relies on in uvicorn's stock protocol that does not hold."""
    try:
        from uvicorn.config import Config
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.server import ServerState
    except ImportError as exc:
        return [_guard(f"import: {exc}")]
    base = getattr(httptools_impl, "HttpToolsProtocol", None)
    if not isinstance(base, type):
        return [_guard("httptools_impl.HttpToolsProtocol is missing")]
    out = [_guard(f"HttpToolsProtocol.{name} is missing") for name in GUARD_METHODS if not hasattr(base, name)]
    for name in GUARD_METHODS[3:]:  # the parser's callbacks and uvicorn's response hook
        if hasattr(base, name) and list(inspect.signature(getattr(base, name)).parameters) != ["self"]:
            out.append(_guard(f"HttpToolsProtocol.{name} takes arguments besides self"))
    if out:
        return out
    try:
        return _guard_conversation(Config, ServerState)
    except Exception as exc:  # any surprise is a breach, never a crash
        return [_guard(f"conversation failed: {type(exc).__name__}: {exc}")]


def _guard(what: str) -> Breach:
    return Breach(Part.GUARD, what)


def _guard_conversation(config_class: Any, state_class: Any) -> list[Breach]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _guarded_connections(config_class, state_class)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop runs here: converse beside it
        return pool.submit(_guarded_connections, config_class, state_class).result()


def _guarded_connections(config_class: Any, state_class: Any) -> list[Breach]:
    """uvicorn's stock protocol with only the guard, over fake transports: a request through the
    app leaves the connection idle; a header block over the cap gets 431; a request target over
    its cap (the head within it) gets 414 without reaching the app."""
    from iiifserver.web.connection_guard import DONE, HEAD, IDLE, ConnectionLimits, GuardedHttpToolsProtocol

    out: list[Breach] = []
    app = _App()
    app.connection_limits = ConnectionLimits(10.0, 10.0, 10.0, 64, 256, 8)  # type: ignore[attr-defined]
    config = config_class(app=app, log_config=None, proxy_headers=False, lifespan="off")
    state = state_class()
    loop = asyncio.new_event_loop()
    try:

        def connect() -> tuple[GuardedHttpToolsProtocol, _Transport]:
            protocol = GuardedHttpToolsProtocol(config=config, server_state=state, app_state={}, _loop=loop)
            protocol.access_log = False
            protocol.logger = _QUIET
            transport = _Transport()
            protocol.connection_made(transport)  # type: ignore[arg-type]
            protocol._guard.quiet = True
            return protocol, transport

        protocol, transport = connect()
        out += [_guard(f"protocol.{name} is missing") for name in GUARD_ATTRIBUTES if not hasattr(protocol, name)]
        if out:
            return out
        protocol.data_received(b"GET /miss HTTP/1.1\r\nHost: h\r\n\r\n")
        if state.tasks:  # gather() of nothing would make a future on another loop
            loop.run_until_complete(asyncio.gather(*state.tasks))
        cycle = protocol.cycle
        out += [_guard(f"the request cycle has no {name}") for name in CYCLE_ATTRIBUTES if not hasattr(cycle, name)]
        if app.called != ["/miss"] or protocol._phase != IDLE or protocol._open != 0:
            out.append(_guard(f"after one answer: app saw {app.called!r}, phase {protocol._phase}"))
        protocol.data_received(b"GET /miss HTTP/1.1\r\nX-Long: ")
        if protocol._phase != HEAD or not isinstance(getattr(protocol, "url", None), bytes):
            out.append(_guard("a request begun is not seen as reading its headers (or has no url)"))
        protocol.data_received(b"x" * 300)
        if not transport.calls or not transport.calls[-1][1].startswith(b"HTTP/1.1 431 ") or not transport.eof:
            out.append(_guard(f"a header block over the cap was answered {transport.calls[-1:]!r}"))
        protocol.connection_lost(None)
        protocol, transport = connect()
        protocol.data_received(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
        written = b"".join(data for _, data in transport.calls)
        if not written.startswith(b"HTTP/1.1 414 ") or protocol._phase != DONE or app.called != ["/miss"]:
            out.append(_guard(f"a request target over the cap was answered {written[:40]!r}"))
        protocol.connection_lost(None)
    finally:
        loop.close()
    return out


# -- the supervisor -------------------------------------------------------------------------


def supervisor_breaches() -> list[Breach]:
    """What ``serving`` relies on: the ``sockets`` object given to ``Multiprocess`` reaches each
    worker as itself (pickled), and the worker iterates it before anything else looks at it."""
    try:
        from uvicorn import _subprocess
        from uvicorn.server import Server
        from uvicorn.supervisors import Multiprocess
    except ImportError as exc:
        return [_supervisor(f"import: {exc}")]
    out: list[Breach] = []
    for where, function in (
        ("Multiprocess()", Multiprocess.__init__),
        ("Server.run", Server.run),
        ("Server.startup", Server.startup),
        ("_subprocess.get_subprocess", getattr(_subprocess, "get_subprocess", None)),
    ):
        if function is None or "sockets" not in inspect.signature(function).parameters:
            out.append(_supervisor(f"{where} takes no 'sockets'"))
    if out:
        return out
    try:
        source = inspect.getsource(Server.startup)
    except (OSError, TypeError):
        return [_supervisor("Server.startup has no source to check")]
    if "for sock in sockets:" not in source:
        out.append(_supervisor("Server.startup no longer iterates the sockets it is given"))
    marker: list[Any] = []
    try:
        process = _subprocess.get_subprocess(object(), lambda **_: None, marker)  # type: ignore[arg-type]  # never started
        handed = getattr(process, "_kwargs", {}).get("sockets")
    except Exception as exc:
        return [*out, _supervisor(f"get_subprocess failed: {type(exc).__name__}: {exc}")]
    if handed is not marker:
        out.append(_supervisor("the worker process is not handed the sockets object itself"))
    return out


def _supervisor(what: str) -> Breach:
    return Breach(Part.SUPERVISOR, what)
