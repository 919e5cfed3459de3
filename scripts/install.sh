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

# apt_install PACKAGE WHY WITHOUT: install a Debian package (root with apt-get), else say it is
# missing; WHY is what it is for, WITHOUT what happens when it is not there.
apt_install() {
  local package=$1 why=$2 without=$3
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install $package ($why)"
    { apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1; }; } \
      || echo "install: $package could not be installed: $without"
  else
    echo "install: note: $package is missing (apt-get install $package): $without"
  fi
}

# libturbojpeg lets padded edge tiles pass through, cut losslessly; without it they are rendered.
if ! ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so\.0'; then
  apt_install libturbojpeg0 "lossless edge tiles" "edge tiles will be rendered"
fi

# A C compiler and libjpeg's headers build image/_jpeg_blocks.c (setup.py): downloads and other
# crops on the tiles' block grid are then copied from the stored DCT blocks; without them the
# package installs anyway and such crops are decoded and encoded again.
command -v gcc >/dev/null 2>&1 || apt_install gcc "the JPEG block extension" "block-aligned crops will be re-encoded"
[ -f /usr/include/jpeglib.h ] \
  || apt_install libjpeg62-turbo-dev "the JPEG block extension" "block-aligned crops will be re-encoded"
"$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  || apt_install python3-dev "the JPEG block extension" "block-aligned crops will be re-encoded"

# libopenjp2 (OpenJPEG) decodes JPEG 2000 sources and masters (image/jp2.py, through glymur).
if ! ldconfig -p 2>/dev/null | grep -q 'libopenjp2\.so\.7'; then
  apt_install libopenjp2-7 "JPEG 2000 sources" "JPEG 2000 sources will be refused"
fi

if [ -n "$extras" ]; then
  # The vips command-line tool is only what benchmarks/convert_bench.py measures `convert` against.
  command -v vips >/dev/null 2>&1 \
    || apt_install libvips-tools "the convert benchmark's reference" "the convert benchmark will be skipped"
  # nginx: tests/deploy/test_nginx.py runs deploy/nginx/iiifserver.conf in front of a live server.
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] \
    || apt_install nginx "the reverse-proxy tests" "the reverse-proxy tests will be skipped"
  # redis-server: tests/cache/test_shared.py and tests/e2e/test_scale_out.py run the shared tier against it.
  command -v redis-server >/dev/null 2>&1 \
    || apt_install redis-server "the shared cache tier's tests" "the shared cache tests will be skipped"
  # wrk: tests/benchmarks/test_wrk_script.py runs the benchmarks' wrk script against a local server.
  command -v wrk >/dev/null 2>&1 \
    || apt_install wrk "the benchmark harness's load generator" "the wrk script's tests will be skipped"
fi

if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the declared dependencies or the C extension's sources change.
stamp=".venv/.iiifserver-install-$(cat pyproject.toml setup.py iiifserver/image/*.c iiifserver/image/jpeg_blocks/* | sha256sum | cut -c1-16)${extras:+-test}"
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
