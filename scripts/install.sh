#!/usr/bin/env bash
# Install iiifserver into .venv at the repository root (idempotent; fast when nothing changed).
#   scripts/install.sh          runtime only
#   scripts/install.sh --test   runtime + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,bench,docs]"

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON=$candidate
      break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "install: Python >= 3.11 is required" >&2; exit 1; }

# libturbojpeg lets padded edge tiles pass through, cut losslessly; without it they are rendered.
if ! ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so\.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install libturbojpeg0 (lossless edge tiles)"
    { apt-get install -y -q libturbojpeg0 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libturbojpeg0 >/dev/null 2>&1; }; } \
      || echo "install: libturbojpeg0 could not be installed: edge tiles will be rendered"
  else
    echo "install: note: libturbojpeg0 is missing (apt-get install libturbojpeg0); edge tiles will be rendered"
  fi
fi

# libopenjp2 (OpenJPEG) decodes JPEG 2000 sources and masters (image/jp2.py, through glymur).
if ! ldconfig -p 2>/dev/null | grep -q 'libopenjp2\.so\.7'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install libopenjp2-7 (JPEG 2000 sources)"
    { apt-get install -y -q libopenjp2-7 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libopenjp2-7 >/dev/null 2>&1; }; } \
      || echo "install: libopenjp2-7 could not be installed: JPEG 2000 sources will be refused"
  else
    echo "install: note: libopenjp2-7 is missing (apt-get install libopenjp2-7); JPEG 2000 sources will be refused"
  fi
fi

# The vips command-line tool is only what benchmarks/convert_bench.py measures `convert` against.
if [ -n "$extras" ] && ! command -v vips >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install libvips-tools (the convert benchmark's reference)"
    { apt-get install -y -q --no-install-recommends libvips-tools >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends libvips-tools >/dev/null 2>&1; }; } \
      || echo "install: libvips-tools could not be installed: the convert benchmark will be skipped"
  else
    echo "install: note: the vips command-line tool is missing (apt-get install libvips-tools); the convert benchmark needs it"
  fi
fi

# nginx: tests/deploy/test_nginx.py runs deploy/nginx/iiifserver.conf in front of a live server.
if [ -n "$extras" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install nginx (the reverse-proxy tests)"
    { apt-get install -y -q --no-install-recommends nginx >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends nginx >/dev/null 2>&1; }; } \
      || echo "install: nginx could not be installed: the reverse-proxy tests will be skipped"
  else
    echo "install: note: nginx is missing (apt-get install nginx); the reverse-proxy tests need it"
  fi
fi

# redis-server: tests/cache/test_shared.py and tests/e2e/test_scale_out.py run the shared cache tier against it.
if [ -n "$extras" ] && ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install redis-server (the shared cache tier's tests)"
    { apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; }; } \
      || echo "install: redis-server could not be installed: the shared cache tests will be skipped"
  else
    echo "install: note: redis-server is missing (apt-get install redis-server); the shared cache tests need it"
  fi
fi

# wrk: tests/benchmarks/test_wrk_script.py runs the benchmarks' wrk script against a local server.
if [ -n "$extras" ] && ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install wrk (the benchmark harness's load generator)"
    { apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1; }; } \
      || echo "install: wrk could not be installed: the wrk script's tests will be skipped"
  else
    echo "install: note: wrk is missing (apt-get install wrk); the wrk script's tests need it"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the declared dependencies change.
stamp=".venv/.iiifserver-install-$(sha256sum pyproject.toml | cut -c1-16)${extras:+-test}"
if [ ! -f "$stamp" ]; then
  echo "install: installing iiifserver${extras} into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
  rm -f .venv/.iiifserver-install-*
  touch "$stamp"
  # A test install also satisfies a plain one.
  [ -n "$extras" ] && touch "${stamp%-test}"
fi
# Viewer assets (npm ci in viewers/); with --test also axe-core and Debian's chromium.
scripts/install-viewers.sh ${extras:+--test}
echo "install: .venv ready ($(.venv/bin/python -c 'import pyvips; print("libvips %d.%d.%d" % tuple(pyvips.version(i) for i in range(3)))'))"
