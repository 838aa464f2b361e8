#!/usr/bin/env bash
# Build the streamproxy image with whatever this machine allows (used by `make image` and the pod
# tier). Needs a running engine (scripts/pod-engine.sh starts one).
#
#   scripts/image-build.sh [TAG]                  (default streamproxy:dev)
#
# - client: one that can use BuildKit (docker buildx, or a pre-23 client with DOCKER_BUILDKIT=1);
#   DOCKER overrides;
# - base: the Dockerfile's default when present or pullable, else the debootstrap base
#   (scripts/pod-base-image.sh); BASE_IMAGE overrides;
# - the host's CA bundle goes to pip as a build secret when it exists (never into a layer);
# - builds use the host network, so they reach the package registries the way the host does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${1:-streamproxy:dev}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
OFFLINE_BASE="${STREAMPROXY_BASE_IMAGE:-streamproxy-base:bookworm}"

log() { printf 'image-build: %s\n' "$*" >&2; }

if [[ -z "${DOCKER:-}" ]]; then
    if docker buildx version >/dev/null 2>&1; then
        DOCKER=docker
    elif [[ -x /usr/bin/docker ]] && /usr/bin/docker --version 2>/dev/null | grep -qE ' (19|20|21|22)\.'; then
        DOCKER=/usr/bin/docker
    else
        DOCKER=docker
    fi
fi
export DOCKER DOCKER_BUILDKIT=1

if [[ -z "${BASE_IMAGE:-}" ]]; then
    BASE_IMAGE="$(sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/Dockerfile" | head -n1)"
    if ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
        && ! timeout 120 $DOCKER pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        log "$BASE_IMAGE cannot be pulled: using the debootstrap base $OFFLINE_BASE"
        "$ROOT/scripts/pod-base-image.sh" base
        BASE_IMAGE="$OFFLINE_BASE"
    fi
fi

args=(build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$TAG")
[[ -s "$CA_BUNDLE" ]] && args+=(--secret "id=ca,src=$CA_BUNDLE")
log "building $TAG on $BASE_IMAGE"
buildlog="$(mktemp)"
trap 'rm -f "$buildlog"' EXIT
if ! timeout 900 $DOCKER "${args[@]}" "$ROOT" >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    log "build failed"
    exit 1
fi
size="$($DOCKER image inspect -f '{{.Size}}' "$TAG")"
log "$TAG: $((size / 1000000)) MB ($size bytes)"
