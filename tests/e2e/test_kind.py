"""The kind end-to-end suite: the chart, the manifests and the injector on a real cluster.

`make e2e` (scripts/e2e.sh) creates the cluster, loads the images and runs this; `pytest -m e2e
tests/e2e` does the same through the fixtures. Skipped cleanly where kind or docker is missing,
unless STREAMPROXY_REQUIRE_E2E=1 (CI), which turns a skip into a failure. Every test gets its own
namespace (see conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kube import (
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    ROOT,
    Kube,
    http_get,
    http_ok,
    missing_tools,
    port_forward,
    run,
    tool,
    wait_for,
)
from tests.e2e.traffic import KeepAliveTraffic

MISSING = missing_tools()
pytestmark = [
    pytest.mark.e2e,
    # Includes the session's cluster creation and image build for the first test.
    pytest.mark.timeout(3600),
    pytest.mark.skipif(MISSING is not None, reason=f"kind suite: {MISSING}"),
]

RELEASE = "demo"
FULLNAME = f"{RELEASE}-streamproxy"
REDIS = f"{FULLNAME}-redis"
REDIS_SELECTOR = f"app.kubernetes.io/name=streamproxy-redis,app.kubernetes.io/instance={RELEASE}"
COUNTER_KEY = "streamproxy:requests"
SELECTOR = f"app.kubernetes.io/name=streamproxy,app.kubernetes.io/instance={RELEASE}"
NODE_PORT = 30080  # mapped to 127.0.0.1:30080 by kind-config.yaml
STATUS_KEYS = {"counter", "uptime", "upstream", "redis", "pending", "version"}
# The sidecar's readiness probe (sidecar/k8s/sidecar.py PROBES): every 2 s, 2 failures.
READINESS_PERIOD, READINESS_FAILURES = 2, 2
# The --set values of each install (tests/e2e/test_harness.py renders them all offline).
TWO_REPLICAS = ("replicaCount=2",)
BEHIND_NODE_PORT = ("replicaCount=2", "service.type=NodePort", f"service.nodePort={NODE_PORT}")
ROLLOUT = ("podAnnotations.rollout=second",)
CLASSIC = ("proxy.nativeSidecar=false",)
PERSISTENT_REDIS = ("redis.server.persistence.enabled=true",)
SET_VALUES = (TWO_REPLICAS, BEHIND_NODE_PORT, BEHIND_NODE_PORT + ROLLOUT, CLASSIC)
# An app that can be switched off and on from inside its container (`touch /tmp/app-down`), to
# see readiness follow it: the built-in echo app under a shell loop.
SWITCHABLE_APP = (
    "trap 'kill $pid 2>/dev/null; exit 0' TERM; pid=; "
    "while :; do "
    "if [ -e /tmp/app-down ]; then sleep 0.2; continue; fi; "
    "streamproxy echo-app --host 127.0.0.1 --port 8080 & pid=$!; "
    'while [ ! -e /tmp/app-down ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; '
    'kill "$pid" 2>/dev/null; wait "$pid"; '
    "done"
)
SWITCHABLE_APP_VALUES = yaml.safe_dump(
    {
        "app": {
            "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG},
            "command": ["sh", "-c", SWITCHABLE_APP],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
)
JOB = f"""
apiVersion: batch/v1
kind: Job
metadata:
  name: e2e-job
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: task
          image: {IMAGE_REPOSITORY}:{IMAGE_TAG}
          args: ["check", "--timeout", "10", "http://127.0.0.1:15020/livez"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: ["ALL"]}}
