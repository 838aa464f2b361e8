#!/usr/bin/env bash
# Build every image the kind suite runs and load it into the cluster's nodes, so that no node
# ever pulls one (the nodes have no registry here, and pinned local tags must not be replaced):
#
#   streamproxy:e2e, :dev, :<appVersion>   the sidecar, the echo app and the `helm test` pod
#                                          (e2e for the suite, dev for the README's steps,
#                                          the appVersion for manifests/)
#   the chart's Redis (values.yaml redis.server.image)   present, pulled, or, where nothing can
#                                          be pulled, a stand-in built from Debian's redis-server
#                                          (tests/pod/redis.Dockerfile) under the same name
#
# Loading is `docker save` + `kind load image-archive`: `kind load docker-image` breaks on
# Docker's containerd image store (kind#3795).
#
# Usage: scripts/e2e-images.sh            Env: KIND_CLUSTER (default streamproxy-e2e), DOCKER
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/bin:$PATH"
CLUSTER="${KIND_CLUSTER:-streamproxy-e2e}"
DOCKER="${DOCKER:-docker}"

log() { printf 'e2e-images: %s\n' "$*" >&2; }

app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/streamproxy/Chart.yaml)"
redis_repo="$(awk '/^    image:/{f=1} f&&/repository:/{print $2; exit}' <(sed -n '/^  server:/,/^  [a-z]/p' charts/streamproxy/values.yaml))"
redis_tag="$(awk '/^    image:/{f=1} f&&/tag:/{print $2; exit}' <(sed -n '/^  server:/,/^  [a-z]/p' charts/streamproxy/values.yaml))"
[[ -n "$app_version" && -n "$redis_repo" && -n "$redis_tag" ]] \
    || { log "cannot read appVersion or the Redis image from the chart"; exit 1; }
redis_image="$redis_repo:$redis_tag"

log "building streamproxy:e2e"
scripts/image-build.sh streamproxy:e2e
for tag in dev "$app_version"; do
    $DOCKER tag streamproxy:e2e "streamproxy:$tag"
done

if $DOCKER image inspect "$redis_image" >/dev/null 2>&1; then
    log "$redis_image present"
elif timeout 60 $DOCKER pull -q "$redis_image" >/dev/null 2>&1; then
    log "$redis_image pulled"
else
    log "$redis_image cannot be pulled: a stand-in from Debian's redis-server under that name"
    scripts/pod-base-image.sh redis
    $DOCKER tag streamproxy-redis:bookworm "$redis_image"
fi

archive="$(mktemp --suffix=.tar)"
trap 'rm -f "$archive"' EXIT
images=(streamproxy:e2e streamproxy:dev "streamproxy:$app_version" "$redis_image")
log "loading ${images[*]} into $CLUSTER"
$DOCKER save -o "$archive" "${images[@]}"
kind load image-archive "$archive" --name "$CLUSTER" >&2
