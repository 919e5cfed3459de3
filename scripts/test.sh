#!/usr/bin/env bash
# One command from a fresh clone: install everything the tests need, then run the whole suite
# (lint, types, import boundaries, docs, unit, pixel, HTTP, end-to-end and the official IIIF
# validators). This is what CI runs (.ci/run).
#
#   scripts/test.sh            the whole suite
#   scripts/test.sh --fast     the everyday tier: no browser, no validators, no live servers, no
#                              large images (well under 2 minutes on 2 cores)
# Other arguments go to pytest (e.g. -k planner).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
scripts/install.sh --test
[ "$fast" = 1 ] || scripts/install-validators.sh
echo "== ruff"
.venv/bin/ruff check iiifserver tests benchmarks docs/gen
.venv/bin/ruff format --check iiifserver tests benchmarks docs/gen
echo "== mypy"
.venv/bin/mypy
echo "== import boundaries"
.venv/bin/lint-imports --no-cache
echo "== pytest"
if [ "$fast" = 1 ]; then
  exec .venv/bin/python -m pytest -m "not slow and not e2e" --ignore=tests/e2e "$@"
fi
exec .venv/bin/python -m pytest "$@"
