"""Process lifecycle (CONTRACT §1 configuration, §4 SIGTERM) with real processes.

SIGTERM: readiness turns 503 at once, serving goes on for --drain-seconds, then listeners and
idle keep-alive connections close, in-flight requests finish (bounded by --shutdown-timeout),
pending counts are flushed to Redis, exit 0. Invalid configuration exits 2 before binding.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.proxy_fixtures import ROOT, Proxy, Upstream, free_port, free_ports, wait_until
from tests.redis_fixtures import RedisServer

EXIT_TIMEOUT = 20.0


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def status_code(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


# SIGTERM with a request in flight


def test_sigterm_drains_then_closes_and_finishes_in_flight(
    upstream_factory: Callable[..., Upstream], proxy_factory: Callable[..., Proxy]
) -> None:
    app = upstream_factory()
    drain = 3.0
    proxy = proxy_factory(app.url, "--drain-seconds", str(drain), "--shutdown-timeout", "30")
    total = 64 * 1024 * 1024  # far more than the socket buffers between app and client

    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{proxy.url}/stream?bytes={total}") as streaming,
    ):
        assert streaming.status_code == 200
        chunks = streaming.iter_raw(256 * 1024)
        received = len(next(chunks))
        # The client reads no further for now: the app is held back, the request in flight.
        wait_until(lambda: int(app.stats()["stream_sent"]) > 0, 10, "the stream to start")  # type: ignore[call-overload]
        assert app.stats()["stream_done"] is False

        sent_at = time.monotonic()
        proxy.signal(signal.SIGTERM)
        # "At once": well inside the drain period, with room for a loaded machine.
        wait_until(lambda: proxy.status().status_code == 503, 1.5, "readiness 503 at once")
        assert proxy.status().json()["upstream"] == "up"  # 503 for draining, not for the app
        assert httpx.get(proxy.admin_url + "/readyz").status_code == 503
        assert httpx.get(proxy.admin_url + "/livez").status_code == 200

        # Still serving new connections while draining.
        with httpx.Client(timeout=5) as fresh:
            assert fresh.get(proxy.url + "/echo").status_code == 200
        assert time.monotonic() - sent_at < drain, "the check above came too late to count"

        # Then the listener closes, not before the drain period.
        wait_until(lambda: not port_open(proxy.port), drain + 5, "the listener to close")
        closed_after = time.monotonic() - sent_at
        assert closed_after >= drain - 0.2, f"listener closed after {closed_after:.2f}s"
        assert proxy.proc.poll() is None, "exited with a request in flight"
        assert app.stats()["stream_done"] is False

        # The in-flight response completes in full.
        for chunk in chunks:
            received += len(chunk)
    assert received == total
    assert proxy.wait(timeout=EXIT_TIMEOUT) == 0


def start_hanging_request(url: str) -> tuple[threading.Thread, list[object]]:
    """GET `url` from a thread; the outcome (status code or exception) lands in the list."""
    outcome: list[object] = []

    def request() -> None:
        try:
            outcome.append(httpx.get(url, timeout=60).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    return thread, outcome


def test_shutdown_timeout_bounds_a_request_that_never_finishes(
    upstream_factory: Callable[..., Upstream], proxy_factory: Callable[..., Proxy]
) -> None:
    app = upstream_factory()
    # A fraction on purpose: 2.9 s must not become 2 s.
    drain, bound = 0.5, 2.9
    proxy = proxy_factory(app.url, "--drain-seconds", str(drain), "--shutdown-timeout", str(bound))
    client, outcome = start_hanging_request(proxy.url + "/hang")
    wait_until(lambda: app.stats()["hanging"] == 1, 10, "the request to reach the app")

    sent_at = time.monotonic()
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(timeout=drain + bound + 15) == 0
    took = time.monotonic() - sent_at
    assert took >= drain + bound - 0.3, f"exited after {took:.2f}s: in-flight not waited for"
    assert took < drain + bound + 5, f"exited after {took:.2f}s"
    client.join(10)
    # The client sees its connection end: never a made-up response that looks like the app's.
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome
    # The app's request was abandoned, not left hanging.
    wait_until(lambda: app.stats()["hanging"] == 0, 5, "the app to see the disconnect")
    assert "Traceback" not in proxy.log()


def test_fractional_shutdown_timeout_is_honoured(
    upstream_factory: Callable[..., Upstream], proxy_factory: Callable[..., Proxy]
) -> None:
    """0.5 s means 0.5 s (not "0, i.e. no limit at all")."""
    app = upstream_factory()
    proxy = proxy_factory(app.url, "--shutdown-timeout", "0.5")
    client, outcome = start_hanging_request(proxy.url + "/hang")
    wait_until(lambda: app.stats()["hanging"] == 1, 10, "the request to reach the app")
    sent_at = time.monotonic()
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(timeout=15) == 0
    assert time.monotonic() - sent_at < 5
    client.join(10)
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome


def test_idle_keepalive_connections_are_closed_at_shutdown(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url, "--drain-seconds", "0.5")
    idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    with idle:
        idle.sendall(b"GET /status/200 HTTP/1.1\r\nHost: a\r\n\r\n")
        response = b""
        while not response.endswith(b"status"):
            chunk = idle.recv(65536)
            assert chunk, "closed before the response"
            response += chunk
        assert response.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in response.lower()

        sent_at = time.monotonic()
        proxy.signal(signal.SIGTERM)
        idle.settimeout(10)
        assert idle.recv(1) == b"", "the idle connection was not closed"
        # Well before the 75 s keep-alive timeout: shutdown closed it.
        assert time.monotonic() - sent_at < 5
    assert proxy.wait(timeout=EXIT_TIMEOUT) == 0


def test_sigterm_flushes_pending_counts_to_redis(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], redis_server: RedisServer
) -> None:
    # A flush interval far beyond the test: only the shutdown flush can write the counts.
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url, "--flush-interval", "600")
    requests = 25
    with httpx.Client(timeout=10) as client:
        for index in range(requests):
            assert client.get(f"{proxy.url}/echo?{index}").status_code == 200
    with redis_server.client() as redis:
        assert redis.get("streamproxy:requests") is None, "flushed early: test can't tell"
        proxy.signal(signal.SIGTERM)
        assert proxy.wait(timeout=EXIT_TIMEOUT) == 0
        assert int(redis.get("streamproxy:requests") or 0) == requests


def test_sigterm_with_redis_down_still_exits_zero_in_bounded_time(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], redis_server: RedisServer
) -> None:
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    redis_server.stop()
    for _ in range(3):
        assert httpx.get(proxy.url + "/echo", timeout=10).status_code == 200
    wait_until(lambda: proxy.status().json()["pending"] >= 3, 10, "counts pending")
    sent_at = time.monotonic()
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(timeout=EXIT_TIMEOUT) == 0
    assert time.monotonic() - sent_at < 10, "the final flush must be bounded"
    assert "unflushed" in proxy.log()


def test_sigint_also_shuts_down_cleanly(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url)
    proxy.signal(signal.SIGINT)
    assert proxy.wait(timeout=EXIT_TIMEOUT) == 0


# Configuration


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROXY_")}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "run", *args],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def occupied_ports() -> Iterator[tuple[int, int]]:
    """Two ports we hold: a process that tried to bind them would fail with exit 1, not 2."""
    socks = [socket.socket(), socket.socket()]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
    yield int(socks[0].getsockname()[1]), int(socks[1].getsockname()[1])
    for sock in socks:
        sock.close()


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        (["--port", "70000"], {}, "--port"),
        (["--admin-port", "0"], {}, "--admin-port"),
        (["--upstream", "ftp://x"], {}, "--upstream"),
        (["--upstream", "http://"], {}, "--upstream"),
        (["--read-timeout", "-1"], {}, "--read-timeout"),
        (["--drain-seconds", "soon"], {}, "--drain-seconds"),
        (["--redis-url", "http://redis:6379"], {}, "--redis-url"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--bogus-flag", "1"], {}, "--bogus-flag"),
        ([], {"STREAMPROXY_PORT": "abc"}, "STREAMPROXY_PORT"),
        ([], {"STREAMPROXY_READ_TIMEOUT": "-5"}, "STREAMPROXY_READ_TIMEOUT"),
    ],
)
def test_invalid_configuration_exits_2_before_binding(
    occupied_ports: tuple[int, int], flags: list[str], env: dict[str, str], named: str
) -> None:
    # Both ports are taken by us: had it bound anything first, it would exit 1 "cannot bind".
    port, admin_port = occupied_ports
    base = ["--host", "127.0.0.1", "--upstream", "http://127.0.0.1:9"]
    base += ["--admin-port", str(admin_port)]
    if "STREAMPROXY_PORT" not in env:  # the flag would win over the variable under test
        base += ["--port", str(port)]
    result = run_cli(*base, *flags, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, result.stderr
    assert named in result.stderr, result.stderr
    assert "cannot bind" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_admin_port_equal_to_proxy_port_is_refused() -> None:
    """Both listeners on one port would split the traffic between proxy and admin at random."""
    port = free_port()
    result = run_cli(
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(port),
        "--upstream", "http://127.0.0.1:9",
    )  # fmt: skip
    assert result.returncode in (1, 2), result.stderr
    assert "--admin-port" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr
    assert not port_open(port)


def _start_raw(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROXY_")}
    child_env.update(env)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar", "run", *args],
            cwd=ROOT,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def raw_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_flags_win_over_environment(
    upstream: Upstream, raw_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    env_port, flag_port, admin_port = free_ports(3)
    env = {
        "STREAMPROXY_PORT": str(env_port),
        "STREAMPROXY_HOST": "127.0.0.1",
        "STREAMPROXY_UPSTREAM": upstream.url,
        "STREAMPROXY_ADMIN_PORT": str(admin_port),
        "STREAMPROXY_READ_TIMEOUT": "0.3",
    }
    proc = _start_raw(["--port", str(flag_port)], env, tmp_path / "proxy.log")
    raw_processes.append(proc)

    def started() -> bool:
        assert proc.poll() is None, (tmp_path / "proxy.log").read_text()
        return status_code(f"http://127.0.0.1:{admin_port}/livez") == 200

    wait_until(started, 20, "the proxy configured from the environment")
    wait_until(lambda: port_open(flag_port), 5, "the flag's port")
    assert not port_open(env_port), "the environment's port won over the flag"
    # The environment still supplies what no flag overrides.
    response = httpx.get(f"http://127.0.0.1:{flag_port}/silent", timeout=10)
    assert response.status_code == 504
    assert response.headers["x-streamproxy-error"] == "read_timeout"


def test_starts_while_app_and_redis_are_down(
    upstream_factory: Callable[..., Upstream],
    proxy_factory: Callable[..., Proxy],
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    app_port = free_port()
    redis = redis_server_factory(start=False)
    proxy = proxy_factory(f"http://127.0.0.1:{app_port}", "--redis-url", redis.url)
    body = proxy.status().json()
    assert proxy.status().status_code == 503
    assert body["upstream"] == "down"
    assert body["redis"] == "down"
    refused = httpx.get(proxy.url + "/echo", timeout=10)
    assert refused.status_code == 502
    assert refused.headers["x-streamproxy-error"] == "connect_refused"

    upstream_factory(port=app_port)
    wait_until(lambda: proxy.status().status_code == 200, 5, "ready once the app is up")
    assert httpx.get(proxy.url + "/echo", timeout=10).status_code == 200

    redis.start()
    wait_until(lambda: proxy.status().json()["redis"] == "up", 15, "redis up")
    # Both requests count (the 502 too), flushed once Redis arrived.
    with redis.client() as client:
        wait_until(lambda: int(client.get("streamproxy:requests") or 0) == 2, 10, "counts flushed")
    assert proxy.proc.poll() is None
