#!/usr/bin/env bash
# Make a Docker engine available to the pod tier, and stop it again afterwards.
#
#   scripts/pod-engine.sh start STATE_DIR   prints `export DOCKER=...` lines to eval; exit 0 when an
#                                           engine answers, 3 when none can start (no root, no apt,
#                                           dockerd failing), any other code for an error.
#   scripts/pod-engine.sh stop STATE_DIR    stops the dockerd this script started (by its recorded
#                                           PID), and nothing else; a no-op otherwise.
#
# An engine that already runs is used as it is and left running. Otherwise, as root, Debian's
# docker.io is installed when dockerd is missing, and dockerd is started in the background (there
# is no systemd here) with its image store in the usual /var/lib/docker, so images survive between
# runs. It runs without iptables rules or NAT: containers get no route out of the machine, the
# tier's traffic stays on this host (builds use --network host to reach the package registries).
set -euo pipefail

cmd="${1:-}"
state="${2:-}"
[[ -n "$cmd" && -n "$state" ]] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
mkdir -p "$state"

log() { printf 'pod-engine: %s\n' "$*" >&2; }

# A client that can build with BuildKit (RUN --mount, --secret). Docker >= 23 needs the buildx
# plugin for that; Debian's docker.io 20.10 client has BuildKit built in (DOCKER_BUILDKIT=1).
pick_client() {
    if docker buildx version >/dev/null 2>&1; then
        echo "export DOCKER=docker"
    elif [[ -x /usr/bin/docker ]] && /usr/bin/docker --version 2>/dev/null | grep -qE ' (19|20|21|22)\.'; then
        echo "export DOCKER=/usr/bin/docker DOCKER_BUILDKIT=1"
    else
        echo "export DOCKER=docker DOCKER_BUILDKIT=1"
    fi
}

engine_answers() { timeout 10 "${1:-docker}" info >/dev/null 2>&1; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q -o DPkg::Lock::Timeout=300 --no-install-recommends)
    apt-get install "${opts[@]}" "$@" >"$state/apt.log" 2>&1 \
        || { apt-get update -q >>"$state/apt.log" 2>&1 && apt-get install "${opts[@]}" "$@" >>"$state/apt.log" 2>&1; }
}

start() {
    if command -v docker >/dev/null && engine_answers docker; then
        log "using the engine that already runs"
        pick_client
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        log "no engine answers and not root: cannot start one"
        return 3
    fi
    if ! command -v dockerd >/dev/null; then
        command -v apt-get >/dev/null || { log "no dockerd and no apt-get"; return 3; }
        log "installing Debian's docker.io"
        apt_install docker.io || { tail -n 20 "$state/apt.log" >&2; log "docker.io install failed"; return 3; }
        # Where no policy-rc.d forbids it, the package may have started dockerd itself.
        if engine_answers /usr/bin/docker; then
            log "the docker.io package started an engine; using it"
            pick_client
            return 0
        fi
    fi
    log "starting dockerd (log: $state/dockerd.log)"
    # setsid: its own process group, so the caller's terminal signals do not reach it.
    setsid dockerd --host unix:///var/run/docker.sock --iptables=false --ip-masq=false \
        --ip-forward=false --pidfile "$state/dockerd.pid" --exec-root "$state/exec" \
        >"$state/dockerd.log" 2>&1 </dev/null &
    echo $! >"$state/started.pid"
    local i
    for i in $(seq 1 60); do
        if engine_answers /usr/bin/docker; then
            # dockerd's own pidfile is the truth (in case setsid had to fork).
            [[ -s "$state/dockerd.pid" ]] && cp "$state/dockerd.pid" "$state/started.pid"
            log "dockerd up (pid $(cat "$state/started.pid")) after ${i}s"
            pick_client
            return 0
        fi
        kill -0 "$(cat "$state/started.pid")" 2>/dev/null || break
        sleep 1
    done
    tail -n 20 "$state/dockerd.log" >&2
    log "dockerd did not come up"
    stop
    return 3
}

stop() {
    [[ -f "$state/started.pid" ]] || return 0
    local pid
    pid="$(cat "$state/started.pid")"
    rm -f "$state/started.pid"
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { log "dockerd stopped"; return 0; }
        sleep 1
    done
    log "dockerd ignored SIGTERM for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
esac
