"""Tests of the validator harness (tests/e2e/validators.py) on real captured output.

The samples in tests/e2e/data/ were captured from both validators run against
zimeon's IIIF reference server (PyPI ``iiif`` 1.0.10, ``iiif_testserver.py`` with
the PIL manipulator, serving the validation image on 127.0.0.1): on port 8765 as
shipped (its info.json declares level1) and on 8766 with info.json patched to
declare level2, which its PIL manipulator implements. ``samples.json`` records
each sample's command line, exit code and the test lists the harness would have
passed in. The ng samples but the unreachable-server one were captured with the
predecessor of ``tests/e2e/ng_validate.py``, whose output the wrapper keeps line
for line (tested below with a stand-in validator package). These tests need
neither the validator venvs nor a server.
"""

import dataclasses
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.e2e import ng_validate
from tests.e2e import validators as v

DATA = Path(__file__).parent / "data"
SAMPLES: dict[str, dict[str, Any]] = json.loads((DATA / "samples.json").read_text())

# What the classic validator selects for --version=3.0 --level 2.
CLASSIC_3_0_LEVEL2 = (
    "baseurl_redirect",
    "cors",
    "format_error_random",
    "format_jpg",
    "format_png",
    "id_basic",
    "id_error_escapedslash",
    "id_error_random",
    "id_error_unescaped",
    "id_escaped",
    "id_squares",
    "info_json",
    "jsonld",
    "quality_bitonal",
    "quality_color",
    "quality_error_random",
    "quality_grey",
    "region_error_random",
    "region_percent",
    "region_pixels",
    "region_square",
    "rot_error_random",
    "rot_full_basic",
    "rot_region_basic",
    "size_bwh",
    "size_ch",
    "size_error_random",
    "size_nofull",
    "size_noup",
    "size_percent",
    "size_region",
    "size_wc",
    "size_wh",
)
# 3.0-only tests; the rest of the level-2 set is the same for --version=2.0.
CLASSIC_3_0_ONLY = {"region_square", "size_nofull", "size_noup"}

# ng tests the reference server never gets: formats and features it does not
# declare, caching it does not advertise, and level-3 tests.
NG_NOT_DECLARED = (
    "format_gif",
    "format_jp2",
    "format_pdf",
    "format_tif",
    "format_webp",
    "http_caching",
    "http_linkheader_canonical",
    "http_linkheader_profile",
    "quality_bitonal",
    "rot_full_non90",
    "rot_mirror",
    "rot_mirror_180",
    "rot_region_non90",
    "size_up",
)

PYTHON_3_URLLIB = "exception: module 'urllib' has no attribute 'urlopen'"


def sample(name: str) -> str:
    return (DATA / name).read_text()


def parse_classic_sample(name: str) -> v.ValidatorResult:
    meta = SAMPLES[name]
    return v.parse_classic_output(sample(name), expected=meta["expected"], returncode=meta["returncode"])


def parse_ng_sample(name: str) -> v.ValidatorResult:
    meta = SAMPLES[name]
    return v.parse_ng_output(sample(name), all_tests=meta["all_tests"], returncode=meta["returncode"])


# ------------------------------------------------------------------- classic


def test_classic_3_0_level2_reference_server_passes_everything() -> None:
    result = parse_classic_sample("classic-3.0-level2-reference.txt")
    assert result.passed == CLASSIC_3_0_LEVEL2
    assert result.failed == {}
    assert result.skipped == ()
    assert result.ok


def test_classic_2_0_level2_reference_server_passes_everything() -> None:
    result = parse_classic_sample("classic-2.0-level2-reference.txt")
    assert len(result.passed) == 30
    assert set(result.passed) == set(CLASSIC_3_0_LEVEL2) - CLASSIC_3_0_ONLY
    assert result.failed == {}


def test_classic_level3_reports_the_validators_own_broken_tests() -> None:
    result = parse_classic_sample("classic-3.0-level3-reference.txt")
    assert len(result.passed) == 37
    assert set(result.failed) == {
        "format_gif",
        "format_jp2",
        "format_pdf",
        "format_tif",
        "format_webp",
        "linkheader_canonical",
        "rot_mirror",
        "rot_mirror_180",
    }
    for name in v.CLASSIC_VALIDATOR_BROKEN:
        assert result.failed[name] == PYTHON_3_URLLIB
    assert result.failed["format_tif"].startswith("status: got 415, expected 200 (Failed to retrieve tiff.) url: [")
    assert result.failed["rot_mirror"].startswith("status: got 501, expected 200 url: [")
    assert "/full/max/!0/default.jpg" in result.failed["rot_mirror"]


