"""Run the official IIIF Image API validators against a live server and parse their output.

This module owns the command lines for both validators, where their venvs live
(``.venv-validators/``, built by ``scripts/install-validators.sh``), and the
parsing of their output into :class:`ValidatorResult`. It imports nothing from
pytest so that it can also be used from a script or a REPL.

Classic validator (PyPI ``iiif-validator`` 1.0.5, Python 3.11 venv)
    Command (what :func:`run_classic` runs for a 3.0 level-2 server)::

        .venv-validators/classic/bin/python .venv-validators/classic/bin/iiif-validate.py \\
            -s 127.0.0.1:PORT -p PREFIX -i 67352ccc-d1b0-11e1-89ae-279075081939 --version=3.0 --level 2

    ``--version=2.0`` for any 2.x server (``2.1`` selects no level 0-2 tests).
    ``--test NAME`` (repeatable) runs only the named tests and ignores
    ``--level``; it is used when a test in the level must be skipped. Output
    (the results go through :mod:`logging` to stderr, plus an ``Importing 3``
    print on stdout; both are captured together)::

        [1] test baseurl_redirect PASS
        [4] test format_gif FAIL
          url: ['http://127.0.0.1:8765/3.0_pil/67352ccc-.../full/max/0/default.gif']
          got: 415
          expected: 200
          type: status
          message:
          Is Warning?: False
        [5] test format_jp2 FAIL
          exception: module 'urllib' has no attribute 'urlopen'

        Done (45 tests, 8 failures)

    The exit code is the number of failures. A failed check flagged
    ``Is Warning?: True`` still counts as a failure there, so it does here too
    (its reason is tagged ``[warning]``). Each HTTP request times out after 5 s.

    Known to be broken in the validator itself on Python 3 (all level 3, so a
    level <= 2 run never selects them; see :data:`CLASSIC_VALIDATOR_BROKEN`).
    Evidence from ``iiif_validator/tests/`` in the installed package:

    * ``format_jp2.py`` / ``format_pdf.py``: ``import magic, urllib`` then
      ``urllib.urlopen(url)`` -- Python 2 only; every run ends in
      ``exception: module 'urllib' has no attribute 'urlopen'``. Past that,
      ``with magic.Magic() as m: m.id_buffer(...)`` is the API of the
      ``filemagic`` package, but the installed dependency is ``python-magic``,
      whose ``Magic`` has neither ``__enter__`` nor ``id_buffer``.
    * ``format_webp.py``: the same ``urllib.urlopen`` call; past that
      ``img[8:12] != "WEBP"`` compares bytes with str, which is always unequal
      on Python 3, so the test could never pass.

    Quirks that do not make a test unusable, but matter when reading results:

    * ``baseurl_redirect`` and ``size_noup`` fail correctly, but with a useless
      reason (``name 'u' is not defined``; ``ValidatorError.__init__() missing
      3 required positional arguments``): their failure paths have bugs.
    * ``baseurl_redirect`` follows redirects with urllib, so any redirect
      passes; ng's ``http_baseurl_redirect`` is the strict one.
    * ``quality_bitonal`` calls ``img.getcolors()`` (at most 256 colours) on a
      non-``L``/``1`` image, so a bitonal JPEG served as RGB fails with
      ``'NoneType' object is not iterable``; serve bitonal as ``L`` or ``1``.
    * ``size_nofull`` is a warning-level check that the classic CLI counts as
      a failure; it only checks "status != 200", so it passes even when the
      server cannot be reached.

ng validator (PyPI ``iiif-validator-ng`` 0.1.0, Python 3.12 venv)
    Run through the project's wrapper ``tests/e2e/ng_validate.py`` (the
    package's own CLI always exits 0)::

        .venv-validators/ng/bin/python tests/e2e/ng_validate.py [--v2] \\
            http://127.0.0.1:PORT/PREFIX

    Output: one ``version=... level=LEVEL_n ...`` line describing what it read
    from info.json, then one ``PASS name`` or ``FAIL name: details |
    expected: ... | received: ... | url: ...`` line per *check* (a test
    module reports several, in thread-completion order), then ``N passed, N
    failed``; exit 1 if a check failed. When info.json cannot be read it
    prints why, no summary, and exits 2. A test is passed here if all of its checks passed. ng chooses
    tests by the level and extra features the server's info.json declares;
    the version's other tests are reported as skipped.

Failures that belong to no single test (a timeout, a crash, a missing or
inconsistent summary line) are keyed :data:`RUN_ERROR`.
"""

