"""The chart's pod, running: probes, traffic, the shared count, isolation, security.

Tests run in file order against one pod; the one that stops the app comes last.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from tests.pod.conftest import APP, REDIS, SIDECAR, Stack, container_port
from tests.pod.kubepod import (
    docker,
    is_native_sidecar,
    request,
    run_probe,
    tcp_reaches_listener,
    wait_probe,
)


def status(stack: Stack) -> tuple[int, dict[str, Any]]:
    code, _, body = request(stack.admin_port(), "GET", "/status", timeout=5)
    return code, json.loads(body)


def wait_settled(stack: Stack, deadline: float = 10) -> int:
    """The Redis count once nothing is pending and it stopped moving."""
    end = time.monotonic() + deadline
    last = -1
    while time.monotonic() < end:
        _, body = status(stack)
        count = stack.redis_count()
        if body.get("pending") == 0 and count == last:
            return count
        last = count
        time.sleep(0.5)
    raise AssertionError(f"count never settled within {deadline}s (last {last}, status {body})")


# Probes, as the kubelet runs them


def test_sidecar_is_a_native_sidecar_with_the_three_probes(stack: Stack) -> None:
    spec = stack.sidecar_spec()
    assert is_native_sidecar(spec), "the chart's default is a native sidecar"
    admin = container_port(spec, "proxy-admin")
    assert spec["readinessProbe"]["httpGet"]["path"] == "/status"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/livez"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[kind]["httpGet"]["port"] in (admin, "proxy-admin"), kind


def test_startup_probe_passed_within_the_kubelets_budget(stack: Stack) -> None:
    probe = stack.sidecar_spec()["startupProbe"]
    budget = (
        probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]
    )
    took = stack.startup_seconds[SIDECAR]
    assert took < budget, f"startup took {took:.1f}s of a {budget}s budget"


def test_readiness_passes_on_status_once_app_and_redis_answer(stack: Stack) -> None:
    spec = stack.sidecar_spec()
    probe = spec["readinessProbe"]
    wait_probe(stack.pod, spec, probe, budget=15)
    result = run_probe(stack.pod, spec, probe)
    assert result.ok, result.detail
    assert result.seconds < probe.get("timeoutSeconds", 1), "answer slower than timeoutSeconds"
    code, body = status(stack)
    assert code == 200
    assert body["upstream"] == "up"
    assert body["redis"] == "up"


def test_liveness_passes_quickly(stack: Stack) -> None:
    spec = stack.sidecar_spec()
    probe = spec["livenessProbe"]
    for _ in range(3):
        result = run_probe(stack.pod, spec, probe)
        assert result.ok, result.detail
        assert result.seconds < probe.get("timeoutSeconds", 1)


def test_redis_probes_pass(stack: Stack) -> None:
    spec = stack.redis.container(REDIS)
    for kind in ("readinessProbe", "livenessProbe"):
        if kind in spec:
            result = run_probe(stack.redis, spec, spec[kind])
            assert result.ok, f"{kind}: {result.detail}"


# Traffic through the sidecar


def test_traffic_through_the_sidecar_reaches_the_app(stack: Stack) -> None:
    port = stack.proxy_port()
    code, headers, body = request(port, "GET", "/a/b%2Fc//d?x=1&y=%20z&x=2")
    assert code == 200, body[:300]
    echo = json.loads(body)
    assert echo["raw_path"] == "/a/b%2Fc//d"
    assert echo["query"] == "x=1&y=%20z&x=2"
    sent = {name.lower(): value for name, value in echo["headers"]}
    assert "x-forwarded-for" in sent
    assert "x-streamproxy-error" not in headers

    payload = bytes(range(256)) * 4096  # 1 MiB, sent with the headers in one write
    for attempt in range(5):  # how TCP splits it varies: once is not enough to trust it
        code, headers, body = request(port, "POST", "/upload", body=payload)
        assert code == 200, (attempt, headers.get("x-streamproxy-error"), body[:200])
        echo = json.loads(body)
        assert echo["body_bytes"] == len(payload)
        assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()

    code, _, body = request(port, "GET", "/stream?bytes=3000001", timeout=30)
    assert code == 200
    assert len(body) == 3000001


def test_redis_count_is_exact(stack: Stack) -> None:
    before = wait_settled(stack)
    port = stack.proxy_port()
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
    sent = 120
    for i in range(sent):
        method = methods[i % len(methods)]
        code, _, _ = request(port, method, f"/count/{i}", body=b"x" * (i % 7) or None)
        assert code == 200, (method, code)
    deadline = time.monotonic() + 10
    while stack.redis_count() != before + sent and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.redis_count() == before + sent
    time.sleep(1.5)  # nothing may be counted twice by a later flush
    assert stack.redis_count() == before + sent
    code, body = status(stack)
    assert code == 200
    assert body["counter"] == before + sent
    assert body["pending"] == 0


# The pod's boundaries


def listening(stack: Stack) -> set[tuple[str, int]]:
    """(address, port) of every TCP listener in the pod's network namespace."""
    out = stack.pod.exec(SIDECAR, "cat", "/proc/net/tcp", "/proc/net/tcp6")
    assert out.returncode == 0, out.stderr
    found = set()
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
            continue
        address, port = fields[1].split(":")
        if len(address) == 8:
            raw = bytes.fromhex(address)[::-1]
            found.add((".".join(str(b) for b in raw), int(port, 16)))
        else:
            words = [bytes.fromhex(address[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
            found.add(("ipv6:" + "".join(words), int(port, 16)))
    return found


def test_app_port_is_not_reachable_from_outside_the_pod(stack: Stack) -> None:
    app_port = container_port(stack.pod.container(APP), "app")
    listeners = listening(stack)
    app_binds = {addr for addr, port in listeners if port == app_port}
    assert app_binds, f"nothing listens on {app_port}: {sorted(listeners)}"
    loopback = {"127.0.0.1", "ipv6:" + "0" * 31 + "1"}
    assert app_binds <= loopback, f"app port {app_port} bound beyond loopback: {app_binds}"
    # From outside the namespace (the engine's proxy, where the node or another pod would be):
    # the sidecar's port answers, the app's does not.
    ok, detail = tcp_reaches_listener(stack.proxy_port(), timeout=2)
    assert ok, f"proxy port unreachable from outside: {detail}"
    ok, detail = tcp_reaches_listener(stack.pod.host_port(app_port), timeout=2)
    assert not ok, f"app port {app_port} reachable from outside the pod: {detail}"


@pytest.mark.parametrize(
    ("pod_attr", "container", "uid"),
    [("pod", SIDECAR, 10001), ("pod", APP, 10001), ("redis", REDIS, 999)],
)
def test_containers_run_non_root_read_only_without_capabilities(
    stack: Stack, pod_attr: str, container: str, uid: int
) -> None:
    pod = getattr(stack, pod_attr)
    name = pod.container_name(container)
    out = pod.exec(container, "cat", "/proc/1/status")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    assert fields["Uid"].split() == [str(uid)] * 4
    assert fields["CapEff"].strip() == "0" * 16
    assert fields["CapPrm"].strip() == "0" * 16
    assert fields["NoNewPrivs"].strip() == "1"
    config = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", name).stdout)
    assert config["ReadonlyRootfs"] is True
    # Even root in that container cannot write the root filesystem.
    probe = docker("exec", "-u", "0", name, "touch", "/pod-tier-write-probe", check=False)
    assert probe.returncode != 0
    assert "Read-only file system" in probe.stderr


_UNCOMPILED = """
import importlib.util, os, sys
import sidecar.cli, sidecar.server, sidecar.demo
missing = sorted(
    m.__file__ for m in list(sys.modules.values())
    if (getattr(m, "__file__", None) or "").endswith(".py")
    and not os.path.exists(importlib.util.cache_from_source(m.__file__))
)
print(len(sys.modules), *missing, sep="\\n")
"""


def test_bytecode_is_compiled_into_the_image(stack: Stack) -> None:
    # A read-only root cannot cache bytecode: every module the proxy imports must ship it.
    out = stack.pod.exec(SIDECAR, "python3", "-c", _UNCOMPILED)
    assert out.returncode == 0, out.stderr
    loaded, *missing = out.stdout.split()
    assert int(loaded) > 100
    assert missing == []


def test_redis_outage_neither_fails_readiness_nor_loses_counts(stack: Stack) -> None:
    spec = stack.sidecar_spec()
    before = wait_settled(stack)
    redis = stack.redis.container_name(REDIS)
    port = stack.proxy_port()
    sent = 30
    docker("pause", redis)  # frozen: connections hang, the worst case for a client
    try:
        for i in range(sent):
            started = time.monotonic()
            code, _, _ = request(port, "GET", f"/redis-frozen/{i}", timeout=5)
            assert code == 200
            assert time.monotonic() - started < 1, "proxying slowed down by a frozen Redis"
            time.sleep(0.05)
        result = run_probe(stack.pod, spec, spec["readinessProbe"])
        assert result.ok, f"Redis decided readiness: {result.detail}"
    finally:
        docker("unpause", redis)
    deadline = time.monotonic() + 20
    while stack.redis_count() != before + sent and time.monotonic() < deadline:
        time.sleep(0.25)
    assert stack.redis_count() == before + sent, "counts lost or doubled across the outage"
    time.sleep(1.5)
    assert stack.redis_count() == before + sent, "counts doubled after the outage"


# Last: this one stops the app.


def test_readiness_follows_the_app_and_liveness_does_not(stack: Stack) -> None:
    spec = stack.sidecar_spec()
    app = stack.pod.container_name(APP)
    before = wait_settled(stack)
    docker("kill", app)
    try:
        took, _ = wait_probe(stack.pod, spec, spec["readinessProbe"], want=False, budget=10)
        assert took <= 5 + spec["readinessProbe"]["periodSeconds"], took
        assert status(stack)[0] == 503
        live = run_probe(stack.pod, spec, spec["livenessProbe"])
        assert live.ok, f"liveness failed while only the app was down: {live.detail}"
        code, headers, _ = request(stack.proxy_port(), "GET", "/while-down")
        assert code == 502
        assert "x-streamproxy-error" in headers
    finally:
        docker("start", app)
    wait_probe(stack.pod, spec, spec["readinessProbe"], budget=15)
    code, _, _ = request(stack.proxy_port(), "GET", "/after")
    assert code == 200
    deadline = time.monotonic() + 5
    while stack.redis_count() != before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.redis_count() == before + 2, "the 502 and the request after both count once"
