"""deploy/systemd/iiifserver.service: `systemd-analyze verify` finds nothing to say, sandbox in place."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from iiifserver.config import load_settings
from tests.deploy.tools import DEPLOY, run

UNIT = DEPLOY / "systemd" / "iiifserver.service"
ANALYZE = shutil.which("systemd-analyze")


def verify(tmp_path: Path, text: str) -> tuple[int, str]:
    # The unit's ExecStart must exist for verify: point it at this checkout's command.
    unit = tmp_path / "iiifserver.service"
    unit.write_text(text.replace("/opt/iiifserver/bin/iiifserver", str(Path(sys.executable).parent / "iiifserver")))
    assert ANALYZE is not None
    result = run(ANALYZE, "verify", unit)
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (no systemd on this machine)")
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    assert verify(tmp_path, UNIT.read_text()) == (0, "")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (no systemd on this machine)")
def test_verify_is_not_blind(tmp_path: Path) -> None:
    # verify exits 0 on a bad value but says so: hence the test above wants silence.
    _code, output = verify(tmp_path, UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    assert "ProtectSystem" in output or "protect system" in output


def test_sandbox_options() -> None:
    lines = set(UNIT.read_text().splitlines())
    for option in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/cache/iiifserver",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CacheDirectory=iiifserver",
        "Environment=IIIFSERVER_CONFIG=/etc/iiifserver/iiifserver.toml",
    ):
        assert option in lines, option
    assert any(line.startswith("MemoryMax=") for line in lines)


def test_settings_file_matches_the_unit() -> None:
    settings = load_settings(DEPLOY / "systemd" / "iiifserver.toml", environ={})
    assert str(settings.cache) == "/var/cache/iiifserver"  # the unit's CacheDirectory, its only writable path
    assert settings.host == "127.0.0.1"