"""
INJECT_JOB = [
    sys.executable,
    "-m",
    "sidecar",
    "inject",
    "--image",
    f"{IMAGE_REPOSITORY}:{IMAGE_TAG}",
    "-",
]


def install(
    kube: Kube, chart: Path, *sets: str, command: str = "install", values: str | None = None
) -> None:
    if f"service.nodePort={NODE_PORT}" in sets and command == "install":
        # The node port is cluster-wide: a previous test's namespace may still be going away.
        wait_for(
            lambda: not kube.node_port_taken(NODE_PORT),
            240,
            interval=2,
            what=f"node port {NODE_PORT} to be free",
        )
    args = [command, RELEASE, str(chart), "--wait", "--timeout", "5m"]
    args += ["--set", f"image.tag={IMAGE_TAG}"]
    if command == "upgrade":
        args.append("--reuse-values")
    for item in sets:
        args += ["--set", item]
    if values is not None:
        args += ["--values", "-"]
    kube.helm(*args, timeout=420, stdin=values)


def status_via(port: int) -> dict[str, Any]:
    response = http_get(f"http://127.0.0.1:{port}/status")
    assert response.status == 200, response.body
    body: dict[str, Any] = response.json()
    return body


def wait_all_up(fetch: Callable[[], dict[str, Any]], timeout: float = 60) -> dict[str, Any]:
    """The first /status that reports both the app and Redis up.

    Ready pods do not imply `"redis": "up"` yet: the sidecar learns Redis is back at its next
    retry (backoff ≤ 2 s) and the Redis Service's rules may be programmed a moment after its pod
    is Ready (one CI run's first /status said "down"). The wait is printed with the test.
    """
    started = time.monotonic()
    seen: list[dict[str, Any]] = []

    def both_up() -> dict[str, Any] | None:
        seen.append(fetch())
        up = seen[-1].get("upstream") == "up" and seen[-1].get("redis") == "up"
        return seen[-1] if up else None

    try:
        body: dict[str, Any] = wait_for(both_up, timeout, what="/status with app and Redis up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last /status {seen[-1:]!r}") from None
    print(f"/status all up after {time.monotonic() - started:.1f}s ({len(seen)} tries)")
    return body


def wait_rollout(kube: Kube, deployment: str = FULLNAME) -> None:
    kube.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=5m", timeout=330)


def wait_count(kube: Kube, expected: int) -> int:
    """Redis holds exactly EXPECTED once every pod has flushed (about 1 s); never more."""
    seen: list[int] = []

    def exact() -> bool:
        seen.append(kube.redis_get(REDIS, COUNTER_KEY))
        assert seen[-1] <= expected, f"counted {seen[-1]} of {expected} sent: doubled"
        return seen[-1] == expected

    wait_for(exact, 60, interval=1, what=f"the Redis count to reach {expected} (seen {seen[-5:]})")
    return seen[-1]


@contextlib.contextmanager
def steady_traffic() -> Iterator[KeepAliveTraffic]:
    """Keep-alive traffic through the NodePort, flowing (50 answers) before the body runs.

    A Ready pod is not yet a NodePort that reaches it: kube-proxy programs the new Service's
    endpoints a moment later, and until then a connection is refused (reset, behind the host's
    port mapping). So one GET must come back 200 before the steady clients start. Every GET
    that got an answer reached a proxy and was counted (`counted_before`)."""
    answered = 0

    def reached() -> bool:
        nonlocal answered
        response = http_get(f"http://127.0.0.1:{NODE_PORT}/warm-up")
        answered += 1
        return response.status == 200

    wait_for(reached, 60, interval=0.5, what="a 200 through the NodePort")
    with KeepAliveTraffic("127.0.0.1", NODE_PORT) as traffic:
        traffic.counted_before = answered
        wait_for(lambda: traffic.ok >= 50, 60, what=f"steady traffic ({traffic.summary()})")
        yield traffic


def old_pods_gone(kube: Kube, before: set[str], replicas: int = 2) -> bool:
    items = kube.json("pods", "-l", SELECTOR)["items"]
    names = {p["metadata"]["name"] for p in items}
    return not (before & names) and len(items) == replicas


def test_install_then_status_via_port_forward(kube: Kube, chart: Path) -> None:
    install(kube, chart, *TWO_REPLICAS)
    pods = kube.pods(SELECTOR)
    assert len(pods) == 2
    spec = kube.json("pod", pods[0])["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["streamproxy"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    with port_forward(kube, f"deployment/{FULLNAME}", 15020) as port:
        status = wait_all_up(lambda: status_via(port))
    assert set(status) >= STATUS_KEYS
    assert status["upstream"] == "up"
    assert status["redis"] == "up"


def readme_kubernetes_steps() -> list[str]:
    """The README's Kubernetes commands, as a user pastes them (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Kubernetes\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's Kubernetes section has no sh block"
    return [line.strip() for line in block.group(1).replace("\\\n", " ").splitlines()]


def test_readme_steps_port_forward_to_status(cluster: str, image: str) -> None:
    """The README's `helm install` / `kubectl port-forward` / `curl /status`, pasted from it."""
    steps = readme_kubernetes_steps()
    helm_install = next(s for s in steps if s.startswith("helm install"))
    forward = next(s for s in steps if "port-forward" in s)
    curl = next(s for s in steps if s.startswith("curl"))
    namespace = shlex.split(helm_install)[shlex.split(helm_install).index("--namespace") + 1]
    env = {**os.environ, "KUBECONFIG": cluster}
    env["PATH"] = f"{ROOT / '.tools' / 'bin'}:{env['PATH']}"
    kube = Kube(cluster, namespace)
    forwarder = None
    try:
        subprocess.run(helm_install, shell=True, check=True, env=env, cwd=ROOT, timeout=420)
        assert forward.endswith("&")
        # `exec`: the shell becomes kubectl, so stopping it stops the port-forward itself.
        forwarder = subprocess.Popen(
            "exec " + forward.removesuffix("&"),
            shell=True,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert forwarder.stdout is not None
        assert b"Forwarding from 127.0.0.1:15020" in forwarder.stdout.readline()

        def status() -> dict[str, Any]:
            proc = subprocess.run(curl, shell=True, env=env, capture_output=True, timeout=30)
            body: dict[str, Any] = json.loads(proc.stdout)
            return body

        body = wait_all_up(status)
        assert set(body) >= STATUS_KEYS
        assert body["redis"] == "up"
    finally:
        if forwarder is not None:
            forwarder.terminate()
            forwarder.wait(timeout=10)
            if forwarder.stdout is not None:
                forwarder.stdout.close()
        kube.helm("uninstall", RELEASE, "--wait", check=False, timeout=300)
        kube.kubectl("delete", "namespace", namespace, "--wait=true", check=False, timeout=240)


def test_traffic_through_the_service_is_counted_exactly_once(kube: Kube, chart: Path) -> None:
    install(kube, chart, *BEHIND_NODE_PORT)
    sent = 60
    for i in range(sent):
        response = wait_for(
            lambda i=i: http_ok(f"http://127.0.0.1:{NODE_PORT}/e2e/{i}"),
            30,
            what="a 200 through the NodePort",
        )
        assert response.status == 200
    pods = kube.pods(SELECTOR)
    assert len(pods) == 2
    assert wait_count(kube, sent) == sent

    def counters() -> list[int] | None:
        seen = []
        for pod in pods:
            with port_forward(kube, f"pod/{pod}", 15020) as port:
                seen.append(int(status_via(port)["counter"]))
        # Every pod reads the shared Redis total, whichever pod served the requests.
        return seen if seen == [sent, sent] else None

    assert wait_for(counters, 60, interval=2, what="both pods to show the shared count")


def test_helm_test_passes_with_logs(kube: Kube, chart: Path) -> None:
    """`helm test --logs` works when the test pod succeeds (helm#9098: a pod deleted by its
    hook-succeeded policy made `--logs` fail), and reports the checks' output."""
    install(kube, chart)
    result = kube.helm("test", RELEASE, "--logs", "--timeout", "3m", timeout=240)
    assert f"{FULLNAME}-test-status" in result.stdout
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout


def test_upgrade_then_rollback_under_keepalive_traffic(kube: Kube, chart: Path) -> None:
    """Two rollouts (helm upgrade, helm rollback) under steady keep-alive traffic: no request
    fails, and Redis counts each one exactly once."""
    install(kube, chart, *BEHIND_NODE_PORT)
    first = set(kube.pods(SELECTOR))
    with steady_traffic() as traffic:
        install(kube, chart, *ROLLOUT, command="upgrade")
        wait_rollout(kube)
        wait_for(lambda: old_pods_gone(kube, first), 240, interval=2, what="first pods gone")
        second = set(kube.pods(SELECTOR))
        kube.helm("rollback", RELEASE, "1", "--wait", "--timeout", "5m", timeout=420)
        wait_rollout(kube)
        wait_for(lambda: old_pods_gone(kube, second), 240, interval=2, what="second pods gone")
        served_after = traffic.ok
        wait_for(lambda: traffic.ok >= served_after + 50, 60, what="traffic on the new pods")
    print(traffic.summary())
    assert not traffic.failures, traffic.summary()
    assert traffic.reconnects >= 2, f"no pod ever said Connection: close: {traffic.summary()}"
    annotations = kube.json("deployment", FULLNAME)["spec"]["template"]["metadata"]
    assert "rollout" not in annotations.get("annotations", {}), "rollback did not roll back"
    assert wait_count(kube, traffic.counted) == traffic.counted


def test_pod_deleted_under_keepalive_traffic_fails_nothing_and_loses_no_count(
    kube: Kube, chart: Path
) -> None:
    install(kube, chart, *BEHIND_NODE_PORT)
    before = set(kube.pods(SELECTOR))
    victim = sorted(before)[0]
    with steady_traffic() as traffic:
        kube.kubectl("delete", "pod", victim, "--wait=true", "--timeout=3m", timeout=240)
        wait_rollout(kube)
        served_after = traffic.ok
        wait_for(lambda: traffic.ok >= served_after + 50, 60, what="traffic after the deletion")
    print(traffic.summary())
    assert not traffic.failures, traffic.summary()
    assert victim not in kube.pods(SELECTOR)
    # The deleted pod flushed its pending counts on SIGTERM: nothing lost, nothing doubled.
    assert wait_count(kube, traffic.counted) == traffic.counted


def test_redis_restarted_mid_traffic_counts_exact_once_back(kube: Kube, chart: Path) -> None:
    """Redis (append-only file on its volume) restarted under traffic: proxying never fails,
    counts wait in memory, and the total is exact once Redis is back."""
    install(kube, chart, *BEHIND_NODE_PORT, *PERSISTENT_REDIS)
    redis_before = set(kube.pods(REDIS_SELECTOR))
    assert len(redis_before) == 1
    with steady_traffic() as traffic:
        kube.kubectl("rollout", "restart", f"deployment/{REDIS}")
        wait_rollout(kube, REDIS)
        served_after = traffic.ok
        wait_for(lambda: traffic.ok >= served_after + 50, 60, what="traffic after the restart")
    print(traffic.summary())
    assert not traffic.failures, traffic.summary()
    assert not redis_before & set(kube.pods(REDIS_SELECTOR)), "Redis was not restarted"
    assert wait_count(kube, traffic.counted) == traffic.counted


def test_readiness_follows_the_app(kube: Kube, chart: Path) -> None:
    """The app stops: the pod leaves the Service's endpoints within the readiness probe's
    period (plus the proxy's health interval); the app comes back: so does the pod."""
    install(kube, chart, values=SWITCHABLE_APP_VALUES)
    pod = kube.pods(SELECTOR)[0]
    bound = READINESS_PERIOD * READINESS_FAILURES + 1 + 15  # + health interval, + wide margin
    # A Ready pod reaches the EndpointSlice a moment later (the controller batches updates).
    wait_for(lambda: kube.ready_endpoints(FULLNAME) == {pod}, bound, 0.5, "the pod in endpoints")
    stopped = time.monotonic()
    kube.kubectl("exec", pod, "-c", "app", "--", "touch", "/tmp/app-down")
    wait_for(lambda: not kube.ready_endpoints(FULLNAME), bound, 0.5, "the pod to leave endpoints")
    left_after = time.monotonic() - stopped
    with port_forward(kube, f"pod/{pod}", 15020) as port:
        down = http_get(f"http://127.0.0.1:{port}/status")
        assert down.status == 503 and down.json()["upstream"] == "down", down.body
        back = time.monotonic()
        kube.kubectl("exec", pod, "-c", "app", "--", "rm", "/tmp/app-down")
        wait_for(lambda: kube.ready_endpoints(FULLNAME) == {pod}, bound, 0.5, "the pod back")
        back_after = time.monotonic() - back
        assert status_via(port)["upstream"] == "up"
    print(f"left endpoints after {left_after:.1f}s, back after {back_after:.1f}s")


def test_injected_job_completes_with_native_sidecar(kube: Kube) -> None:
    """`streamproxy inject` on a Job: the sidecar starts first, and the Job still completes."""
    injected = subprocess.run(
        INJECT_JOB, input=JOB, capture_output=True, text=True, check=True, cwd=ROOT, timeout=60
    )
    assert "job/e2e-job injected (native sidecar" in injected.stderr
    kube.kubectl("apply", "-f", "-", stdin=injected.stdout)
    kube.kubectl("wait", "--for=condition=complete", "job/e2e-job", "--timeout=180s", timeout=200)
    pod = kube.json("pods", "-l", "job-name=e2e-job")["items"][0]
    assert pod["status"]["phase"] == "Succeeded"
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["streamproxy"]


def test_classic_sidecar(kube: Kube, chart: Path) -> None:
    install(kube, chart, *CLASSIC)
    pod = kube.json("pod", kube.pods(SELECTOR)[0])
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "streamproxy"]
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    with port_forward(kube, f"service/{FULLNAME}", 80) as port:
        response = wait_for(
            lambda: http_ok(f"http://127.0.0.1:{port}/classic"),
            30,
            what="a 200 through the proxy",
        )
    assert response.status == 200


def test_plain_manifests_with_kubectl_apply_k(cluster: str, image: str) -> None:
    """manifests/ as the README says: `kubectl apply -k manifests/` (its own namespace)."""
    kubectl = tool("kubectl")
    assert kubectl is not None
    env = {"KUBECONFIG": cluster}
    kube = Kube(cluster, "streamproxy")
    try:
        run([kubectl, "apply", "-k", str(ROOT / "manifests")], env=env)
        for deployment in ("streamproxy-redis", "streamproxy"):
            wait_rollout(kube, deployment)
        with port_forward(kube, "deployment/streamproxy", 15020) as port:
            status = wait_all_up(lambda: status_via(port))
        assert status["redis"] == "up"
        assert status["upstream"] == "up"
    except BaseException:
        print(kube.dump_diagnostics(), file=sys.stderr)
        raise
    finally:
        run(
            [kubectl, "delete", "-k", str(ROOT / "manifests"), "--wait=true", "--timeout=180s"],
            env=env,
            check=False,
            timeout=240,
        )
