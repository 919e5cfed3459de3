"""Settings: precedence (defaults < TOML < environment < flags), types, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from iiifserver.config import (
    Settings,
    SettingsError,
    env_name,
    fields,
    load_settings,
    settings_from_json,
)


def test_defaults_serve_the_demo() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.images == Path("demo-images")
    assert settings.host == "127.0.0.1"
    assert settings.allow_upscaling is True


def test_every_setting_has_help_and_env_name() -> None:
    for f in fields():
        assert f.metadata["help"].strip(), f.name
        assert env_name(f.name) == "IIIFSERVER_" + f.name.upper()


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "iiifserver.toml"
    toml.write_text('port = 9000\nworkers = 3\nimages = "/srv/images"\njpeg_quality = 70\n')
    env = {"IIIFSERVER_PORT": "9100", "IIIFSERVER_WORKERS": "4"}
    settings = load_settings(toml, environ=env, overrides={"port": 9200, "workers": None})
    assert settings.port == 9200  # flag beats env beats TOML
    assert settings.workers == 4  # env beats TOML; a None flag is "not given"
    assert settings.images == Path("/srv/images")  # TOML beats default
    assert settings.jpeg_quality == 70


def test_toml_server_table_and_config_from_env(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[server]\nmax_area = 1000000\nallow_upscaling = false\n")
    settings = load_settings(environ={"IIIFSERVER_CONFIG": str(toml)})
    assert settings.max_area == 1_000_000
    assert settings.allow_upscaling is False
    assert settings.limits.allow_upscaling is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("off", False)],
)
def test_bool_from_env(raw: str, expected: bool) -> None:
    assert load_settings(environ={"IIIFSERVER_ACCESS_LOG": raw}).access_log is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IIIFSERVER_PORT": "eighty"}, "IIIFSERVER_PORT: expected int"),
        ({"IIIFSERVER_ACCESS_LOG": "maybe"}, "expected bool"),
        ({"IIIFSERVER_PORT": "70000"}, "port must be 1-65535"),
        ({"IIIFSERVER_JPEG_QUALITY": "0"}, "jpeg_quality must be 1-100"),
        ({"IIIFSERVER_MAX_AREA": "0"}, "max_area must be positive"),
        ({"IIIFSERVER_PUBLIC_URL": "example.org"}, "public_url must start with http"),
        ({"IIIFSERVER_LOG_LEVEL": "loud"}, "log_level must be one of"),
        ({"IIIFSERVER_RENDER_NICE": "20"}, "render_nice must be between 0 and 19"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


def test_unknown_setting_in_toml_or_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match=r"unknown setting.*prot"):
        load_settings(toml, environ={})
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(environ={}, overrides={"nope": 1})


def test_broken_or_missing_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1\n")
    with pytest.raises(SettingsError, match=r"bad\.toml"):
        load_settings(bad, environ={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_worker_json_round_trip() -> None:
    settings = load_settings(
        environ={},
        overrides={"images": Path("/x/y"), "port": 1234, "public_url": "https://e.org/iiif", "max_waiting": 3},
    )
    assert settings_from_json(settings.to_json()) == settings


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_trusted_proxy_set() -> None:
    settings = load_settings(environ={"IIIFSERVER_TRUSTED_PROXIES": " 10.0.0.1, ::1 ,,"})
    assert settings.trusted_proxy_set == frozenset({"10.0.0.1", "::1"})
