#!/usr/bin/env bash
# Makes .venv-bench ready for bench/compare.py; installs only what is missing, so a
# second run takes seconds. `full`: every peer, matplotlib, wrk, nginx, libev-dev, h2load;
# `smoke`: oxgate, Django, gunicorn, matplotlib, wrk (no compiled peers, no nginx). oxgate's
# wheel for the venv's CPython is built (maturin, $MATURIN) and always reinstalled.
# A peer that fails to build is recorded in .venv-bench/install-status/PACKAGE with
# its first error line, and bench/compare.py reports it as skipped with that reason.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode="${1:-full}"
VENV=.venv-bench
STATUS="$VENV/install-status"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

# --- Debian packages (we are root on the dev machines and CI) ----------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v taskset >/dev/null || need+=(util-linux)
if [ "$mode" = full ]; then
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  [ -f /usr/include/ev.h ] || need+=(libev-dev)
  # bench/http2.py drives h2c with h2load.
  command -v h2load >/dev/null || need+=(nghttp2-client)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

# --- the venv, on the newest CPython pyenv has (3.13 today) ------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  py="$(ls -1d "$root"/versions/3.*/bin/python3 2>/dev/null | grep -E '/3\.[0-9]+\.[0-9]+/' \
    | sort -V | tail -n1 || true)"
  py="${py:-$(command -v python3)}"
  echo "creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install -q)
mkdir -p "$STATUS"

# install PACKAGE SPEC IMPORT: pip-install SPEC unless IMPORT already imports, or a
# failure is recorded for it (remove $STATUS/PACKAGE to try again).
install() {
  local pkg="$1" spec="$2" mod="$3"
  if "$VENV/bin/python" -W ignore -c "import $mod" 2>/dev/null; then return 0; fi
  if [ -f "$STATUS/$pkg" ] && [ "$(cat "$STATUS/$pkg")" != ok ]; then
    echo "$pkg: $(cat "$STATUS/$pkg") (recorded; rm $STATUS/$pkg to retry)"
    return 0
  fi
  echo "pip install $spec"
  if "${pip[@]}" "$spec" >"$STATUS/$pkg.log" 2>&1; then
    echo ok >"$STATUS/$pkg"
  else
    local line
    # The first compiler error says more than pip's summary.
    line="$(grep -m1 -E '\.c:[0-9]+:[0-9]+: error:' "$STATUS/$pkg.log" \
      || grep -m1 -E 'error:|Error' "$STATUS/$pkg.log" || true)"
    line="$(sed 's/^ *//' <<<"$line")"
    echo "does not build on Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'): ${line:-see $STATUS/$pkg.log}" \
      >"$STATUS/$pkg"
    echo "  FAILED: $(cat "$STATUS/$pkg")"
  fi
}

install django 'django>=5,<6' django
install gunicorn gunicorn gunicorn
install matplotlib matplotlib matplotlib
if [ "$mode" = full ]; then
  install granian granian granian
  install pyuwsgi pyuwsgi pyuwsgi
  install waitress waitress waitress
  # bench/static_files.py: whitenoise inside an app, next to --static-map and nginx.
  install whitenoise whitenoise whitenoise
  install bjoern bjoern bjoern
  # fastwsgi imports pkg_resources, which setuptools >= 81 no longer ships.
  install setuptools 'setuptools<81' pkg_resources
  install fastwsgi fastwsgi fastwsgi
  # meinheld pins greenlet < 0.5, which does not build on Python >= 3.12: recorded, skipped.
  install meinheld meinheld meinheld
fi

# The wheel for this venv's CPython, built now (a no-op for cargo when nothing changed).
tag="$("$VENV/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
read -r -a maturin <<<"${MATURIN:-python3 -m maturin}"
"${maturin[@]}" build --release -q -i "$VENV/bin/python" -o dist >&2
wheel="$(ls -1t dist/oxgate-*-"$tag"-"$tag"-*.whl | head -n1)"
"${pip[@]}" --force-reinstall --no-deps "$wheel"
echo "$VENV ready ($mode): $("$VENV/bin/python" --version), oxgate from $wheel"
