#!/usr/bin/env bash
# Build (or reuse) a kind node image without any container registry: every binary comes from a
# published Go module or from Debian, every image kubeadm needs is built here and baked into the
# node's containerd. Prints the image tag on stdout at the end; everything else goes to stderr.
#
#   scripts/kind-node-image.sh            build or reuse; print the tag
#   scripts/kind-node-image.sh tag        print the tag this script would produce (no build)
#   scripts/kind-node-image.sh cache-dir  print the cache directory for the pinned versions
#   scripts/kind-node-image.sh kind       only build/install the kind CLI into .tools/bin/kind
#
# Reuse, fastest first: the tag is in docker → nothing to do; the cache holds image.tar →
# `docker load`; otherwise a full build, whose Go module and build caches stay in the cache
# directory (keyed by the versions below), so a rebuild after a recipe change recompiles little.
#
# What is in the image (kind's images/base/Dockerfile, repeated with Debian's packages):
#   Debian bookworm (systemd 252, still runs on cgroup v1), containerd 1.6, runc, CNI plugins,
#   kind's entrypoint/units/containerd config from the kind module; kubeadm, kubelet, kubectl and
#   crictl built from source; in containerd's k8s.io namespace: kube-apiserver,
#   kube-controller-manager, kube-scheduler, kube-proxy, etcd, CoreDNS and pause images tagged
#   exactly as `kubeadm config images list` names them. No kindnetd: a ptp + host-local + portmap
#   CNI conflist for one node is baked in (use the cluster with networking.disableDefaultCNI).
#
# Env: STREAMPROXY_CACHE_DIR (default ~/.cache/streamproxy), DOCKER (client, default docker),
#      DEBIAN_MIRROR (default: the host's apt mirror), KIND_NODE_REBUILD=1 (ignore docker's copy
#      and image.tar; Go caches are still used), TOOLS_BIN (default .tools/bin).
set -euo pipefail

# --- pinned versions (the cache key) ---------------------------------------------------------
KIND_VERSION=v0.30.0          # sigs.k8s.io/kind: base files + CLI (its base is bookworm)
K8S_VERSION=v1.35.4           # k8s.io/kubernetes; staging modules at v0.35.4
ETCD_VERSION=v3.6.13          # go.etcd.io/etcd/server/v3 (kubeadm 1.35 lists etcd 3.6.6-0)
COREDNS_VERSION=v1.13.1       # github.com/coredns/coredns, the version kubeadm 1.35 lists
CRI_TOOLS_VERSION=v1.34.0     # sigs.k8s.io/cri-tools (crictl); v1.35.0 is not served
DEBIAN_SUITE=bookworm         # containerd 1.6, runc 1.1, containernetworking-plugins 1.1
K8S_BUILD_DATE=2026-01-01T00:00:00Z   # fixed, so rebuilds are reproducible

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
support="$here/kind-node"
# A client that builds with BuildKit: docker with buildx, or Debian's 20.10 client (BuildKit built
# in), as scripts/pod-engine.sh picks; else the legacy builder (the Dockerfiles need nothing more).
if [[ -z "${DOCKER:-}" ]]; then
    if docker buildx version >/dev/null 2>&1; then DOCKER=docker
    elif [[ -x /usr/bin/docker ]] && /usr/bin/docker --version 2>/dev/null | grep -qE ' (19|20|21|22)\.'; then DOCKER=/usr/bin/docker
    else DOCKER=docker; export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"; fi
fi
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-1}"
TOOLS_BIN="${TOOLS_BIN:-$root/.tools/bin}"

# The cache directory is keyed by the versions; the image tag also by the recipe (this script and
# the files of scripts/kind-node/ that go into images; not its *.sh helpers), so a changed recipe rebuilds the image while the Go caches stay.
KEY="k8s-${K8S_VERSION}_kind-${KIND_VERSION}_etcd-${ETCD_VERSION}_coredns-${COREDNS_VERSION}_crictl-${CRI_TOOLS_VERSION}_${DEBIAN_SUITE}"
CACHE="${STREAMPROXY_CACHE_DIR:-$HOME/.cache/streamproxy}/kind-node/$KEY"
RECIPE_HASH="$( { echo "$KEY"; cat "${BASH_SOURCE[0]}"; find "$support" -type f ! -name '*.sh' ! -name '*.md' | LC_ALL=C sort | xargs cat; } \
    | sha256sum | cut -c1-10)"
