#!/usr/bin/env bash
# Create .venv with streamproxy (editable) and its dev tools. Needs only python3 (>= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=25.1"
# [dependency-groups] needs pip >= 25.1 (`--group`).
.venv/bin/python -m pip install -q -e . --group dev
echo "install: .venv ready ($(.venv/bin/streamproxy --version))"
