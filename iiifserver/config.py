"""The server's settings: one frozen object, built once.

Owns: every setting's name, type, default and help text; loading them from (in rising order
of precedence) defaults, a TOML file, ``IIIFSERVER_*`` environment variables and CLI flags.
This is the only module that reads the environment. The CLI, the README check and the
worker processes all read the field list below, so a setting is declared exactly once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "IIIFSERVER_"
# The serve command hands its resolved settings to uvicorn's worker processes through this.
WORKER_ENV = "IIIFSERVER_WORKER_SETTINGS"
DEFAULT_IMAGES = Path("demo-images")


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Limits:
    """Server-imposed output limits, advertised in info.json and enforced on every request.

    Here rather than in the planner that enforces them: settings are the bottom layer, and
    ``Settings.limits`` builds one.
    """

    max_width: int
    max_height: int
    max_area: int
    allow_upscaling: bool = True
    # ``^max`` blows the region up to the limits (the spec's letter) instead of meaning ``max``.
    upscale_max_to_limits: bool = False
    # Largest output area of lossless formats (png, tif); 0: only the limits above. Not in info.json,
    # which has no per-format limits: such requests are refused (403), never silently made smaller.
    max_lossless_pixels: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("127.0.0.1", "Address to listen on.")
    port: int = _setting(8000, "TCP port to listen on.")
    workers: int = _setting(1, "Worker processes (one per core is a good start).")
    images: Path = _setting(
        DEFAULT_IMAGES,
        "Image root: identifiers name files below it. The default folder is filled with the demo "
        "collection on first start. An s3://BUCKET/PREFIX URL serves objects of an S3-compatible "
        "store instead (see docs/object-storage.md).",
    )
    image_roots: str = _setting(
        "",
        "More image roots, by identifier prefix: 'prefix=root, prefix=root', each root a folder or "
        "an s3://BUCKET/PREFIX URL; identifier 'prefix/name' is 'name' in that root, the others are "
        "in the image root.",
    )
    storage_timeout: float = _setting(
        5.0,
        "Seconds an object store may take to connect, and to answer each read, before the request "
        "is answered 503 with Retry-After (s3:// roots).",
    )
    block_cache: Path = _setting(
        Path("block-cache"), "Folder of the local block cache renders read objects through (s3:// roots)."
    )
    block_cache_mb: int = _setting(
        2048, "Bound of the block cache in MiB (least recently used blocks go first) (s3:// roots)."
    )
    manifests: Path = _setting(Path("manifests"), "Folder of object descriptions (Presentation API).")
    collection_page_size: int = _setting(
        1000, "Most members one collection document lists; larger collections are split into pages."
    )
    cache: Path = _setting(Path("cache"), "Folder for the disk cache.")
    discovery_store: str = _setting(
        "",
        "SQLite file of the Change Discovery log (every Create, Update, Delete and Move, and the last "
        "known state). Empty: discovery/changes.sqlite3 under the cache folder. Delete it (server "
        "stopped) to start the log again.",
    )
    discovery_page_size: int = _setting(100, "Activities in one page of the Change Discovery log.")
    discovery_check_interval: float = _setting(
        30.0,
        "Seconds between comparisons of the published manifests and collections with the Change "
        "Discovery log, made when a harvester asks (and at start-up); each compares the whole catalogue.",
    )
    public_url: str = _setting(
        "",
        "Public base URL (e.g. https://images.example.org). Empty: taken from each request's Host, "
        "and X-Forwarded-Proto/Host/Prefix from trusted proxies.",
    )
    trusted_proxies: str = _setting(
        "127.0.0.1",
        "Comma-separated addresses or CIDR ranges (10.0.0.0/8, fd00::/8) whose X-Forwarded-* headers are believed.",
    )
    max_width: int = _setting(10000, "Largest output width (info.json maxWidth).")
    max_height: int = _setting(10000, "Largest output height (info.json maxHeight).")
    max_area: int = _setting(25_000_000, "Largest output area in pixels (info.json maxArea).")
    max_full_pixels: int = _setting(
        0,
        "Largest area in pixels a 'max' size may give, in any format, for terms that limit full-size "
        "downloads; 0: only max_area. Lowers the maxArea info.json advertises and enforces to it, so "
        "'max' stays truthful and explicit sizes cannot go round it.",
    )
    max_lossless_pixels: int = _setting(
        0,
        "Largest output area in pixels of lossless formats (png, tif); larger ones are refused with "
        "403 (jpg and webp are not limited by it). 0: only the general limits.",
    )
    allow_upscaling: bool = _setting(True, "Serve '^' (upscaled) sizes up to the limits.")
    upscale_max_to_limits: bool = _setting(
        False, "Make '^max' scale the region up to the limits; off: '^max' is the same as 'max'."
    )
    jpeg_quality: int = _setting(
        85,
        "JPEG output quality (1-100). At the stored tiles' quality (85: what 'iiifserver convert' writes) "
        "a region or download at a level's own size is copied from the stored blocks, not re-encoded.",
    )
    webp_quality: int = _setting(80, "WebP output quality (1-100).")
    jpeg_chroma_subsampling: bool = _setting(
        True,
        "Rendered JPEGs use 4:2:0 chroma subsampling at every quality, as IIPImage, Cantaloupe and "
        "Pillow do; false keeps full colour resolution (4:4:4) from quality 90, larger and slower.",
    )
    plain_max_pixels: int = _setting(
        40_000_000,
        "Largest untiled source (plain JPEG/PNG/strip TIFF) decoded on the fly; beyond it, convert it.",
    )
    max_source_pixels: int = _setting(
        4_000_000_000, "Largest source (width x height) accepted at all; guards against crafted headers."
    )
    tile_threads: int = _setting(0, "Threads rendering tile-sized requests, per worker (0: one per core).")
    heavy_threads: int = _setting(2, "Threads rendering large requests, so they cannot starve tiles.")
    render_nice: int = _setting(
        10,
        "Nice value added to the render threads (tile and heavy lanes, and the libvips workers they "
        "start), so the event loop answering stored tiles and cache hits wins the CPU over pixel work "
        "under load; 0: same priority as the loop (Linux; elsewhere ignored).",
    )
    opened_levels_mb: int = _setting(
        32,
        "Decoded pixels, in MB, each render thread may keep in the image levels it holds open between "
        "requests (libvips' tile caches); a level that could need more is opened for each request. A "
        "worker may keep this times (tile_threads + heavy_threads).",
    )
    decoded_tiles_mb: int = _setting(
        32,
        "Stored JPEG tiles, decoded, in MB, each worker keeps for the regions and thumbnails rendered "
        "from them (shared by its render threads; neighbouring regions decode many of the same tiles). "
        "0: none kept.",
    )
    malloc_arenas: int = _setting(
        2,
        "glibc malloc arenas per worker process (mallopt M_ARENA_MAX), set when it starts: with one "
        "arena per render thread, memory freed in one is not reused by another (measured: 2 arenas "
        "held a quarter less memory at equal throughput). 0: the C library's default.",
    )
    max_waiting: int = _setting(256, "Requests allowed to wait for a render thread before 503.")
    queue_timeout: float = _setting(15.0, "Seconds a request may wait for a render thread before 503.")
    render_timeout: float = _setting(
        30.0,
        "Seconds a request waits for its image (queue and render) before 503 with Retry-After; 0: no "
        "limit. A render already running is not stopped (libvips cannot be interrupted): it holds its "
        "thread until it ends, and its result is cached for the retry.",
    )
    header_timeout: float = _setting(
        10.0,
        "Seconds a client has to send a request's headers, from its first byte (from the connection's "
        "opening for the first request); then 408 and the connection is closed.",
    )
    body_timeout: float = _setting(
        30.0, "Seconds a client has to send a request's body once its headers are in; then 408 and close."
    )
    keep_alive_timeout: float = _setting(5.0, "Seconds an idle keep-alive connection is kept open.")
    max_request_line: int = _setting(
        8192, "Longest request target (the URL of the request line), in bytes; longer: 414 and close."
    )
    max_header_bytes: int = _setting(
        32768, "Largest request head (request line and headers), in bytes; larger: 431 and close."
    )
    max_connections: int = _setting(
        4096,
        "Open connections per worker process (at most the open-files limit less 256). At the cap the "
        "oldest idle connections are closed first; with none idle, new ones get 503 and are closed.",
    )
    balance_connections: bool = _setting(
        True,
        "With several workers, one holding two or more keep-alive connections more than another "
        "answers a few requests with 'connection: close', so that clients reconnect and the kernel "
        "spreads the connections evenly again (a proxy's pool or a load generator otherwise stays "
        "on one worker more than the other).",
    )
    source_check_interval: float = _setting(
        1.0,
        "Seconds an identifier's file and version are trusted before they are checked again "
        "(a replaced image is served at most this late); 0 checks on every request.",
    )
    access_rules_interval: float = _setting(
        60.0,
        "Seconds between re-reads of the access rules from the descriptions when nothing else rescanned "
        "them (a presentation request's rescan updates the rules within a second). A rescan walks the "
        "image root and the manifests folder, so it is not done every source check.",
    )
    tile_passthrough: bool = _setting(
        True,
        "Send a stored JPEG tile as it is when a request is exactly that tile (no decode, no encode; "
        "the tile keeps its stored quality).",
    )
    memory_cache_mb: int = _setting(64, "Tile cache in memory, per worker process, in MiB (0: off).")
    disk_cache_mb: int = _setting(
        4096,
        "Tile cache on disk under the cache folder, shared by the workers, in MiB (0: off). Each entry "
        "counts in whole 4 KiB blocks, as the filesystem stores it: at most 256 files per MiB.",
    )
    disk_cache_admission: int = _setting(
        2,
        "A render is written to the disk tier when a worker has been asked for it this many times, "
        "the later asks found in memory or rendered again; 1: every render at once. Most cited "
        "regions and downloads are asked for once, and writing them cost throughput for nothing. "
        "The shared tier (shared_cache_url) takes every render.",
    )
    shared_cache_url: str = _setting(
        "",
        "Shared cache tier behind memory and disk, for several instances: a Redis or Valkey URL "
        "(redis://host:6379/0, rediss:// for TLS, redis://:password@host/0); empty: off. Holds rendered "
        "responses and image facts; a tile rendered by one instance is served by the others without a render.",
    )
    shared_cache_timeout: float = _setting(
        0.1,
        "Seconds a shared-cache call may take (connect, read, write) before the tier counts as down; "
        "while down it is skipped, and reconnected in the background (back-off up to 30 s).",
    )
    shared_cache_max_entry_kb: int = _setting(
        1024, "Largest response body, in KiB, written to the shared tier (larger ones stay on this host)."
    )
    shared_cache_ttl: int = _setting(
        0,
        "Seconds a shared-cache entry lives; 0: no expiry (bound the Redis with maxmemory and "
        "maxmemory-policy allkeys-lru).",
    )
    shared_cache_prefix: str = _setting(
        "iiifserver:", "Prefix of every Redis key the shared tier writes (several deployments may share a Redis)."
    )
    institutions_file: str = _setting(
        "",
        "TOML file whose [institutions.<slug>] tables configure the institutions of a shared deployment "
        "(see docs/institutions.md); empty: the --config file's own tables. Re-read when it changes.",
    )
    institutions_check_interval: float = _setting(
        5.0, "Seconds between checks of the institutions file for changes (applied without a restart); 0: never."
    )
    auth_secret: str = _setting(
        "",
        "Secret (32+ characters) signing login sessions and access tokens of restricted images (docs/access.md); "
        "empty: a random one per process (sessions then last until a restart, and need workers = 1).",
    )
    auth_users_file: str = _setting(
        "", "TOML file of login users and password hashes (`iiifserver users add NAME`); empty: no built-in login."
    )
    auth_trusted_header: str = _setting(
        "",
        "Request header naming the logged-in user, set by a single sign-on proxy (e.g. X-Remote-User); "
        "believed only from trusted_proxies. Empty: off.",
    )
    auth_session_seconds: int = _setting(28800, "Lifetime of a login session (its signed cookie), in seconds.")
    auth_token_seconds: int = _setting(600, "Lifetime of an access token given to a viewer, in seconds.")
    auth_allowed_origins: str = _setting(
        "",
        "Comma-separated viewer origins (https://viewer.example.org) that may receive access tokens; "
        "empty: any well-formed origin (the token is sent to that origin only).",
    )
    admin_token: str = _setting(
        "", "Bearer token for the /admin endpoints (cache purge, stats); empty: the endpoints are off."
    )
    cache_control: str = _setting("public, max-age=2592000", "Cache-Control header of image and info.json responses.")
    log_level: str = _setting("info", "Log level: critical, error, warning, info, debug.")
    access_log: bool = _setting(False, "Log every request (costs throughput).")
    log_format: str = _setting(
        "text", "Log line format: text (human-readable) or json (one JSON object per line, access log included)."
    )
    metrics: bool = _setting(True, "Serve Prometheus metrics at /metrics (summed over the worker processes).")
    metrics_token: str = _setting(
        "", "Bearer token /metrics requires; empty: /metrics is open (keep it on an internal network)."
    )

    @property
    def limits(self) -> Limits:
        max_area = min(self.max_area, self.max_full_pixels) if self.max_full_pixels > 0 else self.max_area
        return Limits(
            self.max_width,
            self.max_height,
            max_area,
            self.allow_upscaling,
            self.upscale_max_to_limits,
            self.max_lossless_pixels,
        )

    @property
    def trusted_proxy_set(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def trusted_proxy_networks(self) -> TrustedProxies:
        """``trusted_proxies`` as a membership test that understands CIDR ranges."""
        return TrustedProxies(self.trusted_proxies)

    @property
    def render_threads(self) -> int:
        # One per core (per worker): with four, as until issue 17, renders shared the cores and
        # the GIL four ways and more (futex and scheduler time showed in the profiles), and each
        # took four times as long. Measured on 2 cores, 2 workers: unaligned regions +6 % req/s
        # and p99 142 -> 97 ms; the mixed workload at c=8 +8 % and p99 143 -> 112 ms, at c=64 the
        # same throughput and p99 with 16 % less memory. Four per core had answered a first
        # view's edge tiles, each a render then; they are stored tiles cut or stretched now.
        return self.tile_threads or (os.cpu_count() or 2)

    def to_json(self) -> str:
        return json.dumps({f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)})


class SettingsError(ValueError):
    """A setting has a value of the wrong type or an unknown name."""


# Settings whose values are secrets: ``iiifserver settings`` masks them.
# (the shared cache URL may hold a password)
SECRET_SETTINGS = frozenset({"admin_token", "metrics_token", "shared_cache_url", "auth_secret"})


class TrustedProxies:
    """``address in proxies`` for the addresses and CIDR ranges of ``trusted_proxies``.

    On the request path of every proxied request: the answer is remembered per client address
    (a handful of proxies in practice; bounded, so a flood of client addresses only refills it).
    """

    __slots__ = ("_exact", "_known", "_networks")
    MAX_REMEMBERED = 4096

    def __init__(self, text: str) -> None:
        exact: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if "/" in item:
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise SettingsError(f"trusted_proxies: {item!r} is not an address or CIDR range") from None
            else:
                exact.add(item)  # also names such as "localhost" or a Unix socket's peer, compared as text
        self._exact = frozenset(exact)
        self._networks = tuple(networks)
        self._known: dict[str, bool] = {}

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        if address in self._exact:
            return True
        if not self._networks:
            return False
        known = self._known.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in network for network in self._networks)
            if len(self._known) >= self.MAX_REMEMBERED:
                self._known.clear()
            self._known[address] = known
        return known


def fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Settings)


def field_help(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata["help"])


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """defaults < TOML file < environment < overrides (CLI flags). ``None`` overrides are ignored."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or _path_or_none(environ.get(ENV_PREFIX + "CONFIG"))
    if config_file is not None:
        values.update(_from_toml(config_file))
        values.setdefault("institutions_file", str(config_file))  # its [institutions.*] tables
    known = {f.name for f in fields()}
    for f in fields():
        raw = environ.get(env_name(f.name))
        if raw is not None:
            values[f.name] = _coerce(f, raw, env_name(f.name))
    for name, value in (overrides or {}).items():
        if name not in known:
            raise SettingsError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(_field(name), value, f"--{name.replace('_', '-')}")
    return _validated(Settings(**values))


