#!/usr/bin/env bash
# One command from a fresh clone: install everything the tests need, then run the whole suite
# (lint, types, unit, pixel, HTTP, end-to-end and the official IIIF validators).
# Extra arguments go to pytest (e.g. -k planner).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
scripts/install-validators.sh
echo "== ruff"
.venv/bin/ruff check iiifserver tests benchmarks
.venv/bin/ruff format --check iiifserver tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
