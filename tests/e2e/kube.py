"""kubectl, helm and kind for the end-to-end suite: commands, port-forwards, diagnostics."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
CLUSTER = "streamproxy-e2e"
IMAGE_REPOSITORY = "streamproxy"
IMAGE_TAG = "e2e"


def tool(name: str) -> str | None:
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def missing_tools() -> str | None:
    """Why the suite cannot run here, or None."""
    for name in ("kind", "docker", "helm", "kubectl"):
        if tool(name) is None:
            hint = " (scripts/install-tools.sh)" if name in ("helm", "kubectl") else ""
            return f"{name} not found on PATH{hint}"
    docker = tool("docker")
    assert docker is not None
    probe = subprocess.run([docker, "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "docker is installed but its daemon does not answer (docker info failed)"
    return None


class CommandError(AssertionError):
    pass


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=stdin,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc


@dataclass
class Kube:
    """kubectl and helm against the suite's cluster, in one namespace."""

    kubeconfig: str
    namespace: str = "default"
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {"KUBECONFIG": self.kubeconfig}

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kubectl = tool("kubectl")
        assert kubectl is not None
        return run([kubectl, "--namespace", self.namespace, *args], env=self.env, **kwargs)

    def helm(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        helm = tool("helm")
        assert helm is not None
        return run([helm, "--namespace", self.namespace, *args], env=self.env, **kwargs)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def pods(self, selector: str) -> list[str]:
        items = self.json("pods", "-l", selector)["items"]
        return sorted(
            p["metadata"]["name"]
            for p in items
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        )

    def ready_endpoints(self, service: str) -> set[str]:
        """Pods the Service sends new connections to: its EndpointSlices' ready endpoints."""
        slices = self.json("endpointslices", "-l", f"kubernetes.io/service-name={service}")
        return {
            endpoint["targetRef"]["name"]
            for item in slices["items"]
            for endpoint in item.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready") and endpoint.get("targetRef")
        }

    def redis_get(self, deployment: str, key: str) -> int:
        """The shared count, read with redis-cli inside the in-chart Redis (0 when unset)."""
        out = self.kubectl(
            "exec", f"deployment/{deployment}", "--", "redis-cli", "GET", key, timeout=60
        ).stdout.strip()
        return int(out) if out else 0

    def node_port_taken(self, port: int) -> list[str]:
        """Services anywhere in the cluster holding node port PORT (a lingering namespace's)."""
        services = json.loads(
            self.kubectl("get", "services", "--all-namespaces", "-o", "json").stdout
        )
        return [
            f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
            for svc in services["items"]
            for p in svc["spec"].get("ports", [])
            if p.get("nodePort") == port
        ]

    def dump_diagnostics(self) -> str:
        """Events, describe output and logs of every pod: what a failed test leaves behind."""
        parts = []
        for title, args in (
            ("events", ["get", "events", "--sort-by=.lastTimestamp"]),
            ("objects", ["get", "all,pvc,networkpolicy", "-o", "wide"]),
            ("describe pods", ["describe", "pods"]),
            ("describe deployments", ["describe", "deployments"]),
        ):
            proc = self.kubectl(*args, check=False, timeout=60)
            parts.append(f"===== {title} ({self.namespace})\n{proc.stdout}{proc.stderr}")
        proc = self.kubectl("get", "pods", "-o", "name", check=False, timeout=60)
        for pod in proc.stdout.split():
            for previous in ("", "--previous"):
                logs = self.kubectl(
                    "logs",
                    pod,
                    "--all-containers",
                    "--prefix",
                    "--tail=200",
                    *([previous] if previous else []),
                    check=False,
                    timeout=60,
                )
                if logs.stdout.strip() or not previous:
                    parts.append(f"===== logs {pod} {previous}\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)


@contextlib.contextmanager
def port_forward(kube: Kube, target: str, remote_port: int) -> Iterator[int]:
    """`kubectl port-forward TARGET :PORT`; yields the local port, stops the process after."""
    kubectl = tool("kubectl")
    assert kubectl is not None
    proc = subprocess.Popen(
        [kubectl, "--namespace", kube.namespace, "port-forward", target, f":{remote_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **kube.env},
    )
    assert proc.stdout is not None
    drain: threading.Thread | None = None
    try:
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:40123 -> 15020"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            raise CommandError(f"port-forward {target} failed: {line}{proc.stdout.read()}")
        # Drain further output so the pipe never fills and blocks kubectl.
        drain = threading.Thread(target=proc.stdout.read, daemon=True)
        drain.start()
        yield int(match.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if drain is not None:
            drain.join(timeout=5)
        proc.stdout.close()


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, timeout: float = 5.0) -> Response:
    """One GET on a fresh connection (no keep-alive: each request picks its endpoint anew)."""
    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(response.status, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, exc.read())


def http_ok(url: str, timeout: float = 5.0) -> Response | None:
    """A GET that counts as success only with a 200: a 502/503 from a proxy is not "up"."""
    response = http_get(url, timeout=timeout)
    return response if response.status == 200 else None


def wait_for(predicate: Any, timeout: float, interval: float = 1.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, CommandError, ValueError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: last {last!r}")