def settings_from_json(text: str) -> Settings:
    data = json.loads(text)
    return Settings(**{name: _coerce(_field(name), value, name) for name, value in data.items()})


def read_toml(path: Path, error: Callable[[str], Exception] = SettingsError) -> dict[str, Any]:
    """The config file's tables; unreadable or malformed: ``error`` with a message naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise error(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"config file {path}: {exc}") from None


def _from_toml(path: Path) -> dict[str, Any]:
    data = read_toml(path)
    # Accept both a flat file and one with a [server] table.
    table = data.get("server", data)
    known = {f.name for f in fields()}
    unknown = sorted(set(table) - known - {"server", "institutions"})  # the institutions module reads those
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return {
        name: _coerce(_field(name), value, f"{path}: {name}") for name, value in table.items() if name != "institutions"
    }


def coerce_setting(name: str, value: Any, where: str) -> Any:
    """``value`` converted to setting ``name``'s type, as the environment's text is; ``SettingsError`` if not."""
    return _coerce(_field(name), value, where)


def _field(name: str) -> dataclasses.Field[Any]:
    for f in fields():
        if f.name == name:
            return f
    raise SettingsError(f"unknown setting {name!r}")


def _coerce(f: dataclasses.Field[Any], value: Any, where: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(str(value).strip())
        if kind == "float":
            return float(str(value).strip())
        if kind == "Path":
            return Path(str(value))
        return str(value)
    except ValueError:
        raise SettingsError(f"{where}: expected {kind}, got {value!r}") from None


def _validated(settings: Settings) -> Settings:
    problems = []
    if not 0 < settings.port < 65536:
        problems.append("port must be 1-65535")
    if settings.workers < 1:
        problems.append("workers must be at least 1")
    for name in ("max_width", "max_height", "max_area", "plain_max_pixels", "max_source_pixels"):
        if getattr(settings, name) < 1:
            problems.append(f"{name} must be positive")
    for name in ("max_full_pixels", "max_lossless_pixels"):
        if getattr(settings, name) < 0:
            problems.append(f"{name} must be >= 0 (0: no extra limit)")
    for name in ("jpeg_quality", "webp_quality"):
        if not 1 <= getattr(settings, name) <= 100:
            problems.append(f"{name} must be 1-100")
    if settings.memory_cache_mb < 0 or settings.disk_cache_mb < 0:
        problems.append("memory_cache_mb and disk_cache_mb must be >= 0")
    if settings.disk_cache_admission < 1:
        problems.append("disk_cache_admission must be >= 1")
    if settings.shared_cache_url and not settings.shared_cache_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("shared_cache_url must start with redis://, rediss:// or unix://")
    if settings.shared_cache_timeout <= 0 or settings.shared_cache_max_entry_kb < 1 or settings.shared_cache_ttl < 0:
        problems.append("shared_cache_timeout must be positive, shared_cache_max_entry_kb >= 1, shared_cache_ttl >= 0")
    if settings.opened_levels_mb < 0:
        problems.append("opened_levels_mb must be >= 0")
    if settings.decoded_tiles_mb < 0:
        problems.append("decoded_tiles_mb must be >= 0")
    if settings.malloc_arenas < 0:
        problems.append("malloc_arenas must be >= 0")
    if settings.admin_token and len(settings.admin_token) < 16:
        problems.append("admin_token must be at least 16 characters")
    if settings.collection_page_size < 1:
        problems.append("collection_page_size must be >= 1")
    if settings.discovery_page_size < 1:
        problems.append("discovery_page_size must be >= 1")
    if settings.discovery_check_interval < 0:
        problems.append("discovery_check_interval must be >= 0")
    if settings.storage_timeout <= 0 or settings.block_cache_mb < 1:
        problems.append("storage_timeout must be positive and block_cache_mb >= 1")
    if any("=" not in item for item in settings.image_roots.split(",") if item.strip()):
        problems.append("image_roots must be 'prefix=root, prefix=root'")
    if settings.source_check_interval < 0:
        problems.append("source_check_interval must be >= 0")
    if settings.access_rules_interval < 1:
        problems.append("access_rules_interval must be >= 1 (seconds)")
    if settings.institutions_check_interval < 0:
        problems.append("institutions_check_interval must be >= 0 (0: never)")
    if settings.render_timeout < 0:
        problems.append("render_timeout must be >= 0")
    if not 0 <= settings.render_nice <= 19:
        problems.append("render_nice must be between 0 and 19")
    if settings.tile_threads < 0 or settings.heavy_threads < 1:
        problems.append("tile_threads must be >= 0 and heavy_threads >= 1")
    for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
        if getattr(settings, name) <= 0:
            problems.append(f"{name} must be positive")
    if settings.max_request_line < 256 or settings.max_header_bytes < settings.max_request_line:
        problems.append("max_request_line must be >= 256 and max_header_bytes >= max_request_line")
    if settings.max_connections < 1:
        problems.append("max_connections must be >= 1")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        problems.append("public_url must start with http:// or https://")
    if settings.log_format not in {"text", "json"}:
        problems.append("log_format must be text or json")
    if settings.auth_secret and len(settings.auth_secret) < 32:
        problems.append("auth_secret must be at least 32 characters")
    if settings.auth_token_seconds < 1 or settings.auth_session_seconds < 1:
        problems.append("auth_token_seconds and auth_session_seconds must be at least 1")
    if settings.metrics_token and len(settings.metrics_token) < 16:
        problems.append("metrics_token must be at least 16 characters")
    try:
        TrustedProxies(settings.trusted_proxies)
    except SettingsError as exc:
        problems.append(str(exc))
    if settings.log_level not in {"critical", "error", "warning", "info", "debug"}:
        problems.append("log_level must be one of critical, error, warning, info, debug")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


OBJECT_SCHEME = "s3://"


def object_root(path: Path | str) -> str | None:
    """The ``s3://BUCKET/PREFIX`` URL an image root names, or None for a folder.

    A ``Path`` made from ``s3://b/p`` reads ``s3:/b/p`` (it folds the double slash): both spellings
    are the URL.
    """
    text = str(path)
    if text.startswith(OBJECT_SCHEME):
        return text
    if text.startswith("s3:/"):
        return OBJECT_SCHEME + text[len("s3:/") :]
    return None


def uses_object_storage(settings: Settings) -> bool:
    """Whether any image root is in an object store (then the store's client is made)."""
    roots = [item.partition("=")[2].strip() for item in settings.image_roots.split(",")]
    return object_root(settings.images) is not None or any(object_root(root) for root in roots if root)


def _path_or_none(text: str | None) -> Path | None:
    return Path(text) if text else None


def _dump(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


# prometheus_client's multiprocess mode: the folder every worker writes its metric values to
# (the library reads this variable itself; ``serve`` sets it before the workers start).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> Path | None:
    """The multiprocess metrics folder ``serve`` set up for this run, if any (a variable left
    pointing at a folder that is gone counts as none)."""
    text = os.environ.get(METRICS_DIR_ENV)
    return Path(text) if text and Path(text).is_dir() else None


def worker_settings() -> Settings:
    """Settings handed to a uvicorn worker process by ``serve``; else loaded afresh."""
    text = os.environ.get(WORKER_ENV)
    return settings_from_json(text) if text else load_settings()
