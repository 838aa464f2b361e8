"""The kind end-to-end suite: the chart, the manifests and the injector on a real cluster.

Runs where kind and docker exist (`make e2e`, or `pytest -m e2e tests/e2e`) and is skipped
cleanly elsewhere. Every test gets its own namespace (see conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kube import (
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    ROOT,
    Kube,
    http_get,
    missing_tools,
    port_forward,
    wait_for,
)

MISSING = missing_tools()
pytestmark = [
    pytest.mark.e2e,
    # Includes the session's cluster creation and image build for the first test.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(MISSING is not None, reason=f"kind suite: {MISSING}"),
]

RELEASE = "demo"
FULLNAME = f"{RELEASE}-streamproxy"
SELECTOR = f"app.kubernetes.io/name=streamproxy,app.kubernetes.io/instance={RELEASE}"
NODE_PORT = 30080  # mapped to 127.0.0.1:30080 by kind-config.yaml
STATUS_KEYS = {"counter", "uptime", "upstream", "redis", "pending", "version"}
# The --set values of each install (tests/e2e/test_harness.py renders them all offline).
TWO_REPLICAS = ("replicaCount=2",)
BEHIND_NODE_PORT = ("replicaCount=2", "service.type=NodePort", f"service.nodePort={NODE_PORT}")
ROLLOUT = ("podAnnotations.rollout=second",)
CLASSIC = ("proxy.nativeSidecar=false",)
SET_VALUES = (TWO_REPLICAS, BEHIND_NODE_PORT, BEHIND_NODE_PORT + ROLLOUT, CLASSIC)
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


def install(kube: Kube, chart: Path, *sets: str, command: str = "install") -> None:
    args = [
        command,
        RELEASE,
        str(chart),
        "--wait",
        "--timeout",
        "5m",
        "--set",
        f"image.tag={IMAGE_TAG}",
    ]
    if command == "upgrade":
        args.append("--reuse-values")
    for item in sets:
        args += ["--set", item]
    kube.helm(*args, timeout=420)


def status_via(port: int) -> dict[str, Any]:
    response = http_get(f"http://127.0.0.1:{port}/status")
    assert response.status == 200, response.body
    body: dict[str, Any] = response.json()
    return body


def test_install_then_status_via_port_forward(kube: Kube, chart: Path) -> None:
    """What the README promises: helm install --wait, port-forward, curl /status."""
    install(kube, chart, *TWO_REPLICAS)
    pods = kube.pods(SELECTOR)
    assert len(pods) == 2
    spec = kube.json("pod", pods[0])["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["streamproxy"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    with port_forward(kube, f"deployment/{FULLNAME}", 15020) as port:
        status = wait_for(lambda: status_via(port), 60, what="/status 200")
    assert set(status) >= STATUS_KEYS
    assert status["upstream"] == "up"
    assert status["redis"] == "up"


def test_traffic_through_the_service_shares_one_count(kube: Kube, chart: Path) -> None:
    install(kube, chart, *BEHIND_NODE_PORT)
    sent = 60
    for i in range(sent):
        response = wait_for(
            lambda i=i: http_get(f"http://127.0.0.1:{NODE_PORT}/e2e/{i}"),
            30,
            what="a request through the NodePort",
        )
        assert response.status == 200, response.body
    pods = kube.pods(SELECTOR)
    assert len(pods) == 2

    def counters() -> list[int] | None:
        seen = []
        for pod in pods:
            with port_forward(kube, f"pod/{pod}", 15020) as port:
                seen.append(int(status_via(port)["counter"]))
        # Every pod reads the shared Redis total, whichever pod served the requests.
        return seen if min(seen) >= sent and len(set(seen)) == 1 else None

    assert wait_for(counters, 60, interval=2, what="both pods to show the shared count")


def test_helm_test_passes(kube: Kube, chart: Path) -> None:
    install(kube, chart)
    # Exits non-zero (and `run` raises with the output) unless the test pod succeeded.
    result = kube.helm("test", RELEASE, "--logs", "--timeout", "3m", timeout=240)
    assert f"{FULLNAME}-test-status" in result.stdout


def test_rolling_upgrade_under_steady_traffic_fails_no_request(kube: Kube, chart: Path) -> None:
    install(kube, chart, *BEHIND_NODE_PORT)
    before = set(kube.pods(SELECTOR))
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                response = http_get(f"http://127.0.0.1:{NODE_PORT}/steady", timeout=10)
                outcome = str(response.status)
            except OSError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            outcomes[outcome] += 1
            if outcome != "200":
                failures.append(f"{time.strftime('%H:%M:%S')} {outcome}")
            time.sleep(0.02)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        wait_for(lambda: outcomes["200"] >= 20, 60, what="steady traffic")
        install(kube, chart, *ROLLOUT, command="upgrade")
        kube.kubectl("rollout", "status", f"deployment/{FULLNAME}", "--timeout=5m", timeout=330)
        # Keep going until the old pods are gone, not merely unready.
        wait_for(
            lambda: (
                not (before & set(kube.pods(SELECTOR)))
                and len(kube.json("pods", "-l", SELECTOR)["items"]) == 2
            ),
            240,
            interval=2,
            what="old pods to terminate",
        )
        time.sleep(3)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not failures, f"{len(failures)} failed requests: {failures[:20]} ({dict(outcomes)})"
    assert outcomes["200"] >= 100
    assert not before & set(kube.pods(SELECTOR))


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
            lambda: http_get(f"http://127.0.0.1:{port}/classic"),
            30,
            what="a request through the proxy",
        )
    assert response.status == 200


def test_plain_manifests(kube: Kube) -> None:
    """manifests/ (the chart's defaults, image streamproxy:<appVersion>) work without Helm."""
    kube.kubectl("apply", "-f", str(ROOT / "manifests" / "streamproxy.yaml"))
    for deployment in ("streamproxy-redis", "streamproxy"):
        kube.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=5m", timeout=330)
    with port_forward(kube, "deployment/streamproxy", 15020) as port:
        status = wait_for(lambda: status_via(port), 60, what="/status 200")
    assert status["redis"] == "up"
