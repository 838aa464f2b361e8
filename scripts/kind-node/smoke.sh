#!/usr/bin/env bash
# Smoke test of the e2e cluster (scripts/e2e-cluster.sh create first): node Ready, kube-system
# pods Running, cluster DNS from a pod, a native sidecar (initContainer restartPolicy: Always), an
# image loaded with `docker save` + `kind load image-archive` run with imagePullPolicy: Never, a
# NodePort Service on 127.0.0.1:30080 from the host, and `kubectl port-forward`.
# Usage: scripts/kind-node/smoke.sh   (env: SMOKE_IMAGE, default streamproxy-base:bookworm, built by
#        scripts/pod-base-image.sh base when missing; KUBECTL; SMOKE_KEEP=1 keeps the namespace)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DOCKER="${DOCKER:-docker}"
IMAGE="${SMOKE_IMAGE:-streamproxy-base:bookworm}"
KUBECTL="${KUBECTL:-$root/.tools/bin/kubectl}"
NS=kind-smoke
export KUBECONFIG
KUBECONFIG="$("$root/scripts/e2e-cluster.sh" create)"
k() { "$KUBECTL" "$@"; }
ok() { printf 'smoke: OK   %s\n' "$*"; }
fail() { printf 'smoke: FAIL %s\n' "$*"; exit 1; }
tmp="$(mktemp -d)"
pf_pid=""
cleanup() {
    [[ -z "$pf_pid" ]] || kill "$pf_pid" 2>/dev/null || true
    rm -rf "$tmp"
    [[ "${SMOKE_KEEP:-0}" == 1 ]] || k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo "smoke: FAIL at line $LINENO: $BASH_COMMAND"' ERR

k wait --for=condition=Ready node --all --timeout=120s >/dev/null && ok "nodes Ready: $(k get nodes --no-headers | awk '{print $1"="$2"("$5")"}' | xargs)"
k -n kube-system wait --for=condition=Ready pod --all --timeout=180s >/dev/null
notrunning="$(k -n kube-system get pods --no-headers | awk '$3 != "Running"')"
[[ -z "$notrunning" ]] || fail "kube-system pods not Running: $notrunning"
ok "kube-system: $(k -n kube-system get pods --no-headers | wc -l) pods Running"

# An image from the host's docker, never pulled.
$DOCKER image inspect "$IMAGE" >/dev/null 2>&1 || "$root/scripts/pod-base-image.sh" base
$DOCKER save -o "$tmp/image.tar" "$IMAGE"
"$root/scripts/e2e-cluster.sh" kind load image-archive "$tmp/image.tar" >/dev/null
ok "kind load image-archive $IMAGE"

# A namespace left by an earlier run (possibly still terminating) goes first.
k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
k create namespace "$NS" >/dev/null
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: app
  labels: {app: smoke}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
    - name: sidecar            # native sidecar: starts first, keeps running beside the app
      image: $IMAGE
      imagePullPolicy: Never
      restartPolicy: Always
      command: [python3, -c, "import http.server as h; h.ThreadingHTTPServer(('', 9000), h.SimpleHTTPRequestHandler).serve_forever()"]
      readinessProbe: {tcpSocket: {port: 9000}, periodSeconds: 2}
  containers:
    - name: app
      image: $IMAGE
      imagePullPolicy: Never
      workingDir: /srv
      command: [sh, -c, "mkdir -p /srv && echo smoke-ok > /srv/index.html && exec python3 -m http.server 8080"]
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  type: NodePort
  selector: {app: smoke}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
EOF
k -n "$NS" wait --for=condition=Ready pod/app --timeout=120s >/dev/null || { k -n "$NS" describe pod app; fail "pod app not Ready"; }
kinds="$(k -n "$NS" get pod app -o jsonpath='{.spec.initContainers[0].restartPolicy}/{.status.initContainerStatuses[0].started}/{.status.initContainerStatuses[0].ready}')"
[[ "$kinds" == "Always/true/true" ]] || fail "native sidecar state: $kinds"
ok "native sidecar running beside the app (initContainer restartPolicy Always, started, ready), image pulled: never"

# Cluster DNS from a pod (and the sidecar answers the app over localhost, as in a real pod).
out="$(timeout 60 "$KUBECTL" -n "$NS" exec app -c app -- python3 -c "
import socket, urllib.request
print(socket.gethostbyname('kubernetes.default.svc.cluster.local'))
print(urllib.request.urlopen('http://127.0.0.1:9000/', timeout=5).status)")"
svcip="$(k get svc kubernetes -o jsonpath='{.spec.clusterIP}')"
[[ "$(sed -n 1p <<<"$out")" == "$svcip" ]] || fail "DNS: got '$out', want $svcip"
[[ "$(sed -n 2p <<<"$out")" == 200 ]] || fail "sidecar over localhost: $out"
ok "DNS: kubernetes.default.svc.cluster.local -> $svcip from a pod; app -> sidecar on localhost:9000"

# The Service by name from a pod (ClusterIP through kube-proxy; its rules can lag the pod's
# readiness by a sync period, hence the retries).
for i in $(seq 1 20); do
    out="$(timeout 30 "$KUBECTL" -n "$NS" exec app -c app -- python3 -c "
import urllib.request; print(urllib.request.urlopen('http://app.$NS.svc.cluster.local/', timeout=3).read().decode().strip())" 2>&1 || true)"
    [[ "$out" == smoke-ok ]] && break
    sleep 1
done
[[ "$out" == smoke-ok ]] || fail "ClusterIP by name: $out"
ok "ClusterIP Service by DNS name from a pod"

# NodePort 30080 from the host (kind's extraPortMapping 127.0.0.1:30080).
for i in $(seq 1 30); do
    out="$(curl -fsS --max-time 3 http://127.0.0.1:30080/ 2>/dev/null || true)"
    [[ "$out" == smoke-ok ]] && break
    sleep 1
done
[[ "$out" == smoke-ok ]] || fail "NodePort 127.0.0.1:30080: '$out'"
ok "NodePort Service answers at http://127.0.0.1:30080/ from the host"

# kubectl port-forward.
k -n "$NS" port-forward pod/app 18080:8080 >"$tmp/pf.log" 2>&1 &
pf_pid=$!
for i in $(seq 1 30); do
    out="$(curl -fsS --max-time 3 http://127.0.0.1:18080/ 2>/dev/null || true)"
    [[ "$out" == smoke-ok ]] && break
    sleep 1
done
[[ "$out" == smoke-ok ]] || { cat "$tmp/pf.log"; fail "port-forward: '$out'"; }
ok "kubectl port-forward pod/app 18080:8080 answers"
echo "smoke: all checks passed"
