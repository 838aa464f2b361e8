"""The newcomer's demo command, `streamproxy check`, and the JSON-lines logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from tests.proxy_fixtures import ROOT, Proxy, Upstream, free_port, free_ports, wait_until


def test_demo_serves_the_echo_app_through_the_proxy(tmp_path: Path) -> None:
    port, admin_port, app_port = free_ports(3)
    log = (tmp_path / "demo.log").open("wb")
    ports = ["--port", str(port), "--admin-port", str(admin_port), "--app-port", str(app_port)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "demo", "--host", "127.0.0.1", *ports],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{admin_port}/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "the demo to be ready")
        echoed = httpx.get(f"http://127.0.0.1:{port}/hello?name=world").json()
        assert echoed["path"] == "/hello" and echoed["query"] == "name=world"
        status = httpx.get(f"http://127.0.0.1:{admin_port}/status").json()
        assert status["counter"] == 1
        children = psutil.Process(demo.pid).children()
        assert children, "the echo app runs as a child process"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
        for child in children:
            wait_until(lambda child=child: not child.is_running(), 15, "the echo app to stop")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        log.close()
    assert "curl" in (tmp_path / "demo.log").read_text()  # it tells the newcomer what to try


def test_check_command_passes_on_2xx_and_fails_otherwise(proxy: Proxy) -> None:
    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sidecar", "check", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert check(proxy.admin_url + "/status", "--expect-json", "counter").returncode == 0
    assert check(proxy.url + "/status/503").returncode == 1
    assert check(proxy.admin_url + "/status", "--expect-json", "nope").returncode == 1
    assert check(f"http://127.0.0.1:{free_port()}/").returncode == 1


def test_logs_are_json_lines_and_the_access_log_is_opt_in(
    proxy_factory: Callable[..., Proxy], upstream: Upstream
) -> None:
    quiet = proxy_factory(upstream.url)
    loud = proxy_factory(upstream.url, "--access-log")
    for proxy in (quiet, loud):
        assert httpx.get(proxy.url + "/logged?x=1").status_code == 200
    wait_until(lambda: '"msg":"request"' in loud.log(), 10, "an access log line")
    for proxy in (quiet, loud):
        proxy.signal(signal.SIGTERM)
        assert proxy.wait(timeout=30) == 0
    for proxy in (quiet, loud):
        for line in proxy.log().splitlines():
            record = json.loads(line)  # every line is one JSON object
            assert {"ts", "level", "logger", "msg"} <= record.keys()
    access = [json.loads(line) for line in loud.log().splitlines() if '"msg":"request"' in line]
    assert access[0]["path"] == "/logged" and access[0]["status"] == 200
    assert access[0]["method"] == "GET" and access[0]["duration_ms"] >= 0
    assert '"msg":"request"' not in quiet.log()
