"""The server's settings: one frozen object, built once.

Owns: every setting's name, type, default and help text; loading them from (in rising order
of precedence) defaults, a TOML file, ``IIIFSERVER_*`` environment variables and CLI flags.
This is the only module that reads the environment. The CLI, the README check and the
worker processes all read the field list below, so a setting is declared exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("127.0.0.1", "Address to listen on.")
    port: int = _setting(8000, "TCP port to listen on.")
    workers: int = _setting(1, "Worker processes (one per core is a good start).")
    images: Path = _setting(
        DEFAULT_IMAGES,
        "Image root: identifiers name files below it. The default folder is filled with the demo "
        "collection on first start.",
    )
    manifests: Path = _setting(Path("manifests"), "Folder of object descriptions (Presentation API).")
    collection_page_size: int = _setting(
        1000, "Most members one collection document lists; larger collections are split into pages."
    )
    cache: Path = _setting(Path("cache"), "Folder for the disk cache.")
    public_url: str = _setting(
        "",
        "Public base URL (e.g. https://images.example.org). Empty: taken from each request's Host, "
        "and X-Forwarded-Proto/Host/Prefix from trusted proxies.",
    )
    trusted_proxies: str = _setting("127.0.0.1", "Comma-separated addresses whose X-Forwarded-* headers are believed.")
    max_width: int = _setting(10000, "Largest output width (info.json maxWidth).")
    max_height: int = _setting(10000, "Largest output height (info.json maxHeight).")
    max_area: int = _setting(25_000_000, "Largest output area in pixels (info.json maxArea).")
    allow_upscaling: bool = _setting(True, "Serve '^' (upscaled) sizes up to the limits.")
    upscale_max_to_limits: bool = _setting(
        False, "Make '^max' scale the region up to the limits; off: '^max' is the same as 'max'."
    )
    jpeg_quality: int = _setting(80, "JPEG output quality (1-100).")
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
    tile_threads: int = _setting(0, "Threads rendering tile-sized requests (0: four per core).")
    heavy_threads: int = _setting(1, "Threads rendering large requests, so they cannot starve tiles.")
    max_waiting: int = _setting(256, "Requests allowed to wait for a render thread before 503.")
    queue_timeout: float = _setting(15.0, "Seconds a request may wait for a render thread before 503.")
    source_check_interval: float = _setting(
        1.0,
        "Seconds an identifier's file and version are trusted before they are checked again "
        "(a replaced image is served at most this late); 0 checks on every request.",
    )
    tile_passthrough: bool = _setting(
        True,
        "Send a stored JPEG tile as it is when a request is exactly that tile (no decode, no encode; "
        "the tile keeps its stored quality).",
    )
    memory_cache_mb: int = _setting(128, "Tile cache in memory, per worker process, in MiB (0: off).")
    disk_cache_mb: int = _setting(
        4096, "Tile cache on disk under the cache folder, shared by the workers, in MiB (0: off)."
    )
    admin_token: str = _setting(
        "", "Bearer token for the /admin endpoints (cache purge, stats); empty: the endpoints are off."
    )
    cache_control: str = _setting("public, max-age=2592000", "Cache-Control header of image and info.json responses.")
    log_level: str = _setting("info", "Log level: critical, error, warning, info, debug.")
    access_log: bool = _setting(False, "Log every request (costs throughput).")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_width, self.max_height, self.max_area, self.allow_upscaling, self.upscale_max_to_limits)

    @property
    def trusted_proxy_set(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def render_threads(self) -> int:
        # Four per core: a tile render spends most of its time waiting for the GIL and a core
        # shared with the event loop (1.3 ms of CPU in 10 ms under load), and with one thread per
        # core a first view's small renders queued behind each other for 100 ms and more.
        return self.tile_threads or 4 * (os.cpu_count() or 2)

    def to_json(self) -> str:
        return json.dumps({f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)})


class SettingsError(ValueError):
    """A setting has a value of the wrong type or an unknown name."""


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


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    # Accept both a flat file and one with a [server] table.
    table = data.get("server", data)
    known = {f.name for f in fields()}
    unknown = sorted(set(table) - known - {"server"})
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return {name: _coerce(_field(name), value, f"{path}: {name}") for name, value in table.items()}


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
    for name in ("jpeg_quality", "webp_quality"):
        if not 1 <= getattr(settings, name) <= 100:
            problems.append(f"{name} must be 1-100")
    if settings.memory_cache_mb < 0 or settings.disk_cache_mb < 0:
        problems.append("memory_cache_mb and disk_cache_mb must be >= 0")
    if settings.admin_token and len(settings.admin_token) < 16:
        problems.append("admin_token must be at least 16 characters")
    if settings.collection_page_size < 1:
        problems.append("collection_page_size must be >= 1")
    if settings.source_check_interval < 0:
        problems.append("source_check_interval must be >= 0")
    if settings.tile_threads < 0 or settings.heavy_threads < 1:
        problems.append("tile_threads must be >= 0 and heavy_threads >= 1")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        problems.append("public_url must start with http:// or https://")
    if settings.log_level not in {"critical", "error", "warning", "info", "debug"}:
        problems.append("log_level must be one of critical, error, warning, info, debug")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def _path_or_none(text: str | None) -> Path | None:
    return Path(text) if text else None


def _dump(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def worker_settings() -> Settings:
    """Settings handed to a uvicorn worker process by ``serve``; else loaded afresh."""
    text = os.environ.get(WORKER_ENV)
    return settings_from_json(text) if text else load_settings()
