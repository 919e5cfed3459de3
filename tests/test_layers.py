"""The import boundaries of pyproject.toml's ``[tool.importlinter]``: kept by the package, and able to fail.

The second half runs the same contracts on a copy of the package with one forbidden import
added, so a contract that matched nothing (a renamed module, a mistyped layer) is noticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = (
    "Layers: each layer imports only the layers below it",
    "pyvips only in the probe, the renderer and the offline tools",
    "starlette only in web/ and app.py",
    "iiif_prezi3 only in presentation/",
    "prometheus_client only in web/metrics.py",
    "redis only in cache/shared.py",
    "glymur (OpenJPEG) only in image/jp2.py",
    "dask and distributed only in ingest/cluster.py",
    "boto3 and botocore only in image/object_store.py",
)


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with ``where``'s pyproject.toml, on the ``iiifserver`` package found in ``where``."""
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(where / "pyproject.toml")],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in result.stdout
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's Python files and pyproject.toml, in a folder of their own."""
    where = tmp_path_factory.mktemp("layers")
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")

    def not_python(folder: str, names: list[str]) -> list[str]:
        return [name for name in names if not name.endswith(".py") and not (Path(folder) / name).is_dir()]

    shutil.copytree(ROOT / "iiifserver", where / "iiifserver", ignore=not_python)
    return where


@pytest.mark.parametrize(
    ("module", "bad_import", "contract", "reported"),
    [
        (
            "image/planner.py",
            "import pyvips",
            CONTRACTS[1],
            "iiifserver.image.planner -> pyvips",
        ),
        (
            "config.py",
            "from iiifserver.image import planner",
            CONTRACTS[0],
            "iiifserver.config -> iiifserver.image.planner",
        ),
        (
            "image/service.py",
            "import starlette.responses",
            CONTRACTS[2],
            "iiifserver.image.service -> starlette",
        ),
        (
            "web/pages.py",
            "import iiif_prezi3",
            CONTRACTS[3],
            "iiifserver.web.pages -> iiif_prezi3",
        ),
        (
            "web/admin.py",
            "import prometheus_client",
            CONTRACTS[4],
            "iiifserver.web.admin -> prometheus_client",
        ),
        (
            "cache/tiered.py",
            "import redis",
            CONTRACTS[5],
            "iiifserver.cache.tiered -> redis",
        ),
        (
            "presentation/builder.py",
            "from iiifserver.web import urls",
            CONTRACTS[0],
            "iiifserver.presentation.builder -> iiifserver.web.urls",
        ),
        (
            "image/render.py",
            "import glymur",
            CONTRACTS[6],
            "iiifserver.image.render -> glymur",
        ),
        (
            "ingest/batch.py",
            "import distributed",
            CONTRACTS[7],
            "iiifserver.ingest.batch -> distributed",
        ),
    ],
    ids=[
        "pyvips-in-planner",
        "config-imports-image",
        "starlette-in-image",
        "prezi-in-web",
        "prometheus-in-admin",
        "redis-in-tiered",
        "presentation-imports-web",
        "glymur-in-render",
        "dask-in-batch",
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    package_copy: Path, module: str, bad_import: str, contract: str, reported: str
) -> None:
    path = package_copy / "iiifserver" / module
    original = path.read_text()
    path.write_text(original + f"\n{bad_import}  # the violation under test\n")
    try:
        result = lint_imports(package_copy)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout
    assert f"Contracts: {len(CONTRACTS) - 1} kept, 1 broken." in result.stdout
    assert reported in result.stdout
