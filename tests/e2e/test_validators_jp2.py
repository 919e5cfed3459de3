"""The official IIIF Image API validators against the live server serving the JPEG 2000 version of
the validator's test image (``tests/data/conformance/*.jp2``, the image-validator's own file).

The same bar as ``test_validators.py`` sets for the PNG/TIFF version: the classic validator's
3.0 level-2 set all passes (and level 3 but the tests it cannot run), and iiif-validator-ng
reports no failed check on 3.0 and 2.x. The image root holds nothing but the JP2 file, so every
answer is decoded from JPEG 2000 (OpenJPEG, ``image/jp2.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer, start_server, stop_server
from tests.e2e.validators import CLASSIC_VALIDATOR_BROKEN, ValidatorResult, run_classic, run_ng

pytestmark = pytest.mark.e2e

ID = "67352ccc-d1b0-11e1-89ae-279075081939"
CONFORMANCE_JP2 = Path(__file__).resolve().parents[1] / "data" / "conformance" / f"{ID}.jp2"


@pytest.fixture(scope="module")
def jp2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    images = tmp_path_factory.mktemp("jp2-images")
    shutil.copyfile(CONFORMANCE_JP2, images / CONFORMANCE_JP2.name)
    log = tmp_path_factory.mktemp("jp2-log") / "server.log"
    proc, port = start_server(images, tmp_path_factory.mktemp("jp2-cache"), log=log)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", port, images, proc.pid)
    finally:
        stop_server(proc)


def _show(result: ValidatorResult) -> str:
    return "\n".join(f"{name}: {reason}" for name, reason in result.failed.items()) + "\n" + result.output[-3000:]


def test_the_source_is_jpeg2000(jp2_server: LiveServer) -> None:
    assert [p.suffix for p in jp2_server.images.iterdir()] == [".jp2"]


def test_classic_3_0_level_2_all_pass_on_jp2(jp2_server: LiveServer) -> None:
    result = run_classic(f"127.0.0.1:{jp2_server.port}", "iiif/3", ID, "3.0", 2)
    assert not result.failed, _show(result)
    assert len(result.passed) == 33, result.passed


def test_classic_3_0_level_3_all_but_broken_pass_on_jp2(jp2_server: LiveServer) -> None:
    result = run_classic(f"127.0.0.1:{jp2_server.port}", "iiif/3", ID, "3.0", 3)
    assert not result.failed, _show(result)
    assert set(result.skipped) == set(CLASSIC_VALIDATOR_BROKEN)


def test_ng_3_0_passes_on_jp2(jp2_server: LiveServer) -> None:
    result = run_ng(f"{jp2_server.base}/iiif/3")
    assert not result.failed, _show(result)
    assert len(result.passed) >= 30, result.passed


def test_ng_2_passes_on_jp2(jp2_server: LiveServer) -> None:
    result = run_ng(f"{jp2_server.base}/iiif/2", v2=True)
    assert not result.failed, _show(result)
    assert len(result.passed) >= 27, result.passed
