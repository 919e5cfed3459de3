"""The command line: flags map onto settings; `get` answers one request in-process."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import pyvips
from click.testing import CliRunner
from PIL import Image

from iiifserver.cli import main
from iiifserver.config import WORKER_ENV, Settings, fields


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


def test_settings_command_shows_layers(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("port = 9001\n")
    result = CliRunner().invoke(
        main, ["settings", "--config", str(toml), "--max-area", "123456"], env={"IIIFSERVER_WORKERS": "3"}
    )
    assert result.exit_code == 0, result.output
    lines = set(result.output.splitlines())
    assert {"port = 9001", "workers = 3", "max_area = 123456", "allow_upscaling = true"} <= lines


def test_bad_flag_value_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["settings", "--jpeg-quality", "300"])
    assert result.exit_code == 2
    assert "jpeg_quality must be 1-100" in result.output


def test_get_info_json(image_root: Path) -> None:
    result = CliRunner().invoke(main, ["get", "/iiif/3/pic/info.json", "--images", str(image_root)])
    assert result.exit_code == 0, result.output
    assert '"width":1200' in result.output
    assert '"id":"http://localhost/iiif/3/pic"' in result.output


def test_get_image_to_file(image_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        main, ["get", "/iiif/3/pic/full/300,/90/gray.png", "-o", str(out), "--images", str(image_root)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(io.BytesIO(out.read_bytes())) as img:
        assert img.size == (200, 300)  # 300 wide, 200 high, then turned a quarter
        assert img.mode == "L"


def test_get_error_exits_non_zero(image_root: Path) -> None:
    result = CliRunner().invoke(main, ["get", "/iiif/3/missing/info.json", "-H", "--images", str(image_root)])
    assert result.exit_code == 1
    assert "HTTP 404" in result.output


def test_cache_purge_command(image_root: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    runner = CliRunner()
    args = ["--images", str(image_root), "--cache", str(cache_dir)]
    for path in ("/iiif/3/pic/full/100,/0/default.png", "/iiif/3/pic.tif/full/90,/0/default.png"):
        assert runner.invoke(main, ["get", path, "-o", str(tmp_path / "x"), *args]).exit_code == 0
    entries = [p for p in cache_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(entries) == 2
    result = runner.invoke(main, ["cache", "purge", "pic", *args])
    assert result.exit_code == 0, result.output
    assert "purged 2 cached tiles for 'pic'" in result.output
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    result = runner.invoke(main, ["cache", "purge", "--cache", str(tmp_path / "none")])
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
    assert protocol.answers_at_once