def test_classic_failure_shapes_against_wrong_endpoint() -> None:
    result = parse_classic_sample("classic-3.0-level2-on-2.0-endpoint.txt")
    assert len(result.passed) == 16
    assert len(result.failed) == 17
    assert v.RUN_ERROR not in result.failed
    assert set(result.passed) | set(result.failed) == set(CLASSIC_3_0_LEVEL2)
    assert "size_wh" in result.passed
    assert result.failed["info_json"].startswith("required-field: id: got False, expected True url: [")
    # A warning-level check still fails the run; the reason says so.
    assert result.failed["size_nofull"].startswith(
        "size: got False, expected True (Version 3.0 has replaced the size full with max.) [warning]"
    )
    assert result.failed["region_pixels"].startswith("exception: cannot identify image file")
    # The validator's own bug on size_noup's failure path (see module docstring).
    assert result.failed["size_noup"] == (
        "exception: ValidatorError.__init__() missing 3 required positional arguments: "
        + "'type', 'got', and 'expected'"
    )
    assert result.failed["region_square"].startswith(
        "square-region: got 400, expected 200 (A square region is manditory"
    )


def test_classic_truncated_output_marks_unreported_tests_failed() -> None:
    lines = sample("classic-3.0-level2-reference.txt").splitlines()
    # Keep through "[20] test region_pixels PASS", as if the process had died there.
    cut = next(i for i, line in enumerate(lines) if line.startswith("[20] "))
    result = v.parse_classic_output("\n".join(lines[: cut + 1]), expected=CLASSIC_3_0_LEVEL2, returncode=1)
    assert result.passed == CLASSIC_3_0_LEVEL2[:20]
    assert set(result.failed) == {v.RUN_ERROR, *CLASSIC_3_0_LEVEL2[20:]}
    assert result.failed["region_square"] == "no result reported"
    assert "no 'Done' summary line (exit code 1)" in result.failed[v.RUN_ERROR]


def test_classic_timeout_is_a_run_error() -> None:
    partial = "Importing 3\n[1] test baseurl_redirect PASS\n"
    result = v.parse_classic_output(partial, expected=CLASSIC_3_0_LEVEL2, returncode=None)
    assert result.passed == ("baseurl_redirect",)
    assert result.failed[v.RUN_ERROR] == "validator timed out"
    assert result.failed["cors"] == "no result reported (timed out)"


def test_classic_summary_must_match_exit_code() -> None:
    result = v.parse_classic_output(sample("classic-3.0-level2-reference.txt"), returncode=3)
    assert len(result.passed) == 33
    assert set(result.failed) == {v.RUN_ERROR}
    assert "exit code 3" in result.failed[v.RUN_ERROR]


def test_classic_command_lines() -> None:
    base = [str(v.CLASSIC_PYTHON), str(v.CLASSIC_SCRIPT), "-s", "127.0.0.1:8080"]
    assert v.classic_command("127.0.0.1:8080", "/iiif/3/", v.VALIDATION_ID, "3.0", 2) == [
        *base,
        *("-p", "iiif/3", "-i", v.VALIDATION_ID, "--version=3.0", "--level", "2"),
    ]
    assert v.classic_command("127.0.0.1:8080", "", "x", "2.1", 1, ["cors", "jsonld"]) == [
        *base,
        *("-i", "x", "--version=2.0", "--test", "cors", "--test", "jsonld"),
    ]
    with pytest.raises(ValueError, match="unsupported"):
        v.classic_version_arg("1.1")


def test_classic_broken_set_is_level3_only() -> None:
    all_3_0 = set(SAMPLES["classic-3.0-level3-reference.txt"]["expected"])
    assert {"format_jp2", "format_pdf", "format_webp"} == v.CLASSIC_VALIDATOR_BROKEN
    assert all_3_0 >= v.CLASSIC_VALIDATOR_BROKEN
    assert not v.CLASSIC_VALIDATOR_BROKEN & set(CLASSIC_3_0_LEVEL2)


# ------------------------------------------------------------------------ ng


