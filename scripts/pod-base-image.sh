#!/usr/bin/env bash
# Build the offline base images the pod tier needs when no container registry can be reached:
#
#   streamproxy-base:bookworm   Debian bookworm (debootstrap --variant=minbase) + Debian's python3.11,
#                               python3-venv and ca-certificates, imported with `docker import`.
#                               It stands in for python:3.11-slim-bookworm: the Dockerfile only needs
#                               `python3` on PATH and `python3 -m venv`, which both images provide.
#   streamproxy-redis:bookworm  the base + Debian's redis-server, a stand-in for the chart's redis image.
#
# Each image is built only when missing (the engine's image store is the cache), so reruns cost nothing.
# Usage: scripts/pod-base-image.sh [base|redis|all]      (default all)
# Env:   DOCKER (client command), DEBIAN_MIRROR (default: the host's apt mirror),
#        STREAMPROXY_BASE_IMAGE, STREAMPROXY_REDIS_IMAGE (tags), STREAMPROXY_REBUILD_BASE=1 (force).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER="${DOCKER:-docker}"
BASE_TAG="${STREAMPROXY_BASE_IMAGE:-streamproxy-base:bookworm}"
REDIS_TAG="${STREAMPROXY_REDIS_IMAGE:-streamproxy-redis:bookworm}"
SUITE=bookworm

log() { printf 'pod-base-image: %s\n' "$*" >&2; }

have_image() { [[ "${STREAMPROXY_REBUILD_BASE:-0}" != 1 ]] && $DOCKER image inspect "$1" >/dev/null 2>&1; }

# The mirror apt already uses on this host (deb822 .sources or one-line .list), else Debian's CDN.
host_mirror() {
    local uri
    uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -E '/debian/?$' | head -n1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hs -E "^deb[[:space:]]+[^[]*[[:space:]]${SUITE}[[:space:]]" \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | head -n1 || true)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

build_base() {
    if have_image "$BASE_TAG"; then
        log "$BASE_TAG present, skipping debootstrap"
        return
    fi
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
            --no-install-recommends debootstrap >/dev/null
    }
    local mirror rootfs
    mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
    rootfs="$(mktemp -d /var/tmp/streamproxy-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "rm -rf '$rootfs'" RETURN
    log "debootstrap $SUITE from $mirror into $rootfs"
    timeout 900 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2
        rm -f "$rootfs.log"
        return 1
    }
    rm -f "$rootfs.log"
    # Slim it the way Debian's own container images are: no apt lists, caches, docs, man pages or
    # translations, now or in packages installed later (dpkg path-exclude, as debuerreotype does).
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
        "$rootfs"/usr/share/locale/*/
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
SLIM
    printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$rootfs/etc/apt/sources.list"
    log "importing $BASE_TAG"
    tar --numeric-owner -C "$rootfs" -c . | $DOCKER import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        - "$BASE_TAG" >/dev/null
}

build_redis() {
    if have_image "$REDIS_TAG"; then
        log "$REDIS_TAG present, skipping"
        return
    fi
    log "building $REDIS_TAG from $BASE_TAG"
    # --network host: the build reaches the Debian mirror the way the host does (the engine
    # may run without NAT).
    local buildlog
    buildlog="$(mktemp)"
    if ! $DOCKER build --network host --build-arg "BASE_IMAGE=$BASE_TAG" -t "$REDIS_TAG" \
        -f "$here/../tests/pod/redis.Dockerfile" "$here/../tests/pod" >"$buildlog" 2>&1; then
        tail -n 30 "$buildlog" >&2
        rm -f "$buildlog"
        return 1
    fi
    rm -f "$buildlog"
}

case "${1:-all}" in
    base) build_base ;;
    redis) build_redis ;;
    all) build_base; build_redis ;;
    *) echo "usage: $0 [base|redis|all]" >&2; exit 2 ;;
esac
