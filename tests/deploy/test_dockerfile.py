"""deploy/Dockerfile: hadolint-clean, its settings file loads, and (opt-in) the image builds and serves.

The build test needs podman and mmdebstrap (deploy/build-image.sh) and a few minutes: it runs
only with IIIFSERVER_TEST_CONTAINER=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from iiifserver.config import load_settings
from tests.deploy.tools import DEPLOY, REPO, run, tool
from tests.e2e.conftest import free_port

DOCKERFILE = DEPLOY / "Dockerfile"


def test_hadolint_passes() -> None:
    result = run(tool("hadolint"), "--config", DEPLOY / ".hadolint.yaml", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_blind(tmp_path: Path) -> None:
    # The same check on a Dockerfile with a known mistake fails: the test above can fail too.
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    result = run(tool("hadolint"), "--config", DEPLOY / ".hadolint.yaml", bad)
    assert result.returncode != 0
    assert "DL3002" in result.stdout  # last USER should not be root


def test_runtime_stage_is_slim_non_root_and_checked() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in text
    assert "libturbojpeg0" in runtime
    assert "libopenjp2-7" in runtime  # JPEG 2000 sources (image/jp2.py)
    assert "libjpeg62-turbo" in runtime  # image/_jpeg_blocks.c links libjpeg
    build = text.split("AS runtime", 1)[0]
    assert "libjpeg62-turbo-dev" in build
    assert "gcc" in build
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "HEALTHCHECK" in runtime
    assert "healthcheck.py" in runtime
    assert "/health" in (DEPLOY / "container" / "healthcheck.py").read_text()
    assert 'VOLUME ["/srv/iiif/images", "/srv/iiif/manifests", "/var/cache/iiifserver"]' in runtime
    assert "IIIFSERVER_CONFIG=/etc/iiifserver/iiifserver.toml" in runtime


def test_every_copied_path_is_in_the_build_context() -> None:
    # The ignore file lets through exactly what the Dockerfile copies from the repository.
    allowed = [
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_image_settings_file_loads() -> None:
    settings = load_settings(DEPLOY / "container" / "iiifserver.toml", environ={})
    assert settings.host == "0.0.0.0"
    assert str(settings.images) == "/srv/iiif/images"
    assert str(settings.cache) == "/var/cache/iiifserver"


@pytest.mark.skipif(os.environ.get("IIIFSERVER_TEST_CONTAINER") != "1", reason="set IIIFSERVER_TEST_CONTAINER=1")
def test_image_builds_and_answers_health(tmp_path: Path) -> None:
    podman = shutil.which("podman")
    assert podman is not None, "podman is missing (apt-get install podman mmdebstrap)"
    tag = "localhost/iiifserver:test"
    env = {**os.environ, "BUILD_DIR": str(tmp_path)}
    build = subprocess.run(
        [str(DEPLOY / "build-image.sh"), tag], env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    images = tmp_path / "images"
    images.mkdir()
    port = free_port()
    name = f"iiifserver-test-{port}"
    run_args = [
        podman,
        "run",
        "--rm",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"IIIFSERVER_PORT={port}",
        "-e",
        "IIIFSERVER_HOST=127.0.0.1",
        "-v",
        f"{images}:/srv/iiif/images:ro",
        tag,
    ]
    started = subprocess.run(run_args, capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the container did not answer /health within 60 s"
                time.sleep(0.5)
    finally:
        subprocess.run([podman, "stop", "-t", "10", name], capture_output=True, timeout=60, check=False)