TAG="streamproxy-kind-node:${K8S_VERSION}-${RECIPE_HASH}"
IMAGE_TAR="$CACHE/image-${RECIPE_HASH}.tar"
MINBASE_TAG="streamproxy-kind-minbase:${DEBIAN_SUITE}"
K8S_CMDS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

log() { printf 'kind-node-image: [%s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s; }

# --- prerequisites -----------------------------------------------------------------------------
apt_install() {
    [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || die "missing: $* (install them, or run as root on Debian)"
    log "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q -o DPkg::Lock::Timeout=300 --no-install-recommends)
    apt-get install "${opts[@]}" "$@" >&2 || { apt-get update -q >&2 && apt-get install "${opts[@]}" "$@" >&2; }
}

need_build_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v gcc >/dev/null || missing+=(gcc)
    [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
    command -v jq >/dev/null || missing+=(jq)
    ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
    command -v go >/dev/null || die "go is required (Go >= 1.25)"
}

# The mirror apt already uses on this host (same rule as scripts/pod-base-image.sh).
host_mirror() {
    local uri
    uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -E '/debian/?$' | head -n1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hs -E "^deb[[:space:]]+[^[]*[[:space:]]${DEBIAN_SUITE}[[:space:]]" \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | head -n1 || true)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

go_env() {
    export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache"
    export GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
    export GOOS=linux GOARCH="${GOARCH:-$(go env GOARCH)}" CGO_ENABLED=0
    export GONOSUMDB="" GOPRIVATE=""
}

# Source dir of a module version in the module cache (downloads it).
mod_dir() { go mod download -json "$1@$2" | jq -r .Dir; }

# --- the kind CLI ------------------------------------------------------------------------------
build_kind_cli() {
    local out="$CACHE/bin/kind"
    if [[ ! -x "$out" ]]; then
        log "building kind $KIND_VERSION"
        mkdir -p "$CACHE/bin"
        (cd "$CACHE" && GOBIN="$CACHE/bin" nice -n 10 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION")
    fi
    mkdir -p "$TOOLS_BIN"
    if ! cmp -s "$out" "$TOOLS_BIN/kind"; then
        install -m 0755 "$out" "$TOOLS_BIN/kind.tmp" && mv -f "$TOOLS_BIN/kind.tmp" "$TOOLS_BIN/kind"
        log "installed $("$TOOLS_BIN/kind" version) into $TOOLS_BIN/kind"
    fi
}

# --- Kubernetes --------------------------------------------------------------------------------
# A module that requires k8s.io/kubernetes and replaces every staging module (required at v0.0.0
# with `=> ./staging/...`, which only applies inside kubernetes' own repository) by its release.
k8s_module() {
    local src="$CACHE/src/k8s" minor mod
    [[ -f "$src/go.sum" ]] && return 0
    mkdir -p "$src"
    minor="v0.${K8S_VERSION#v1.}"
    mod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)"
    {
        echo "module streamproxy.local/kind-node/k8s"
        echo
        grep -E '^go ' "$mod"
        grep -E '^godebug ' "$mod" || true
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        sed -n "s#^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => ./staging/.*#\t\1 => \1 ${minor}#p" "$mod"
        echo ")"
    } >"$src/go.mod"
    log "k8s module: $(grep -c ' => ' "$src/go.mod") staging modules replaced by ${minor}"
    (cd "$src" && go get $(printf "k8s.io/kubernetes/cmd/%s@$K8S_VERSION " "${K8S_CMDS[@]}") 2>/dev/null)
}

build_k8s() {
    local out="$CACHE/bin/k8s" ok=1 c
    for c in "${K8S_CMDS[@]}"; do [[ -x "$out/$c" ]] || ok=0; done
    [[ $ok == 1 && -f "$out/.done" ]] && return 0
    k8s_module
    local v="$K8S_VERSION" major minor ld="" p
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    # hack/lib/version.sh sets these in both packages; kubeadm refuses a binary without gitVersion.
    for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$K8S_BUILD_DATE"
    done
    log "building Kubernetes $v: ${K8S_CMDS[*]} (one go build; tens of minutes cold on 2 cores)"
    local t0; t0=$(now)
    mkdir -p "$out"
    # hack/lib/golang.sh: -trimpath, static, tags selinux,notest,grpcnotrace, -s -w.
    (cd "$CACHE/src/k8s" && nice -n 10 go build -trimpath -tags selinux,notest,grpcnotrace \
        -ldflags "-s -w$ld" -o "$out/" $(printf 'k8s.io/kubernetes/cmd/%s ' "${K8S_CMDS[@]}"))
    "$out/kubeadm" version -o short | grep -qx "$v" || die "kubeadm does not report $v"
    touch "$out/.done"
    log "Kubernetes built in $(($(now) - t0))s"
}

# --- etcd, CoreDNS, crictl, pause --------------------------------------------------------------
build_etcd() {
    local out="$CACHE/bin/etcd" src="$CACHE/src/etcd" m
    [[ -x "$out" ]] && return 0
    # server/v3's go.mod replaces its sibling modules by ../ paths: require them at the same tag.
    mkdir -p "$src"
    if [[ ! -f "$src/go.sum" ]]; then
        printf 'module streamproxy.local/kind-node/etcd\n\ngo 1.25.0\n' >"$src/go.mod"
        (cd "$src" && go get $(for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
            printf 'go.etcd.io/etcd/%s@%s ' "$m" "$ETCD_VERSION"; done) 2>/dev/null)
    fi
    log "building etcd $ETCD_VERSION"
    (cd "$src" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out" go.etcd.io/etcd/server/v3)
}

build_coredns() {
    local out="$CACHE/bin/coredns"
    [[ -x "$out" ]] && return 0
    log "building CoreDNS $COREDNS_VERSION"
    (cd "$CACHE" && GOBIN="$CACHE/bin" nice -n 10 go install -trimpath -ldflags "-s -w" \
        "github.com/coredns/coredns@$COREDNS_VERSION")
}

build_crictl() {
    local out="$CACHE/bin/crictl"
    [[ -x "$out" ]] && return 0
    log "building crictl $CRI_TOOLS_VERSION"
    (cd "$CACHE" && GOBIN="$CACHE/bin" nice -n 10 go install -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION")
}

build_pause() {
    local out="$CACHE/bin/pause" dir tag
    [[ -x "$out" ]] && return 0
    dir="$(mod_dir k8s.io/kubernetes "$K8S_VERSION")"
    tag="$(pause_image | sed 's/.*://')"
    log "building pause $tag (gcc -static)"
    gcc -Os -Wall -Werror -static -DVERSION="v${tag}-streamproxy" -o "$out" "$dir/build/pause/linux/pause.c"
    strip "$out"
}

# --- images ------------------------------------------------------------------------------------
images_list() { "$CACHE/bin/k8s/kubeadm" config images list --kubernetes-version "$K8S_VERSION"; }
pause_image() { images_list | grep '/pause:'; }
# containerd's sandbox_image in kind's config.toml (kind tags the pause image it ships with it too).
kind_sandbox_image() {
    sed -n 's/^[[:space:]]*sandbox_image[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' \
        "$(mod_dir sigs.k8s.io/kind "$KIND_VERSION")/images/base/files/etc/containerd/config.toml"
}

build_minbase() {
    if $DOCKER image inspect "$MINBASE_TAG" >/dev/null 2>&1; then return 0; fi
    local mirror rootfs
    mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
    rootfs="$(mktemp -d /var/tmp/streamproxy-kind-rootfs.XXXXXX)"
    log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror"
    if ! timeout 900 debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$CACHE/logs/debootstrap.log" 2>&1; then
        tail -n 30 "$CACHE/logs/debootstrap.log" >&2
        rm -rf "$rootfs"
        die "debootstrap failed"
    fi
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
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/00-no-recommends"
    printf 'deb %s %s main\n' "$mirror" "$DEBIAN_SUITE" >"$rootfs/etc/apt/sources.list"
    tar --numeric-owner -C "$rootfs" -c . | $DOCKER import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$MINBASE_TAG" >/dev/null
    rm -rf "$rootfs"
}

# A docker build whose output is kept in a log (shown on failure). --network host: apt reaches the
# mirror the way the host does (the engine may run without NAT).
docker_build() {
    local name="$1"; shift
    if ! $DOCKER build --network host "$@" >"$CACHE/logs/build-$name.log" 2>&1; then
        tail -n 40 "$CACHE/logs/build-$name.log" >&2
        die "docker build $name failed (log: $CACHE/logs/build-$name.log)"
    fi
}

# Context for the control-plane images: the binaries and a minimal rootfs (passwd, nsswitch, /tmp).
images_context() {
    local ctx="$CACHE/ctx-images"
    rm -rf "$ctx"
    mkdir -p "$ctx/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/support"
    chmod 1777 "$ctx/rootfs/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$ctx/rootfs/etc/group"
    printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
    cp "$CACHE/bin/k8s/"kube-{apiserver,controller-manager,scheduler,proxy} "$CACHE/bin/etcd" \
        "$CACHE/bin/coredns" "$CACHE/bin/pause" "$ctx/bin/"
    cp "$support/iptables-wrapper" "$ctx/support/"
    echo "$ctx"
}

# A static binary on PATH in an otherwise empty image (kubeadm runs `command: [name, ...]`).
build_static_image() {
    local ref="$1" bin="$2" entry="$3" ctx="$4"
    docker_build "${bin}" -t "$ref" -f - "$ctx" <<EOF
FROM scratch
COPY rootfs/ /
COPY bin/$bin $entry
ENV PATH=/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["$entry"]
EOF
}

build_images() {
    local ctx ref name tars=()
    ctx="$(images_context)"
    mapfile -t refs < <(images_list)
    log "control-plane images: ${refs[*]}"
    for ref in "${refs[@]}"; do
        name="${ref##*/}"; name="${name%%:*}"
        case "$name" in
            kube-apiserver|kube-controller-manager|kube-scheduler|etcd)
                build_static_image "$ref" "$name" "/usr/local/bin/$name" "$ctx" ;;
            coredns) build_static_image "$ref" coredns /coredns "$ctx" ;;
            pause) build_static_image "$ref" pause /pause "$ctx" ;;
            kube-proxy)
                docker_build kube-proxy -t "$ref" --build-arg "BASE_IMAGE=$MINBASE_TAG" \
                    -f "$support/kube-proxy.Dockerfile" "$ctx" ;;
            *) die "no recipe for image $ref" ;;
        esac
    done
    local sandbox; sandbox="$(kind_sandbox_image)"
    if [[ -n "$sandbox" ]] && ! printf '%s\n' "${refs[@]}" | grep -qx "$sandbox"; then
        $DOCKER tag "$(pause_image)" "$sandbox"
        refs+=("$sandbox")
    fi
    log "saving the control-plane images"
    $DOCKER save -o "$CACHE/images.tar.tmp" "${refs[@]}"
    mv -f "$CACHE/images.tar.tmp" "$CACHE/images.tar"
    printf '%s\n' "${refs[@]}" >"$CACHE/images.list"
}

