"""deploy/compose.yaml: valid against the Compose specification, and wired as documented."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.tools import DEPLOY, run, tool

COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_valid_against_the_compose_spec() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_is_not_blind(tmp_path: Any) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE.read_text().replace("    restart: unless-stopped", "    restarts: unless-stopped", 1))
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", bad)
    assert result.returncode != 0


def test_three_replicas_behind_nginx_with_a_shared_cache() -> None:
    services = compose()["services"]
    server = services["iiifserver"]
    assert server["deploy"]["replicas"] == 3
    assert server["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    env = server["environment"]
    assert env["IIIFSERVER_SHARED_CACHE_URL"] == "redis://redis:6379/0"
    # Only nginx, at its fixed address, is a trusted proxy.
    nginx = services["nginx"]
    assert env["IIIFSERVER_TRUSTED_PROXIES"] == nginx["networks"]["iiif"]["ipv4_address"]
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert nginx["depends_on"]["iiifserver"]["condition"] == "service_healthy"
    for mount in nginx["volumes"]:
        assert (DEPLOY / mount.split(":")[0]).is_file(), mount
    assert "server iiifserver:8000" in (DEPLOY / "compose" / "nginx-upstream.conf").read_text()


def test_prometheus_is_an_opt_in_profile_scraping_every_replica() -> None:
    prometheus = compose()["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    config = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "iiifserver")
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [{"names": ["iiifserver"], "type": "A", "port": 8000}]
