"""Pod tier: the pod `helm template` renders, run in the local container engine.

`make pod-test` (scripts/pod-test.sh) provides the engine and the images, then runs these tests.
Run alone, they skip with the reason when no engine answers or an image is missing — unless
STREAMPROXY_REQUIRE_POD_TIER=1, which turns every such skip into a failure (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.pod.kubepod import (
    DockerPod,
    docker,
    engine_problem,
    find,
    render_chart,
    wait_probe,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamproxy"
IMAGE = os.environ.get("STREAMPROXY_POD_IMAGE", "streamproxy:dev")
REDIS_IMAGE = os.environ.get("STREAMPROXY_POD_REDIS_IMAGE", "streamproxy-redis:bookworm")
# Release "streamproxy" makes the Service "streamproxy", so the kubelet's service links put
# STREAMPROXY_PORT=tcp://..., STREAMPROXY_SERVICE_HOST, ... into the pod: exactly the names of
# our settings. The chart must cope with that, as it must in a real namespace.
RELEASE = "streamproxy"
NAMESPACE = "pod-tier"
SIDECAR = "streamproxy"
APP = "app"
REDIS = "redis"

_failure_dumps: list[str] = []


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("STREAMPROXY_REQUIRE_POD_TIER") == "1":
        pytest.fail(f"pod tier required (STREAMPROXY_REQUIRE_POD_TIER=1) but {reason}")
    pytest.skip(f"pod tier: {reason} (run `make pod-test`, which starts an engine as root)")


def split_image(ref: str) -> tuple[str, str]:
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return ref, "latest"
    return name, tag


@pytest.fixture(scope="session")
def engine() -> None:
    problem = engine_problem()
    if problem:
        unavailable(problem)
    for image in (IMAGE, REDIS_IMAGE):
        if docker("image", "inspect", image, check=False).returncode != 0:
            unavailable(f"image {image} is not built")


def render(extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`helm template` of the chart with our images (and `extra` values)."""
    helm = os.environ.get("HELM") or str(ROOT / ".tools" / "bin" / "helm")
    if not os.access(helm, os.X_OK):
        helm = shutil.which("helm") or ""
    if not helm:
        unavailable("helm not found in .tools/bin or PATH (scripts/install-tools.sh)")
    repo, tag = split_image(IMAGE)
    redis_repo, redis_tag = split_image(REDIS_IMAGE)
    values = {
        "image.repository": repo,
        "image.tag": tag,
        "redis.server.image.repository": redis_repo,
        "redis.server.image.tag": redis_tag,
        **(extra or {}),
    }
    return render_chart(helm, str(CHART), RELEASE, NAMESPACE, values)


@pytest.fixture(scope="session")
def rendered(engine: None) -> list[dict[str, Any]]:
    return render()


@dataclass
class Stack:
    """The workload's pod, the in-chart Redis pod, and what their start showed."""

    pod: DockerPod
    redis: DockerPod
    startup_seconds: dict[str, float]
    counter_key: str

    def sidecar_spec(self) -> dict[str, Any]:
        return self.pod.container(SIDECAR)

    def proxy_port(self) -> int:
        return self.pod.host_port(container_port(self.sidecar_spec(), "proxy"))

    def admin_port(self) -> int:
        return self.pod.host_port(container_port(self.sidecar_spec(), "proxy-admin"))

    def redis_count(self) -> int:
        out = self.redis.exec(REDIS, "redis-cli", "--raw", "GET", self.counter_key)
        assert out.returncode == 0, out.stderr
        value = out.stdout.strip()
        return int(value) if value else 0


def container_port(container: dict[str, Any], name: str) -> int:
    for port in container.get("ports", []):
        if port.get("name") == name:
            return int(port["containerPort"])
    raise LookupError(f"{container['name']} declares no port named {name!r}")


def env_value(container: dict[str, Any], name: str) -> str:
    for item in container.get("env", []):
        if item["name"] == name and "value" in item:
            return str(item["value"])
    raise LookupError(f"{container['name']} has no env {name}")


def start_stack(rendered: list[dict[str, Any]]) -> Generator[Stack, None, None]:
    run_id = uuid.uuid4().hex[:8]
    services = [d for d in rendered if d.get("kind") == "Service"]
    # Cluster IPs only fill the service-link variables; nothing ever connects to them.
    cluster_ips = {s["metadata"]["name"]: f"10.96.0.{10 + i}" for i, s in enumerate(services)}
    workload = find(rendered, "Deployment", RELEASE)
    redis_workload = find(rendered, "Deployment", f"{RELEASE}-redis")
    redis = DockerPod(
        name=f"{RELEASE}-redis-{run_id}",
        namespace=NAMESPACE,
        template=redis_workload["spec"]["template"],
        run_id=run_id,
        pause_image=IMAGE,
        services=services,
        cluster_ips=cluster_ips,
    )
    pod: DockerPod | None = None
    try:
        redis.start()
        redis_spec = redis.container(REDIS)
        wait_probe(redis, redis_spec, redis_spec["readinessProbe"], budget=30)
        # Cluster DNS stand-in: the Service's names resolve to the Redis pod (/etc/hosts).
        svc = f"{RELEASE}-redis"
        redis_ip = redis.pod_ip()
        names = [svc, f"{svc}.{NAMESPACE}", f"{svc}.{NAMESPACE}.svc"]
        hosts = {n: redis_ip for n in [*names, f"{svc}.{NAMESPACE}.svc.cluster.local"]}
        pod = DockerPod(
            name=f"{RELEASE}-{run_id}",
            namespace=NAMESPACE,
            template=workload["spec"]["template"],
            run_id=run_id,
            pause_image=IMAGE,
            services=services,
            cluster_ips=cluster_ips,
            hosts=hosts,
        )
        startup = pod.start()
        sidecar = pod.container(SIDECAR)
        # Like `kubectl wait --for=condition=Ready`: the tests start from a Ready pod.
        wait_probe(pod, sidecar, sidecar["readinessProbe"], budget=30)
        key = env_value(sidecar, "STREAMPROXY_COUNTER_KEY")
    except BaseException:
        _failure_dumps.append(f"pod tier run {run_id} did not start; container states and logs:")
        for started in (pod, redis):
            if started is not None:
                _failure_dumps.append(started.logs())
                started.remove()
        raise
    try:
        yield Stack(pod=pod, redis=redis, startup_seconds=startup, counter_key=key)
    finally:
        pod.remove()
        redis.remove()


def _watched_stack(
    rendered: list[dict[str, Any]], request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """A started stack whose container logs are kept for the summary when a test failed."""
    failed_before = request.session.testsfailed
    gen = start_stack(rendered)
    current = next(gen)
    yield current
    if request.session.testsfailed > failed_before:
        _failure_dumps.append(current.pod.logs())
        _failure_dumps.append(current.redis.logs())
    gen.close()


@pytest.fixture(scope="module")
def stack(rendered: list[dict[str, Any]], request: pytest.FixtureRequest) -> Iterator[Stack]:
    yield from _watched_stack(rendered, request)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _failure_dumps:
        terminalreporter.section("pod tier: container logs")
        for dump in _failure_dumps:
            terminalreporter.write_line(dump)


@pytest.fixture
def fresh_stack(rendered: list[dict[str, Any]], request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A pod of its own, for a test that ends it."""
    yield from _watched_stack(rendered, request)