node_context() {
    local ctx="$CACHE/ctx-node" kindsrc
    rm -rf "$ctx"
    mkdir -p "$ctx/bin" "$ctx/support"
    kindsrc="$(mod_dir sigs.k8s.io/kind "$KIND_VERSION")"
    # The module cache drops file modes: set them as kind's COPY --chmod does (0644, scripts 0755).
    cp -r "$kindsrc/images/base/files" "$ctx/files"
    find "$ctx/files" -type d -exec chmod 0755 {} +
    find "$ctx/files" -type f -exec chmod 0644 {} +
    chmod 0755 "$ctx/files/usr/local/bin/"* "$ctx/files/kind/bin/"*
    cp "$CACHE/bin/k8s/"{kubeadm,kubelet,kubectl} "$CACHE/bin/crictl" "$ctx/bin/"
    cp -r "$support/cni" "$support/sysctl" "$support/storage" "$support/node-entrypoint" "$ctx/support/"
    echo "$ctx"
}

build_node() {
    local ctx base="$TAG-base" cid
    ctx="$(node_context)"
    log "building the node base ($base)"
    docker_build node -t "$base" --build-arg "BASE_IMAGE=$MINBASE_TAG" \
        --build-arg "KUBE_VERSION=$K8S_VERSION" --build-arg "SANDBOX_IMAGE=$(pause_image)" \
        -f "$support/node.Dockerfile" "$ctx"
    # As kind's node-image build does: run containerd in the stopped image, import the images into
    # the k8s.io namespace (pinned, so the kubelet never garbage-collects them), commit.
    log "importing the control-plane images into the node's containerd"
    cid="$($DOCKER run -d --security-opt seccomp=unconfined --entrypoint sleep "$base" infinity)"
    # shellcheck disable=SC2064
    trap "$DOCKER rm -f -v $cid >/dev/null 2>&1 || true" EXIT
    $DOCKER exec "$cid" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
    $DOCKER exec "$cid" bash -c 'for i in $(seq 1 30); do ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1' \
        || die "containerd did not start in the build container"
    $DOCKER exec -i "$cid" ctr --namespace=k8s.io images import --all-platforms --no-unpack - \
        <"$CACHE/images.tar" >&2
    local ref
    while read -r ref; do
        $DOCKER exec "$cid" ctr --namespace=k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
    done <"$CACHE/images.list"
    $DOCKER exec "$cid" ctr --namespace=k8s.io images ls -q | grep -v '^sha256:' >&2
    # (sleep is PID 1 here and reaps nothing: wait until containerd is gone or a zombie)
    $DOCKER exec "$cid" bash -c 'pkill containerd; for i in $(seq 1 30); do
        ps -o stat= -C containerd | grep -qv "^Z" || exit 0; sleep 1; done; exit 1' \
        || die "containerd did not stop in the build container"
    $DOCKER exec "$cid" rm -f /var/log/containerd-build.log
    $DOCKER commit \
        --change 'ENTRYPOINT [ "/usr/local/bin/streamproxy-node-entrypoint", "/sbin/init" ]' \
        --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
        "$cid" "$TAG" >/dev/null
    $DOCKER rm -f -v "$cid" >/dev/null
    trap - EXIT
    $DOCKER rmi "$base" >/dev/null 2>&1 || true
    # Older builds of this image (another recipe or version): drop them unless a node still uses one.
    local old
    for old in $($DOCKER images --format '{{.Repository}}:{{.Tag}}' "${TAG%%:*}"); do
        [[ "$old" == "$TAG" ]] || $DOCKER rmi "$old" >/dev/null 2>&1 || true
    done
    log "saving $TAG to the cache"
    rm -f "$CACHE"/image-*.tar
    $DOCKER save -o "$IMAGE_TAR.tmp" "$TAG"
    mv -f "$IMAGE_TAR.tmp" "$IMAGE_TAR"
    # Build contexts and the control-plane tar are inside the image now (and rebuilt in seconds).
    rm -rf "$CACHE/ctx-node" "$CACHE/ctx-images" "$CACHE/images.tar"
}