def test_ng_3_0_level2_reference_server() -> None:
    result = parse_ng_sample("ng-3.0-reference-level2.txt")
    assert len(result.passed) == 30
    assert set(result.failed) == {"format_error_random", "http_cors"}
    assert result.failed["format_error_random"].startswith(
        "Server did not return 400 for random format | expected: 400 Bad Request | received: 415"
    )
    assert "method=OPTIONS" in result.failed["http_cors"]
    assert result.skipped == NG_NOT_DECLARED
    all_tests = set(SAMPLES["ng-3.0-reference-level2.txt"]["all_tests"])
    assert set(result.passed) == all_tests - set(NG_NOT_DECLARED) - set(result.failed)
    # http_cors passed 3 of its 4 checks; one failed check fails the test.
    assert "http_cors" not in result.passed


def test_ng_level1_server_skips_level2_tests() -> None:
    result = parse_ng_sample("ng-3.0-reference-level1.txt")
    assert len(result.passed) == 24
    assert set(result.failed) == {"format_error_random", "http_cors"}
    assert set(result.skipped) - set(NG_NOT_DECLARED) == {
        "region_percent",
        "rot_full_basic",
        "rot_region_basic",
        "size_bwh",
        "size_percent",
        "size_region",
    }


def test_ng_2_0_reference_server() -> None:
    result = parse_ng_sample("ng-2.0-reference-level2.txt")
    assert len(result.passed) == 27
    assert set(result.failed) == {"format_error_random", "http_cors"}
    assert "size_wh" in result.passed
    assert "region_square" in result.skipped  # a 3.0 feature


def test_ng_several_failed_checks_per_test() -> None:
    text = sample("ng-3.0-on-2.0-endpoint.txt")
    result = parse_ng_sample("ng-3.0-on-2.0-endpoint.txt")
    assert len(result.passed) == 17
    assert len(result.failed) == 12
    assert v.RUN_ERROR not in result.failed
    n_info_failures = text.count("\nFAIL info_json: ")
    assert n_info_failures > 1
    assert len(result.failed["info_json"].splitlines()) == n_info_failures
    assert result.failed["info_json"].startswith("info.json failed: required field: id | ")


def test_ng_run_that_cannot_start_is_a_run_error() -> None:
    result = parse_ng_sample("ng-connection-refused.txt")
    assert result.passed == ()
    assert result.skipped == ()
    assert set(result.failed) == {v.RUN_ERROR}
    assert "Connection refused" in result.failed[v.RUN_ERROR]
    assert "(exit code 2)" in result.failed[v.RUN_ERROR]


def test_ng_crash_without_summary_is_a_run_error() -> None:
    text = sample("ng-3.0-reference-level2.txt")
    cut = text.index("PASS id_basic\n")
    result = v.parse_ng_output(text[:cut] + "Traceback (most recent call last):\n", returncode=1)
    assert v.RUN_ERROR in result.failed
    assert "no 'N passed, N failed' summary (exit code 1)" in result.failed[v.RUN_ERROR]
    assert result.skipped == ()  # nothing is known of the tests that did not report


def test_ng_summary_mismatch_is_a_run_error() -> None:
    text = sample("ng-3.0-reference-level2.txt").replace("PASS id_basic\n", "")
    result = v.parse_ng_output(text, returncode=1)
    assert "id_basic" not in result.passed
    assert "parsed 92 passed, 2 failed checks" in result.failed[v.RUN_ERROR]


def test_ng_command_line() -> None:
    assert v.NG_WRAPPER == v.REPO_ROOT / "tests" / "e2e" / "ng_validate.py"
    assert v.NG_WRAPPER.is_file()
    assert v.ng_command("http://127.0.0.1:9/iiif/2/", v2=True) == [
        str(v.NG_PYTHON),
        str(v.NG_WRAPPER),
        "--v2",
        "http://127.0.0.1:9/iiif/2",
    ]
    assert v.ng_command("http://127.0.0.1:9/iiif/3", validation_id="other")[2:] == [
        "--validation-id",
        "other",
        "http://127.0.0.1:9/iiif/3",
    ]


# ---------------------------------------------------------------- ng wrapper
#
# The wrapper runs in the validator venv, importing iiif_validator inside main(); here a stand-in
# package gives it known results, so its output format is tested against the parser in-process.


class _Failure(NamedTuple):
    expected: str
    received: str
    url: str
    details: str = "Validation failed"


class _Success(NamedTuple):
    details: str = "Validation successful"


class _Features(NamedTuple):
    compliance_level: enum.Enum
    extra_qualities: list[str]
    extra_formats: list[str]
    extra_features: list[str]
    supports_caching: bool


class _Level(enum.Enum):
    LEVEL_2 = 2


