#!/usr/bin/env bash
# Install the two official IIIF Image API validators into isolated venvs:
#   .venv-validators/classic  Python 3.11, iiif-validator (iiif-validate.py)
#   .venv-validators/ng       Python 3.12, iiif-validator-ng + pyvips-binary
# Versions come from scripts/validators-requirements-{classic,ng}.txt (exact
# pins). Idempotent: a venv whose stamp matches its requirements file and
# interpreter, and that still imports, is left alone (well under a second).
#
# Usage: scripts/install-validators.sh [--refreeze]
#   --refreeze  rebuild both venvs from the top-level packages only and rewrite
#               the requirements files with `pip freeze` (to move the pins).
# Env: VALIDATORS_PYTHON_CLASSIC / VALIDATORS_PYTHON_NG override the interpreters.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_ROOT=.venv-validators
REFREEZE=0
case "${1:-}" in
  "") ;;
  --refreeze) REFREEZE=1 ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--refreeze]" >&2; exit 2 ;;
esac

say() { echo "[install-validators] $*"; }
die() { echo "[install-validators] ERROR: $*" >&2; exit 1; }

# Print the first interpreter for Python X.Y that can build a venv. pyenv's
# python3.12 shim refuses to run unless 3.12 is the selected version, so the
# pyenv install tree is searched directly, and first: the choice then does not
# depend on PATH, which would otherwise rebuild the venvs when PATH differs.
find_python() {
  local want=$1 override=$2 cand
  local -a cands=()
  [[ -n "$override" ]] && cands+=("$override")
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}/versions/$want".*/bin/"python$want"; do
    [[ -x "$cand" ]] && cands+=("$cand")
  done
  cands+=("python$want" "/usr/local/bin/python$want" "/usr/bin/python$want")
  for cand in "${cands[@]}"; do
    if "$cand" -c "import sys, venv, ensurepip; assert '%d.%d' % sys.version_info[:2] == '$want'" \
        >/dev/null 2>&1; then
      "$cand" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}

# The classic validator's tests package imports python-magic, which needs
# libmagic at import time; without it every classic test would error out.
ensure_libmagic() {
  # ldconfig lives in /sbin, which a minimal PATH lacks. No grep -q: it exits
  # early, ldconfig gets SIGPIPE, and pipefail trips.
  local ldconfig
  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  if "$ldconfig" -p 2>/dev/null | grep 'libmagic\.so\.1 ' >/dev/null; then
    say "system: libmagic1 present"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    die "libmagic1 is missing; install it (Debian: apt-get install libmagic1)"
  fi
  say "system: installing libmagic1 with apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmagic1; } \
    >"$VENV_ROOT/apt-libmagic.log" 2>&1 || die "apt-get failed, see $VENV_ROOT/apt-libmagic.log"
}

# setup_venv NAME PYTHON REQFILE SMOKE_PYTHON_CODE TOP_LEVEL_SPECS...
setup_venv() {
  local name=$1 python=$2 req=$3 smoke=$4
  shift 4
  local venv="$VENV_ROOT/$name" log="$VENV_ROOT/$name-install.log"
  # The stamp ties the venv to the exact pins and interpreter it was built from.
  local stamp pyver
  pyver=$("$python" -c 'import sys; print(sys.version.split()[0])')
  stamp="$(sha256sum "$req" | cut -d' ' -f1) $pyver $python"

  if [[ $REFREEZE -eq 0 && -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$stamp" ]] \
      && "$venv/bin/python" -c "$smoke" >/dev/null 2>&1; then
    say "$name: up to date ($venv)"
    return 0
  fi

  say "$name: creating venv with $python"
  rm -rf "$venv"
  "$python" -m venv "$venv" >"$log" 2>&1 || die "$name: venv creation failed, see $log"

  # Pip's output goes to the log: the machine's pip config adds local index
  # paths that may not exist and would otherwise flood stdout with warnings.
  local -a pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
  if [[ $REFREEZE -eq 1 ]]; then
    say "$name: installing latest matching $* (refreeze)"
    "${pip[@]}" install "$@" >>"$log" 2>&1 || die "$name: pip install failed, see $log"
  else
    # --no-deps + pip check: everything installed must be pinned in $req, and
    # the pins must be mutually consistent.
    say "$name: installing pinned packages from $req"
    "${pip[@]}" install --no-deps -r "$req" >>"$log" 2>&1 || die "$name: pip install failed, see $log"
  fi
  "${pip[@]}" check >>"$log" 2>&1 || die "$name: pip check failed, see $log"

  say "$name: smoke test"
  "$venv/bin/python" -c "$smoke" >>"$log" 2>&1 || die "$name: smoke test failed, see $log"

  if [[ $REFREEZE -eq 1 ]]; then
    say "$name: writing pins to $req"
    local header
    header=$(grep '^#' "$req" || true)
    { [[ -n "$header" ]] && printf '%s\n' "$header"; "${pip[@]}" freeze; } >"$req.new"
    mv "$req.new" "$req"
    stamp="$(sha256sum "$req" | cut -d' ' -f1) ${stamp#* }"
  fi
  echo "$stamp" >"$venv/.stamp"
  say "$name: installed ($venv)"
}

mkdir -p "$VENV_ROOT"
# Serialise concurrent runs (e.g. parallel test sessions) on the same tree.
exec 9>"$VENV_ROOT/.lock"
flock 9

ensure_libmagic

PY_CLASSIC=$(find_python 3.11 "${VALIDATORS_PYTHON_CLASSIC:-}") || die "no usable Python 3.11 found"
PY_NG=$(find_python 3.12 "${VALIDATORS_PYTHON_NG:-}") || die "no usable Python 3.12 found"

setup_venv classic "$PY_CLASSIC" scripts/validators-requirements-classic.txt \
  'import iiif_validator.validator' \
  iiif-validator==1.0.5
setup_venv ng "$PY_NG" scripts/validators-requirements-ng.txt \
  'import pyvips, iiif_validator.validate; pyvips.Image.black(1, 1).avg()' \
  iiif-validator-ng==0.1.0 pyvips-binary

say "done: $VENV_ROOT/classic/bin/iiif-validate.py, $VENV_ROOT/ng/bin/python"
