#!/usr/bin/env bash
# Create .venv with streamproxy (editable) and its dev tools, from the lock files. Needs only
# python3 (>= 3.11) with its venv module and pip.
#   requirements/dev.txt    runtime + dev dependencies, every artifact's sha256 checked
#   requirements/build.txt  the build backend, so the package itself installs with no download
# The lock files come from scripts/lock.sh (uv); installing needs no uv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --require-hashes -r requirements/dev.txt -r requirements/build.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
.venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check >&2; exit 1; }
echo "install: .venv ready ($(.venv/bin/streamproxy --version))"
