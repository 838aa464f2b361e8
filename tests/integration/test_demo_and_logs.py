"""The newcomer's demo command, `streamproxy check`, and the JSON-lines logs."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import httpx
import psutil
import pytest

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

        def live() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{admin_port}/livez").status_code == 200
            except httpx.HTTPError:
                return False

        # As a newcomer does: curl as soon as the proxy is up. The demo starts the proxy only
        # once the echo app listens, so the first request is answered by the app, not a 502.
        wait_until(live, 30, "the demo's proxy to be up")
        first = httpx.get(f"http://127.0.0.1:{port}/hello?name=world")
        assert first.status_code == 200, first.text
        echoed = first.json()
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
            # A failed test must not leave the echo app behind: SIGKILL would orphan it.
            for child in psutil.Process(demo.pid).children():
                child.kill()
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


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` requests, then 200: a Service just coming up."""

    def do_GET(self) -> None:
        server = cast(_FlakyServer, self.server)
        server.requests += 1
        status = 503 if server.requests <= server.failures else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _FlakyServer(http.server.ThreadingHTTPServer):
    requests = 0
    failures = 0


@pytest.fixture
def flaky() -> Iterator[_FlakyServer]:
    server = _FlakyServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_check_retry_for_asks_again_until_the_url_passes(flaky: _FlakyServer) -> None:
    url = f"http://127.0.0.1:{flaky.server_address[1]}/"

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sidecar", "check", *args, url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    flaky.failures = 2
    passed = check("--retry-for", "30")
    assert passed.returncode == 0, passed.stderr
    assert flaky.requests == 3
    assert passed.stderr.count("retry ") == 2

    # Without --retry-for: one request, and its failure is final.
    flaky.requests, flaky.failures = 0, 1
    assert check().returncode == 1
    assert flaky.requests == 1

    # A URL that never passes fails once the retry time is up, not before and not never.
    flaky.requests, flaky.failures = 0, 10**6
    started = time.monotonic()
    failed = check("--retry-for", "1.2")
    assert failed.returncode == 1
    assert "FAIL " in failed.stderr
    assert 2 <= flaky.requests <= 4
    assert time.monotonic() - started < 30


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
