#!/usr/bin/env bash
# The kind end-to-end tier (make e2e): a real cluster, the chart, the manifests and the injector.
#
#  1. helm, kubectl (scripts/install-tools.sh) and kind (scripts/kind-node-image.sh builds it from
#     its pinned Go module when none is on PATH);
#  2. a Docker engine: the running one, else dockerd started here and stopped at the end
#     (scripts/pod-engine.sh);
#  3. the cluster (scripts/e2e-cluster.sh): the kindest/node image pinned in kind-config.yaml
#     where it can be pulled, else a node image built here from the Kubernetes sources
#     (scripts/kind-node-image.sh, cached by version), or E2E_NODE_IMAGE;
#  4. the images the suite runs, built and loaded (scripts/e2e-images.sh);
#  5. pytest -m e2e tests/e2e.
#
# On failure it prints the cluster's events, `describe` output and container logs. It deletes the
# cluster at the end whatever happened (E2E_KEEP_CLUSTER=1 keeps it for fast reruns).
# Without a container engine it skips with the reason, unless STREAMPROXY_REQUIRE_E2E=1 (CI),
# which makes any skip a failure. Extra arguments go to pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$SECONDS
REQUIRE="${STREAMPROXY_REQUIRE_E2E:-0}"
KEEP="${E2E_KEEP_CLUSTER:-0}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
STATE="${E2E_STATE_DIR:-$ROOT/.tools/e2e-state}"
export PATH="$ROOT/.tools/bin:$PATH"

log() { printf 'e2e [%4ds]: %s\n' "$((SECONDS - START))" "$*" >&2; }

scripts/install-tools.sh >&2
engine_started=0
cleanup() {
    local rc=$?
    if [[ $rc != 0 && -n "${KUBECONFIG:-}" && -s "${KUBECONFIG:-}" ]]; then
        log "failed (exit $rc): cluster diagnostics follow"
        local kc="$KUBECONFIG"
        for args in "get nodes -o wide" "get pods -A -o wide" "get events -A --sort-by=.lastTimestamp" \
            "describe nodes" "describe pods -n kube-system"; do
            echo "===== kubectl $args"
            # shellcheck disable=SC2086  # word splitting of the argument list is intended
            KUBECONFIG="$kc" timeout 60 kubectl $args 2>&1 | tail -n 300 || true
        done
        KUBECONFIG="$kc" timeout 120 kubectl logs -n kube-system --all-containers --prefix --tail=50 \
            -l 'tier=control-plane' 2>&1 | tail -n 200 || true
    fi
    if [[ "$KEEP" == 0 ]]; then
        log "deleting the cluster"
        scripts/e2e-cluster.sh delete >&2 || true
    fi
    if [[ $engine_started == 1 ]]; then
        scripts/pod-engine.sh stop "$STATE" || true
    fi
    log "done (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

set +e
engine_env="$(scripts/pod-engine.sh start "$STATE")"
rc=$?
set -e
if [[ $rc == 3 ]]; then
    if [[ "$REQUIRE" == 1 ]]; then
        log "no container engine can run here, and STREAMPROXY_REQUIRE_E2E=1: failing"
        exit 1
    fi
    log "no container engine can run here: the kind suite skips"
    exec "$PYTHON" -m pytest -m e2e tests/e2e -q -rs "$@"
fi
[[ $rc == 0 ]] || exit "$rc"
eval "$engine_env"
[[ -f "$STATE/started.pid" ]] && engine_started=1

log "cluster"
scripts/e2e-cluster.sh create >/dev/null
# KUBECONFIG, and kind (with the docker shim where the engine needs it) first on PATH.
eval "$(scripts/e2e-cluster.sh env)"
log "images"
scripts/e2e-images.sh
log "suite"
# The cluster outlives pytest's session fixture: this script deletes it (or keeps it).
E2E_KEEP_CLUSTER=1 E2E_IMAGES_LOADED=1 "$PYTHON" -m pytest -m e2e tests/e2e -v -rsP "$@"