main() {
    mkdir -p "$CACHE/logs" "$CACHE/bin"
    local t0; t0=$(now)
    if [[ "${KIND_NODE_REBUILD:-0}" != 1 ]]; then
        if $DOCKER image inspect "$TAG" >/dev/null 2>&1; then
            log "$TAG present in docker"
            [[ -x "$TOOLS_BIN/kind" ]] || { go_env; build_kind_cli; }
            echo "$TAG"; return 0
        fi
        if [[ -s "$IMAGE_TAR" ]]; then
            log "loading $TAG from $IMAGE_TAR"
            $DOCKER load -i "$IMAGE_TAR" >&2
            [[ -x "$TOOLS_BIN/kind" ]] || { go_env; build_kind_cli; }
            log "done in $(($(now) - t0))s"
            echo "$TAG"; return 0
        fi
    fi
    need_build_tools
    go_env
    log "cache: $CACHE"
    build_kind_cli
    build_k8s
    build_etcd
    build_coredns
    build_crictl
    build_pause
    build_minbase
    build_images
    build_node
    log "built $TAG in $(($(now) - t0))s (cache: $(du -sh "$CACHE" | cut -f1))"
    echo "$TAG"
}

case "${1:-build}" in
    build) main ;;
    tag) echo "$TAG" ;;
    cache-dir) echo "$CACHE" ;;
    kind) mkdir -p "$CACHE/logs"; need_build_tools; go_env; build_kind_cli ;;
    *) echo "usage: $0 [build|tag|cache-dir|kind]" >&2; exit 2 ;;
esac
