"""Run PyPI ``iiif-validator-ng`` against an IIIF Image API server and exit non-zero on any failure.

The package's own command (``iiif-validator``) draws a progress bar and always exits 0, so the
test harness (``tests/e2e/validators.py``) runs this script instead, with the validator venv's
Python (``.venv-validators/ng``, built by ``scripts/install-validators.sh``; ng needs Python >= 3.12
and libvips)::

    .venv-validators/ng/bin/python tests/e2e/ng_validate.py [--v2] [--validation-id ID] BASE_URL

BASE_URL is ``scheme://host:port/prefix`` without the identifier. The script reads the server's
info.json for the validation image, runs every test ng finds applicable (by the declared level,
extra formats, qualities and features, and caching headers), and prints, one per line:

- ``version=3.0 level=LEVEL_2 extraQualities=[...] extraFormats=[...] extraFeatures=[...] caching=True``;
- per check (a test may report several, in completion order) ``PASS test_name`` or
  ``FAIL test_name: details | expected: ... | received: ... | url: ...`` (received on one line,
  cut to 300 characters);
- ``N passed, N failed`` (checks).

Exit status: 0 when every check passed, 1 when one failed, 2 when the run could not start (the
info.json could not be read: the reason is printed, and no summary line).

This file owns only that command line and output format, which ``validators.parse_ng_output``
parses. It runs in the validator venv: it imports nothing from this repository, and nothing
from pytest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

VALIDATION_ID = "67352ccc-d1b0-11e1-89ae-279075081939"  # the colour-grid image both validators expect
RECEIVED_MAX = 300  # characters of a failed check's "received" (it may be a whole response body)


def one_line(value: object, limit: int | None = None) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text if limit is None else text[:limit]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="iiif-validator-ng with PASS/FAIL lines and an exit status")
    ap.add_argument("base_url", help="scheme://host:port/prefix, without the identifier")
    ap.add_argument("--v2", action="store_true", help="validate as an Image API 2.x server (default 3.0)")
    ap.add_argument("--validation-id", default=VALIDATION_ID, help="identifier of the validation image")
    ap.add_argument("--max-threads", type=int, default=4, help="tests run in parallel (ng's default: 4)")
    args = ap.parse_args(argv)

    # Imported here: the package exists only in the validator venv (and needs Python >= 3.12).
    from iiif_validator.tests.test import IIIFVersion, TargetServer, ValidationFailure
    from iiif_validator.validate import run_tests

    server = TargetServer(
        args.base_url.rstrip("/"),
        validation_id=args.validation_id,
        version=IIIFVersion.V2 if args.v2 else IIIFVersion.V3,
    )
    try:
        features = server.feature_set()  # ng chooses the tests from this info.json
    except Exception as exc:  # any failure here means no test can run: say why, no summary line
        print(f"cannot read {server.info_url()}: {type(exc).__name__}: {one_line(exc)}")
        return 2
    print(
        f"version={server.version.value} level={features.compliance_level.name} "
        f"extraQualities={features.extra_qualities} extraFormats={features.extra_formats} "
        f"extraFeatures={features.extra_features} caching={features.supports_caching}",
        flush=True,
    )

    passed = failed = 0
    for test, outcome in run_tests(server, max_threads=args.max_threads):
        name = test.__module__.rsplit(".", 1)[-1]  # the test module's name, e.g. region_percent
        for check in outcome if isinstance(outcome, list) else [outcome]:
            if isinstance(check, ValidationFailure):
                failed += 1
                print(
                    f"FAIL {name}: {check.details} | expected: {check.expected} | "
                    f"received: {one_line(check.received, RECEIVED_MAX)} | url: {check.url}",
                    flush=True,
                )
            else:
                passed += 1
                print(f"PASS {name}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
