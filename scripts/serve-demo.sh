#!/usr/bin/env bash
# One command from a fresh clone: install everything, prepare the demo collection, serve it.
# Extra arguments go to `iiifserver serve` (e.g. --port 8080 --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/iiifserver serve "$@"