import json
import os
import re
import subprocess
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_ROOT = REPO_ROOT / ".venv-validators"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-validators.sh"
CLASSIC_PYTHON = VENV_ROOT / "classic" / "bin" / "python"
CLASSIC_SCRIPT = VENV_ROOT / "classic" / "bin" / "iiif-validate.py"
NG_PYTHON = VENV_ROOT / "ng" / "bin" / "python"
NG_WRAPPER = Path(__file__).resolve().with_name("ng_validate.py")  # the project's own, next to this file

# The identifier both validators expect: the 10x10 colour-grid test image.
VALIDATION_ID = "67352ccc-d1b0-11e1-89ae-279075081939"

# Key in ValidatorResult.failed for problems with the run rather than a test.
RUN_ERROR = "<run>"

DEFAULT_TIMEOUT = 300.0

CLASSIC_VALIDATOR_BROKEN: frozenset[str] = frozenset(
    {
        "format_jp2",  # Py2 urllib.urlopen, then filemagic's API on python-magic: always errors
        "format_pdf",  # same code as format_jp2: always errors
        "format_webp",  # Py2 urllib.urlopen, then bytes != "WEBP" (str): can never pass
    }
)


class ValidatorUnavailable(RuntimeError):
    """A validator venv or script is missing: run scripts/install-validators.sh."""


@dataclass(frozen=True)
class ValidatorResult:
    """Per-test outcome of one validator run."""

    passed: tuple[str, ...]
    failed: dict[str, str]  # test name (or RUN_ERROR) -> reason
    skipped: tuple[str, ...]
    output: str

    @property
    def ok(self) -> bool:
        return not self.failed


def install_validators(timeout: float = 900.0) -> None:
    """Run the install script (quick when both venvs are up to date)."""
    subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- subprocess


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Unbuffered, so the classic CLI's stdout prints and stderr log interleave in order.
    env["PYTHONUNBUFFERED"] = "1"
    # The validators only talk to the server under test; a proxy setting would
    # send loopback requests to the proxy, and a PYTHONPATH would leak into the venv.
    for name in list(env):
        if name.lower().endswith("_proxy") or name in ("PYTHONPATH", "PYTHONHOME"):
            del env[name]
    return env


