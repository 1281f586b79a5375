#!/usr/bin/env bash
# Rainbow Bridge developer entry point. Needs only Python 3.11, pip and apt.
#   ./dev.sh build      set up .venv, generate the default sample if landing/ is empty, run the nightly build
#   ./dev.sh test       set up .venv with dev tools, run ruff, mypy and the default test suite
#   ./dev.sh test-slow  the slow suites (real Dagster/Streamlit processes, district-scale checks)
#   ./dev.sh setup      only create/refresh .venv
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

setup() {
  local extras=$1 stamp="$VENV/.installed-$1"
  local want
  want=$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "==> installing pinned dependencies ($extras)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    if [ "$extras" = "dev" ]; then
      "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
    else
      "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e .
    fi
    echo "$want" > "$stamp"
  fi
}

# The browser tests drive Debian's chromium (no browser download); CJK text needs a font.
ensure_browser() {
  if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "wqy"; then
    echo "==> installing chromium and fonts-wqy-microhei (apt)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      chromium fonts-wqy-microhei fontconfig >/dev/null
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup)
    setup dev ;;
  build)
    setup runtime
    "$VENV/bin/rainbow" build "$@" ;;
  test)
    setup dev
    echo "==> ruff";  "$VENV/bin/ruff" check .
    echo "==> mypy";  "$VENV/bin/mypy"
    echo "==> pytest"; "$VENV/bin/python" -m pytest "$@" ;;
  test-slow)
    setup dev
    ensure_browser
    "$VENV/bin/python" -m pytest -m slow "$@" ;;
  *)
    sed -n '2,7p' "$0"; exit 2 ;;
esac