def _stand_in_validator(monkeypatch: pytest.MonkeyPatch, results: list[tuple[str, object]], reachable: bool) -> None:
    class Version(enum.Enum):
        V2 = "2.0"
        V3 = "3.0"

    class Server(NamedTuple):
        base_url: str
        validation_id: str
        version: Version

        def info_url(self) -> str:
            return f"{self.base_url}/{self.validation_id}/info.json"

        def feature_set(self) -> _Features:
            if not reachable:
                raise OSError("[Errno 111] Connection refused")
            return _Features(_Level.LEVEL_2, ["gray"], ["png"], ["mirroring"], True)

    def run_tests(server: Server, max_threads: int = 4) -> list[tuple[type, object]]:
        assert server.base_url == "http://127.0.0.1:9/iiif/3"  # the trailing slash is dropped
        return [(type("T", (), {"__module__": f"iiif_validator.tests.{name}"}), out) for name, out in results]

    test_module = types.ModuleType("iiif_validator.tests.test")
    test_module.__dict__.update(IIIFVersion=Version, TargetServer=Server, ValidationFailure=_Failure)
    validate_module = types.ModuleType("iiif_validator.validate")
    validate_module.__dict__.update(run_tests=run_tests)
    for name, module in {
        "iiif_validator": types.ModuleType("iiif_validator"),
        "iiif_validator.tests": types.ModuleType("iiif_validator.tests"),
        "iiif_validator.tests.test": test_module,
        "iiif_validator.validate": validate_module,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_ng_wrapper_output_parses_back(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    results: list[tuple[str, object]] = [
        ("id_basic", _Success()),
        ("http_cors", [_Success(), _Failure("*", "none\nat all" + "x" * 400, "http://u/1", "no CORS header")]),
        ("size_wh", _Success()),
        ("info_json", [_Failure("id", "missing", "http://u/2"), _Failure("type", "missing", "http://u/3")]),
    ]
    _stand_in_validator(monkeypatch, results, reachable=True)
    code = ng_validate.main(["http://127.0.0.1:9/iiif/3/"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == (
        "version=3.0 level=LEVEL_2 extraQualities=['gray'] extraFormats=['png'] "
        "extraFeatures=['mirroring'] caching=True"
    )
    assert lines[-1] == "3 passed, 3 failed"
    cors = next(line for line in lines if line.startswith("FAIL http_cors: "))
    # received is flattened onto the line and cut, so one check is one line
    assert cors == f"FAIL http_cors: no CORS header | expected: * | received: none at all{'x' * 289} | url: http://u/1"
    result = v.parse_ng_output(
        out, all_tests=["id_basic", "http_cors", "size_wh", "info_json", "format_gif"], returncode=code
    )
    assert result.passed == ("id_basic", "size_wh")
    assert set(result.failed) == {"http_cors", "info_json"}
    assert len(result.failed["info_json"].splitlines()) == 2
    assert result.skipped == ("format_gif",)


def test_ng_wrapper_exits_0_when_all_pass(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _stand_in_validator(monkeypatch, [("id_basic", _Success()), ("size_wh", [_Success(), _Success()])], reachable=True)
    code = ng_validate.main(["http://127.0.0.1:9/iiif/3"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[-1] == "3 passed, 0 failed"
    assert v.parse_ng_output(out, returncode=code).ok


def test_ng_wrapper_unreachable_server(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _stand_in_validator(monkeypatch, [], reachable=False)
    code = ng_validate.main(["http://127.0.0.1:9/iiif/3", "--validation-id", "abc"])
    out = capsys.readouterr().out
    assert code == 2
    assert out == "cannot read http://127.0.0.1:9/iiif/3/abc/info.json: OSError: [Errno 111] Connection refused\n"
    result = v.parse_ng_output(out, returncode=code)
    assert set(result.failed) == {v.RUN_ERROR}


# -------------------------------------------------------------------- shared


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_parse_consistently_with_their_exit_code(name: str) -> None:
    parse = parse_classic_sample if name.startswith("classic") else parse_ng_sample
    result = parse(name)
    assert result.output == sample(name)
    assert not set(result.passed) & set(result.failed)
    assert not set(result.skipped) & (set(result.passed) | set(result.failed))
    assert result.ok == (SAMPLES[name]["returncode"] == 0)


def test_result_is_frozen() -> None:
    result = v.ValidatorResult(passed=(), failed={}, skipped=(), output="")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = ("x",)  # type: ignore[misc]