def _require(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            raise ValidatorUnavailable(f"{path} not found; run {INSTALL_SCRIPT}")


def _run(cmd: list[str], timeout: float) -> tuple[str, int | None]:
    """Run cmd with stderr merged into stdout; returncode None means it timed out."""
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.output or b""
        text = partial.decode("utf-8", "replace") if isinstance(partial, bytes) else partial
        return text, None
    return proc.stdout.decode("utf-8", "replace"), proc.returncode


def _json_from_helper(python: Path, code: str, *args: str) -> object:
    """Run a snippet in a validator venv and read the JSON on its last stdout line."""
    proc = subprocess.run(
        [str(python), "-c", code, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=_child_env(),
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ValidatorUnavailable(f"listing tests with {python} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------- classic

_CLASSIC_LIST_CODE = """\
import json, sys
from iiif_validator.validator import TestSuite, ValidationInfo
tests = TestSuite(ValidationInfo()).list_tests(sys.argv[1])
print(json.dumps({name: info["level"] for name, info in tests.items()}))
"""

_CLASSIC_HEADER = re.compile(r"^\[(\d+)\] test (\S+) (PASS|FAIL)\s*$")
_CLASSIC_DONE = re.compile(r"^Done \((\d+) tests, (\d+) failures\)\s*$")
_CLASSIC_DETAIL = re.compile(r"^  (url|got|expected|type|message|Is Warning\?|exception): ?(.*)$")


def classic_version_arg(version: str) -> str:
    """Map an Image API version to the classic CLI's --version value."""
    if version.startswith("3"):
        return "3.0"
    if version.startswith("2"):
        # The validator's tests know "2.0" only; "2.1" would select none of levels 0-2.
        return "2.0"
    raise ValueError(f"unsupported IIIF Image API version {version!r}")


def list_classic_tests(version: str) -> dict[str, int]:
    """Test name -> compliance level, as the classic validator defines them for version."""
    _require(CLASSIC_PYTHON)
    data = _json_from_helper(CLASSIC_PYTHON, _CLASSIC_LIST_CODE, classic_version_arg(version))
    assert isinstance(data, dict)
    return {str(name): int(level) for name, level in data.items()}


def classic_command(
    server: str,
    prefix: str,
    identifier: str,
    version: str,
    level: int | None = None,
    tests: Iterable[str] = (),
) -> list[str]:
    """The iiif-validate.py command line: by --level, or by explicit --test names."""
    cmd = [str(CLASSIC_PYTHON), str(CLASSIC_SCRIPT), "-s", server]
    # The validator splits the prefix on "/", so a leading slash would give "//" in URLs.
    prefix = prefix.strip("/")
    if prefix:
        cmd += ["-p", prefix]
    cmd += ["-i", identifier, f"--version={classic_version_arg(version)}"]
    names = list(tests)
    if names:
        for name in names:
            cmd += ["--test", name]
    elif level is not None:
        cmd += ["--level", str(level)]
    return cmd


def _classic_reason(details: Mapping[str, str]) -> str:
    if "exception" in details:
        return f"exception: {details['exception']}"
    check, got, want = (details.get(key, "?") for key in ("type", "got", "expected"))
    reason = f"{check}: got {got}, expected {want}"
    if details.get("message"):
        reason += f" ({details['message']})"
    if details.get("Is Warning?") == "True":
        reason += " [warning]"
    if details.get("url"):
        reason += f" url: {details['url']}"
    return reason


def parse_classic_output(
    output: str,
    expected: Iterable[str] | None = None,
    skipped: Iterable[str] = (),
    returncode: int | None = 0,
) -> ValidatorResult:
    """Parse iiif-validate.py output (stdout and stderr together).

    expected: tests the run should have reported; any without a result line
    counts as failed. returncode None means the run timed out.
    """
    passed: list[str] = []
    failed: dict[str, str] = {}
    fail_details: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    done: tuple[int, int] | None = None

    for line in output.splitlines():
        if header := _CLASSIC_HEADER.match(line):
            name, status = header.group(2), header.group(3)
            if status == "PASS":
                passed.append(name)
                current = None
            else:
                current = fail_details.setdefault(name, {})
            continue
        if done_match := _CLASSIC_DONE.match(line):
            done = (int(done_match.group(1)), int(done_match.group(2)))
            current = None
            continue
        if current is None:
            continue  # stdout noise such as "Importing 3", or -v detail lines after a PASS
        if detail := _CLASSIC_DETAIL.match(line):
            current[detail.group(1)] = detail.group(2).strip()

    for name, details in fail_details.items():
        failed[name] = _classic_reason(details)

    reported = set(passed) | set(failed)
    if returncode is None:
        failed[RUN_ERROR] = "validator timed out"
    elif done is None:
        tail = " | ".join(output.strip().splitlines()[-3:])
        failed[RUN_ERROR] = f"no 'Done' summary line (exit code {returncode}); output ends: {tail}"
    elif done != (len(reported), len(fail_details)) or returncode != done[1] % 256:  # exit(bad)
        failed[RUN_ERROR] = (
            f"summary says {done[0]} tests, {done[1]} failures with exit code {returncode}, "
            f"but parsed {len(reported)} tests, {len(fail_details)} failures"
        )
    for name in expected or ():
        if name not in reported:
            failed[name] = "no result reported" + (" (timed out)" if returncode is None else "")

    return ValidatorResult(
        passed=tuple(sorted(set(passed) - set(failed))),
        failed=failed,
        skipped=tuple(sorted(set(skipped))),
        output=output,
    )


def run_classic(
    base_host_port: str,
    prefix: str,
    identifier: str,
    version: str,
    level: int,
    *,
    skip: Collection[str] = CLASSIC_VALIDATOR_BROKEN,
    timeout: float = DEFAULT_TIMEOUT,
) -> ValidatorResult:
    """Run the classic validator's tests up to level against HOST:PORT/PREFIX/IDENTIFIER.

    Tests in skip that the level would select are left out (via --test for the
    rest) and reported as skipped; by default that is the validator's own
    broken tests, which only level 3 selects.
    """
    _require(CLASSIC_PYTHON, CLASSIC_SCRIPT)
    selected = sorted(name for name, lvl in list_classic_tests(version).items() if lvl <= level)
    skipped = [name for name in selected if name in skip]
    to_run = [name for name in selected if name not in skip]
    if not to_run:
        return ValidatorResult(passed=(), failed={}, skipped=tuple(skipped), output="")
    cmd = classic_command(base_host_port, prefix, identifier, version, level, to_run if skipped else ())
    output, returncode = _run(cmd, timeout)
    return parse_classic_output(output, expected=to_run, skipped=skipped, returncode=returncode)


# ------------------------------------------------------------------------ ng

_NG_LIST_CODE = """\
import json, sys
from iiif_validator.tests.test import IIIFVersion, get_tests
tests = get_tests(IIIFVersion(sys.argv[1]))
print(json.dumps(sorted({t.__module__.rsplit(".", 1)[-1] for t in tests})))
"""

_NG_RESULT = re.compile(r"^(PASS|FAIL) (\w+)(?:: (.*))?$")
_NG_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed\s*$")


def list_ng_tests(v2: bool = False) -> tuple[str, ...]:
    """Names of all ng test modules for the version (whether or not a server gets them)."""
    _require(NG_PYTHON)
    data = _json_from_helper(NG_PYTHON, _NG_LIST_CODE, "2.0" if v2 else "3.0")
    assert isinstance(data, list)
    return tuple(str(name) for name in data)


def ng_command(base_url: str, v2: bool = False, validation_id: str = VALIDATION_ID) -> list[str]:
    cmd = [str(NG_PYTHON), str(NG_WRAPPER)]
    if v2:
        cmd.append("--v2")
    if validation_id != VALIDATION_ID:
        cmd += ["--validation-id", validation_id]
    return [*cmd, base_url.rstrip("/")]


def parse_ng_output(
    output: str,
    all_tests: Iterable[str] = (),
    returncode: int | None = 0,
) -> ValidatorResult:
    """Parse ng_validate.py output; all_tests lists the version's tests, to name the skipped ones."""
    check_passes: dict[str, int] = {}
    check_failures: dict[str, list[str]] = {}
    summary: tuple[int, int] | None = None
    last_failure: list[str] | None = None

    for line in output.splitlines():
        if result := _NG_RESULT.match(line):
            status, name = result.group(1), result.group(2)
            if status == "PASS":
                check_passes[name] = check_passes.get(name, 0) + 1
                last_failure = None
            else:
                last_failure = check_failures.setdefault(name, [])
                last_failure.append(result.group(3) or "")
        elif summary_match := _NG_SUMMARY.match(line):
            summary = (int(summary_match.group(1)), int(summary_match.group(2)))
            last_failure = None
        elif last_failure is not None and line.strip():
            # The wrapper flattens "received" only; other fields may span lines.
            last_failure[-1] += " " + line.strip()

    failed = {name: "\n".join(reasons) for name, reasons in check_failures.items()}
    n_pass = sum(check_passes.values())
    n_fail = sum(len(reasons) for reasons in check_failures.values())
    if returncode is None:
        failed[RUN_ERROR] = "validator timed out"
    elif summary is None:
        tail = " | ".join(output.strip().splitlines()[-3:])
        failed[RUN_ERROR] = f"no 'N passed, N failed' summary (exit code {returncode}); output ends: {tail}"
    elif summary != (n_pass, n_fail) or returncode != (1 if n_fail else 0):
        failed[RUN_ERROR] = (
            f"summary says {summary[0]} passed, {summary[1]} failed with exit code {returncode}, "
            f"but parsed {n_pass} passed, {n_fail} failed checks"
        )

    seen = set(check_passes) | set(check_failures)
    return ValidatorResult(
        passed=tuple(sorted(set(check_passes) - set(check_failures))),
        failed=failed,
        # After a crash or timeout nothing is known about the unreported tests.
        skipped=tuple(sorted(set(all_tests) - seen)) if summary is not None else (),
        output=output,
    )


def run_ng(
    base_url: str,
    *,
    v2: bool = False,
    validation_id: str = VALIDATION_ID,
    timeout: float = DEFAULT_TIMEOUT,
) -> ValidatorResult:
    """Run iiif-validator-ng against base_url (scheme://host:port/prefix, no identifier)."""
    _require(NG_PYTHON, NG_WRAPPER)
    all_tests = list_ng_tests(v2)
    output, returncode = _run(ng_command(base_url, v2, validation_id), timeout)
    return parse_ng_output(output, all_tests=all_tests, returncode=returncode)
