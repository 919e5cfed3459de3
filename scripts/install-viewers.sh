#!/usr/bin/env bash
# Viewer assets for the pages (OpenSeadragon, Mirador, Universal Viewer) from viewers/package-lock.json,
# served by iiifserver from viewers/node_modules (no CDN). Idempotent; fast when the lockfile is unchanged.
#   scripts/install-viewers.sh          runtime packages only
#   scripts/install-viewers.sh --test   also axe-core (accessibility tests) and Debian's chromium
set -euo pipefail
cd "$(dirname "$0")/.."
test_mode=""
[ "${1:-}" = "--test" ] && test_mode="-test"

if [ -n "$test_mode" ] && [ ! -x /usr/bin/chromium ]; then
  # Browser tests drive Debian's Chromium; Playwright's own browser download is never used.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install chromium (browser tests)"
    { apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } \
      || { echo "install: chromium could not be installed" >&2; exit 1; }
  else
    echo "install: browser tests need /usr/bin/chromium (apt-get install chromium)" >&2
    exit 1
  fi
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install: note: npm is missing: the viewer pages will have no viewer assets (install Node.js and npm)"
  [ -n "$test_mode" ] && exit 1
  exit 0
fi
stamp="viewers/node_modules/.iiifserver-npm-$(sha256sum viewers/package-lock.json | cut -c1-16)${test_mode}"
if [ ! -f "$stamp" ] && [ ! -f "${stamp}-test" ]; then
  echo "install: npm ci in viewers/ (viewer assets${test_mode:+ and axe-core})"
  # --ignore-scripts: only the packages' prebuilt dist files are used, nothing needs building.
  omit=(--omit=dev)
  [ -n "$test_mode" ] && omit=()
  (cd viewers && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error "${omit[@]}")
  touch "$stamp"
fi
