"""The chart's pod run as local processes: exactly the rendered args and env of the echo app and
the sidecar, the kubelet's probes, a request through the proxy port, the `helm test` pod's
command, and SIGTERM within the grace period. No cluster needed, only the installed package."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import RELEASE, env_map, find, render, sidecar, workload_pod_spec
from tests.proxy_fixtures import free_ports

pytestmark = pytest.mark.slow
FULLNAME = f"{RELEASE}-streamproxy"


def streamproxy() -> str:
    found = shutil.which("streamproxy", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the streamproxy console script is not installed next to this Python")
    return found


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@pytest.fixture
def pod() -> Iterator[dict[str, Any]]:
    proxy_port, admin_port, app_port = free_ports(3)
    docs = render(
        values={
            "proxy": {
                "host": "127.0.0.1",
                "port": proxy_port,
                "adminPort": admin_port,
                "drainSeconds": 0.5,
                "shutdownTimeout": 2,
            },
            "app": {"port": app_port},
            "redis": {"server": {"enabled": False}},  # the in-process counter: no Redis here
        }
    )
    container = sidecar(docs)
    app = workload_pod_spec(docs)["containers"][0]
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROXY_")}
    env = {name: value for name, value in env_map(container).items() if isinstance(value, str)}
    env["POD_NAME"] = "demo-0"  # the Downward API's part
    processes = [
        subprocess.Popen([streamproxy(), *app["args"]], env=base),
        subprocess.Popen([streamproxy(), *container["args"]], env={**base, **env}),
    ]
    try:
        yield {
            "docs": docs,
            "sidecar": container,
            "processes": processes,
            "proxy": proxy_port,
            "admin": admin_port,
            "base_env": base,
        }
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def probe(pod: dict[str, Any], name: str) -> int:
    http_get = pod["sidecar"][name]["httpGet"]
    assert http_get["port"] == pod["admin"]
    status, _ = get(f"http://127.0.0.1:{http_get['port']}{http_get['path']}")
    return status


def test_rendered_pod_serves_probes_traffic_and_helm_test(pod: dict[str, Any]) -> None:
    startup = pod["sidecar"]["startupProbe"]
    deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
    while True:
        try:
            if probe(pod, "startupProbe") == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "startup probe never passed"
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while probe(pod, "readinessProbe") != 200:
        assert time.monotonic() < deadline, "readiness probe never passed"
        time.sleep(0.2)
    assert probe(pod, "livenessProbe") == 200

    status, body = get(f"http://127.0.0.1:{pod['proxy']}/through/the/proxy?x=1")
    assert status == 200
    assert b"/through/the/proxy" in body

    # The `helm test` pod's commands, with the Service's name pointed at this machine.
    local = {
        f"http://{FULLNAME}:80/": f"http://127.0.0.1:{pod['proxy']}/",
        f"http://{FULLNAME}:{pod['admin']}/status": f"http://127.0.0.1:{pod['admin']}/status",
    }
    for container in find(pod["docs"], "Pod")["spec"]["containers"]:
        args = [local.get(arg, arg) for arg in container["args"]]
        check = subprocess.run(
            [streamproxy(), *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=pod["base_env"],
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr

    # SIGTERM: readiness fails at once, then a clean exit well within the grace period.
    proxy = pod["processes"][1]
    grace = workload_pod_spec(pod["docs"])["terminationGracePeriodSeconds"]
    started = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert probe(pod, "readinessProbe") == 503
    assert proxy.wait(timeout=grace) == 0
    assert time.monotonic() - started < grace
