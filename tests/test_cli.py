"""The command line: ``serve`` flags map onto settings, the other commands take ``--config`` and
``--setting NAME=VALUE``; `get` answers one request in-process."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
import pyvips
from click.testing import CliRunner
from PIL import Image

from iiifserver.cli import main
from iiifserver.config import WORKER_ENV, Settings, fields, settings_from_json


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-images")
    image = pyvips.Image.perlin(1200, 800, cell_size=64, uchar=True).colourspace("srgb")
    image.tiffsave(str(root / "pic.tif"), tile=True, pyramid=True, compression="deflate")
    return root


def test_every_setting_is_a_serve_flag() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for f in fields():
        flag = "--" + f.name.replace("_", "-")
        assert flag in result.output, flag
        assert "IIIFSERVER_" + f.name.upper() in result.output


def _settings(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["settings", *args], env=env)
    return result.exit_code, result.output


def test_settings_command_shows_layers(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("port = 9001\n")
    code, output = _settings("--config", str(toml), "--setting", "max_area=123456", env={"IIIFSERVER_WORKERS": "3"})
    assert code == 0, output
    lines = set(output.splitlines())
    assert {"port = 9001", "workers = 3", "max_area = 123456", "allow_upscaling = true"} <= lines


@pytest.mark.parametrize(
    ("pair", "line"),
    [
        ("max_width=4000", "max_width = 4000"),
        ("max-width=4000", "max_width = 4000"),  # the flag spelling works too
        ("queue_timeout=2.5", "queue_timeout = 2.5"),
        ("allow_upscaling=off", "allow_upscaling = false"),
        ("tile_passthrough=yes", "tile_passthrough = true"),
        ("images=scans/a=b", 'images = "scans/a=b"'),  # only the first '=' separates
        ("public_url=", 'public_url = ""'),
        ("log_level=warning", 'log_level = "warning"'),
    ],
)
def test_setting_values_are_converted_to_the_setting_type(pair: str, line: str) -> None:
    code, output = _settings("-s", pair, env={})
    assert code == 0, output
    assert line in output.splitlines()


def test_setting_is_repeatable_and_the_last_one_wins() -> None:
    code, output = _settings("-s", "port=8001", "--setting", "workers=2", "-s", "port=8002", env={})
    assert code == 0, output
    assert {"port = 8002", "workers = 2"} <= set(output.splitlines())


def test_setting_wins_over_config_file_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("port = 9001\nworkers = 5\nmax_width = 100\n")
    env = {"IIIFSERVER_PORT": "9002", "IIIFSERVER_WORKERS": "6"}
    code, output = _settings("--config", str(toml), "-s", "port=9003", env=env)
    assert code == 0, output
    # --setting > environment > file > defaults
    assert {"port = 9003", "workers = 6", "max_width = 100", "max_height = 10000"} <= set(output.splitlines())


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("max_widht=4000", "unknown setting 'max_widht'; did you mean max_width?"),
        ("colour=red", "unknown setting 'colour' (`iiifserver settings` lists them)"),
        ("port", "'port' is not NAME=VALUE"),
        ("=8000", "'=8000' is not NAME=VALUE"),
        ("port=eighty", "port: expected int, got 'eighty'"),
        ("queue_timeout=soon", "queue_timeout: expected float, got 'soon'"),
        ("allow_upscaling=maybe", "allow_upscaling: expected bool, got 'maybe'"),
    ],
)
def test_bad_setting_is_a_usage_error_naming_it(pair: str, message: str) -> None:
    code, output = _settings("-s", pair, env={})
    assert code == 2
    assert "Invalid value for '--setting'" in output
    assert message in output


def test_out_of_range_setting_is_a_usage_error() -> None:
    code, output = _settings("-s", "jpeg_quality=300", env={})
    assert code == 2
    assert "jpeg_quality must be 1-100" in output


@pytest.mark.parametrize(
    "command", [["settings"], ["get", "/x"], ["cache", "purge"], ["manifests", "build"], ["convert", "a"]]
)
def test_only_serve_has_one_flag_per_setting(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--setting NAME=VALUE" in result.output
    assert "--config" in result.output
    assert "--max-width" not in result.output
    result = CliRunner().invoke(main, [*command, "--max-width", "10"])
    assert result.exit_code == 2
    assert "No such option '--max-width'" in result.output


def test_get_info_json(image_root: Path) -> None:
    result = CliRunner().invoke(main, ["get", "/iiif/3/pic/info.json", "-s", f"images={image_root}"])
    assert result.exit_code == 0, result.output
    assert '"width":1200' in result.output
    assert '"id":"http://localhost/iiif/3/pic"' in result.output


def test_get_image_to_file(image_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        main, ["get", "/iiif/3/pic/full/300,/90/gray.png", "-o", str(out), "-s", f"images={image_root}"]
    )
    assert result.exit_code == 0, result.output
    with Image.open(io.BytesIO(out.read_bytes())) as img:
        assert img.size == (200, 300)  # 300 wide, 200 high, then turned a quarter
        assert img.mode == "L"


def test_get_error_exits_non_zero(image_root: Path) -> None:
    result = CliRunner().invoke(main, ["get", "/iiif/3/missing/info.json", "-H", "-s", f"images={image_root}"])
    assert result.exit_code == 1
    assert "HTTP 404" in result.output


def test_cache_purge_command(image_root: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    runner = CliRunner()
    args = ["-s", f"images={image_root}", "--setting", f"cache={cache_dir}"]
    # Each render written at once (one ask each here; the default writes at the second).
    args += ["-s", "disk_cache_admission=1"]
    for path in ("/iiif/3/pic/full/100,/0/default.png", "/iiif/3/pic.tif/full/90,/0/default.png"):
        assert runner.invoke(main, ["get", path, "-o", str(tmp_path / "x"), *args]).exit_code == 0
    entries = [p for p in cache_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(entries) == 2
    result = runner.invoke(main, ["cache", "purge", "pic", *args])
    assert result.exit_code == 0, result.output
    assert "purged 2 cached tiles for 'pic'" in result.output
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    result = runner.invoke(main, ["cache", "purge", "-s", f"cache={tmp_path / 'none'}"])
    assert result.exit_code == 0
    assert "nothing to purge" in result.output


def test_served_protocol_answers_repeats_at_once(
    image_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The protocol finds the app's lookup only on the bare app: a uvicorn middleware in between
    # (proxy headers, trace logging) would silently send every hot tile the slow way.
    import uvicorn.server

    from iiifserver.cli import server_config
    from iiifserver.web.http_protocol import HttpProtocol

    settings = Settings(images=image_root, cache=tmp_path, log_level="info")
    monkeypatch.setenv(WORKER_ENV, settings.to_json())
    uvicorn_config = server_config(settings)
    uvicorn_config.load()
    assert uvicorn_config.http_protocol_class is HttpProtocol
    loop = asyncio.new_event_loop()
    try:
        state = uvicorn.server.ServerState()
        protocol = HttpProtocol(config=uvicorn_config, server_state=state, app_state={}, _loop=loop)
    finally:
        loop.close()
    assert protocol.answers_in_protocol


# --- serve: the folders are checked before anything starts -------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """``serve`` stopped where it would start uvicorn: the settings the workers would get."""
    import iiifserver.cli.serve as serve_module
    from iiifserver import serving

    monkeypatch.setenv(WORKER_ENV, "")  # serve sets it; restored after the test
    runs: list[Settings] = []
    monkeypatch.setattr(serve_module, "server_config", lambda settings: settings)
    monkeypatch.setattr(serving, "run", lambda settings, **_: runs.append(settings))
    monkeypatch.setattr(serving, "check_port_free", lambda *_: None, raising=False)  # port 8000 may be taken
    return runs


def serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["serve", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("images", "cache", "message"),
    [
        pytest.param("pic.tif", "cache", "image folder {images} is not a folder", id="images-is-a-file"),
        pytest.param("no/such", "cache", "image folder {images} does not exist", id="images-missing-parent"),
        pytest.param(".", "pic.tif", "cache folder {cache} is not a folder", id="cache-is-a-file"),
        pytest.param(".", "pic.tif/cache", "part of its path is a file", id="cache-under-a-file"),
    ],
)
def test_serve_with_a_bad_folder_is_a_one_line_usage_error(
    started: list[Settings], image_root: Path, tmp_path: Path, images: str, cache: str, message: str
) -> None:
    images_path, cache_path = image_root / images, image_root / cache
    code, output = serve("--images", str(images_path), "--cache", str(cache_path))
    assert code == 2
    assert message.format(images=images_path, cache=cache_path) in output
    assert "Traceback" not in output
    assert started == []


def test_serve_with_an_unwritable_cache_starts_without_the_disk_tier(
    started: list[Settings], image_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import iiifserver.cli.serve as serve_module

    # Tests run as root, where permissions do not bite: the probe answers as a read-only mount would.
    monkeypatch.setattr(serve_module, "_probe_writable", lambda folder: OSError(30, "Read-only file system"))
    code, output = serve("--images", str(image_root), "--cache", str(tmp_path / "cache"))
    assert code == 0, output
    assert output.count("warning:") == 1
    assert "not writable (Read-only file system): serving without the disk cache" in output
    assert [s.disk_cache_mb for s in started] == [0]
    assert settings_from_json(os.environ[WORKER_ENV]).disk_cache_mb == 0


def test_serve_creates_a_missing_cache_folder_and_keeps_the_disk_tier(
    started: list[Settings], image_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "new" / "cache"
    code, output = serve("--images", str(image_root), "--cache", str(cache))
    assert code == 0, output
    assert cache.is_dir()
    assert list(cache.iterdir()) == []  # the write probe leaves nothing behind
    assert started[0].disk_cache_mb == Settings().disk_cache_mb
