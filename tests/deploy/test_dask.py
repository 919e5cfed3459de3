"""deploy/dask: the Dask-operator example builds and validates, and the SLURM example uses real parameters.

Kubernetes has no schema for the operator's DaskCluster, so its pod and service templates are
validated as the Pod and Service the operator makes of them (kubernetes-validate --strict), and
the fields the operator's CRD requires (kubernetes.dask.org/v1, dask-kubernetes 2025.7) are
checked here. The SLURM script is compiled, and every keyword it passes to SLURMCluster must be a
parameter of dask-jobqueue's SLURMCluster, SLURMJob or their base classes.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from iiifserver.ingest.cluster import RESOURCE
from tests.deploy.test_kubernetes import K8S_VERSION, by_kind
from tests.deploy.tools import DEPLOY, run, tool

DASK = DEPLOY / "dask"
KUBE = DASK / "kubernetes"
SLURM_SCRIPT = DASK / "slurm" / "cluster.py"
BASE_IMAGE = "registry.example.org/iiifserver"  # deploy/kubernetes/base's image, without the tag


def built() -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", KUBE)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(docs: list[dict[str, Any]], tmp_path: Path) -> tuple[int, str]:
    out = tmp_path / "docs.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    checked = run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, out)
    return checked.returncode, checked.stdout + checked.stderr


def as_pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return built()


def test_every_file_parses_and_is_in_the_kustomization() -> None:
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    for name in on_disk:
        assert list(yaml.safe_load_all((KUBE / name).read_text()))


def test_plain_resources_and_the_operators_pods_validate(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    cluster = by_kind(docs, "DaskCluster", "iiif-ingest")
    plain = [d for d in docs if d["kind"] != "DaskCluster"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "iiif-ingest-scheduler"},
        "spec": cluster["spec"]["scheduler"]["service"],
    }
    made = [
        as_pod("worker", cluster["spec"]["worker"]["spec"]),
        as_pod("scheduler", cluster["spec"]["scheduler"]["spec"]),
        service,
    ]
    code, output = validate(plain + made, tmp_path)
    assert code == 0, output
    assert "passed" in output


def test_validation_is_not_blind(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    worker = by_kind(docs, "DaskCluster", "iiif-ingest")["spec"]["worker"]["spec"]
    broken = {**worker, "containers": [{**worker["containers"][0], "volumeMount": []}]}  # a misspelt field
    assert validate([as_pod("worker", broken)], tmp_path)[0] != 0


def test_daskcluster_has_what_the_operators_crd_requires(docs: list[dict[str, Any]]) -> None:
    cluster = by_kind(docs, "DaskCluster", "iiif-ingest")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["metadata"]["namespace"] == "museum-iiif"
    spec = cluster["spec"]
    assert {"scheduler", "worker"} <= spec.keys()
    assert {"spec", "service"} <= spec["scheduler"].keys()
    assert "spec" in spec["worker"]
    assert isinstance(spec["worker"]["replicas"], int)
    assert isinstance(spec["idleTimeout"], int)
    assert set(spec) <= {"scheduler", "worker", "idleTimeout"}  # the CRD's properties
    assert set(spec["worker"]) <= {"replicas", "metadata", "spec"}
    assert set(spec["scheduler"]) <= {"metadata", "spec", "service"}
    # The operator selects the scheduler pod by these labels and names the Service <cluster>-scheduler.
    assert spec["scheduler"]["service"]["selector"] == {
        "dask.org/cluster-name": "iiif-ingest",
        "dask.org/component": "scheduler",
    }
    ports = spec["scheduler"]["service"]["ports"]
    assert {"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"} in ports


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_workers_declare_memory_within_their_limit(docs: list[dict[str, Any]]) -> None:
    worker = _container(by_kind(docs, "DaskCluster", "iiif-ingest")["spec"]["worker"]["spec"])
    assert worker["command"] == ["dask", "worker"]
    args = worker["args"]
    assert args[args.index("--nthreads") + 1] == "1"
    name, _, value = args[args.index("--resources") + 1].partition("=")
    assert name == RESOURCE
    limit = worker["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    assert 0 < int(value) < int(limit[:-2]) * 2**30  # room left for Python, libvips and Dask


def test_image_volumes_and_address_agree(docs: list[dict[str, Any]]) -> None:
    cluster = by_kind(docs, "DaskCluster", "iiif-ingest")
    job = by_kind(docs, "Job", "iiif-ingest-convert")
    pods = {
        "worker": cluster["spec"]["worker"]["spec"],
        "scheduler": cluster["spec"]["scheduler"]["spec"],
        "convert": job["spec"]["template"]["spec"],
    }
    images = {_container(spec)["image"] for spec in pods.values()}
    assert images == {f"{BASE_IMAGE}:0.1.0-cluster"}  # one image everywhere: the same iiifserver and Dask
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ARG CLUSTER=0" in dockerfile
    assert '".[cluster]"' in dockerfile
    base = yaml.safe_load((DEPLOY / "kubernetes" / "base" / "deployment.yaml").read_text())
    assert base["spec"]["template"]["spec"]["containers"][0]["image"].startswith(BASE_IMAGE + ":")

    claim = by_kind(docs, "PersistentVolumeClaim", "iiif-ingest")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # written by pods on any node

    def mounts(spec: dict[str, Any]) -> dict[str, tuple[str, bool]]:
        volumes = {v["name"]: v for v in spec["volumes"]}
        found = {}
        for mount in _container(spec)["volumeMounts"]:
            claim_name = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
            if claim_name == "iiif-ingest":
                found[mount["mountPath"]] = (mount["subPath"], bool(mount.get("readOnly", False)))
        return found

    expected = {"/srv/iiif/masters": ("masters", True), "/srv/iiif/images": ("images", False)}
    assert mounts(pods["worker"]) == expected
    assert mounts(pods["convert"]) == expected

    args = _container(pods["convert"])["args"]
    assert args[0] == "convert"
    assert args[1] == "/srv/iiif/masters"
    assert args[args.index("--out") + 1] == "/srv/iiif/images"
    assert args[args.index("--cluster") + 1] == "tcp://iiif-ingest-scheduler:8786"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1  # a dead client pod is replaced, and resumes
    scheduler = _container(pods["scheduler"])
    assert scheduler["command"] == ["dask", "scheduler"]
    assert 8786 in [p["containerPort"] for p in scheduler["ports"]]


def test_the_volume_paths_are_the_images_own() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "/srv/iiif/images" in dockerfile
    assert "USER 10001:10001" in dockerfile  # hence runAsUser and fsGroup 10001 on the writers
    job = yaml.safe_load((KUBE / "convert-job.yaml").read_text())
    assert job["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def _slurm_call() -> ast.Call:
    tree = ast.parse(SLURM_SCRIPT.read_text(), filename=str(SLURM_SCRIPT))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "SLURMCluster"
    ]
    assert len(calls) == 1
    return calls[0]


def test_slurm_script_compiles_and_uses_real_parameters() -> None:
    compile(SLURM_SCRIPT.read_text(), str(SLURM_SCRIPT), "exec")
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.slurm import SLURMJob

    known: set[str] = set()
    for function in (JobQueueCluster.__init__, SLURMCluster.__init__, SLURMJob.__init__, Job.__init__):
        known |= {
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
        }
    assert {"queue", "account", "cores", "memory", "walltime", "worker_extra_args"} <= known  # not blind
    used = {k.arg for k in _slurm_call().keywords}
    assert None not in used
    assert used <= known, f"not SLURMCluster parameters: {sorted(str(u) for u in used - known)}"


def test_slurm_workers_get_the_memory_resource() -> None:
    keywords = {k.arg: k.value for k in _slurm_call().keywords}
    extra = keywords["worker_extra_args"]
    assert isinstance(extra, ast.List)
    first = extra.elts[0]
    assert isinstance(first, ast.Constant)
    assert first.value == "--resources"
    assert f"{RESOURCE}=" in ast.unparse(extra.elts[1])


def test_slurm_script_prints_the_address_for_convert() -> None:
    printed = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(SLURM_SCRIPT.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert any("--cluster {cluster.scheduler_address}" in text for text in printed)
