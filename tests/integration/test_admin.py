"""The admin port (CONTRACT §3) against real proxy processes, a real app and a real Redis.

Readiness follows the app within 5 s both ways, Redis never decides it, /metrics is valid
Prometheus text, admin requests are not counted, the admin port can bind elsewhere, and
POST /quitquitquit shuts the process down (loopback only).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.admin import AdminState, _is_loopback, create_admin_app
from sidecar.counter.base import LocalCounter
from sidecar.health import UpstreamHealth
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import ProxyMetrics, make_registry
from sidecar.settings import Settings
from tests.proxy_fixtures import Proxy, Upstream, free_port, wait_until
from tests.redis_fixtures import RedisServer

FLIP_WITHIN = 5.0  # CONTRACT §3: a change in the app's reachability shows within 5 s


def status_code(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def verdicts(proxy: Proxy) -> tuple[int, int]:
    return proxy.status().status_code, httpx.get(proxy.admin_url + "/readyz").status_code


# /status


def test_status_fields_and_types(proxy: Proxy) -> None:
    httpx.get(proxy.url + "/echo")
    response = proxy.status()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    for key in ("counter", "uptime", "upstream", "redis", "pending", "version"):
        assert key in body, key
    assert isinstance(body["counter"], int) and body["counter"] >= 1
    assert isinstance(body["uptime"], (int, float)) and body["uptime"] > 0
    assert body["upstream"] == "up"
    assert body["redis"] == "disabled"
    assert isinstance(body["pending"], int) and body["pending"] == 0
    assert isinstance(body["version"], str) and body["version"]
    later = proxy.status().json()
    assert later["uptime"] >= body["uptime"]


def test_readiness_follows_the_app_down_and_back(
    upstream_factory: Callable[..., Upstream], proxy_factory: Callable[..., Proxy]
) -> None:
    app = upstream_factory()
    proxy = proxy_factory(app.url)
    wait_until(lambda: verdicts(proxy) == (200, 200), FLIP_WITHIN, "ready")
    assert proxy.status().json()["upstream"] == "up"

    app.stop()
    gone = time.monotonic()
    wait_until(lambda: verdicts(proxy) == (503, 503), FLIP_WITHIN, "503 after the app stopped")
    assert time.monotonic() - gone < FLIP_WITHIN
    body = proxy.status().json()
    assert body["upstream"] == "down"
    assert "not ready" in httpx.get(proxy.admin_url + "/readyz").text
    # Liveness is about the process, not the app.
    assert httpx.get(proxy.admin_url + "/livez").status_code == 200

    upstream_factory(port=app.port)
    back = time.monotonic()
    wait_until(lambda: verdicts(proxy) == (200, 200), FLIP_WITHIN, "200 after the app returned")
    assert time.monotonic() - back < FLIP_WITHIN
    assert proxy.status().json()["upstream"] == "up"
    assert httpx.get(proxy.url + "/echo").status_code == 200


def test_redis_state_disabled_up_down_and_never_decides_readiness(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], redis_server: RedisServer
) -> None:
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    wait_until(lambda: proxy.status().json()["redis"] == "up", 10, "redis up")
    assert proxy.status().status_code == 200

    redis_server.stop()
    httpx.get(proxy.url + "/echo")  # something to flush
    wait_until(lambda: proxy.status().json()["redis"] == "down", 10, "redis down")
    response = proxy.status()
    assert response.status_code == 200, "Redis must never decide readiness"
    assert httpx.get(proxy.admin_url + "/readyz").status_code == 200
    assert response.json()["pending"] >= 1
    assert httpx.get(proxy.url + "/echo").status_code == 200

    redis_server.start()
    wait_until(lambda: proxy.status().json()["redis"] == "up", 15, "redis back up")
    wait_until(lambda: proxy.status().json()["pending"] == 0, 10, "pending flushed")


def test_every_pod_shows_the_shared_total(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], redis_server: RedisServer
) -> None:
    first = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    second = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    for _ in range(3):
        assert httpx.get(first.url + "/echo").status_code == 200
    for _ in range(2):
        assert httpx.get(second.url + "/echo").status_code == 200
    for pod in (first, second):
        # Flushes within ~0.2 s, the shared total is re-read within ~1 s.
        wait_until(lambda pod=pod: pod.status().json()["counter"] == 5, 5, "the shared total")
    with redis_server.client() as client:
        assert int(client.get("streamproxy:requests") or 0) == 5


def test_livez(proxy: Proxy) -> None:
    response = httpx.get(proxy.admin_url + "/livez")
    assert response.status_code == 200


def test_readyz_matches_status(proxy: Proxy) -> None:
    assert verdicts(proxy) == (200, 200)
    assert len(httpx.get(proxy.admin_url + "/readyz").content) < 100


def test_unknown_admin_path_and_method(proxy: Proxy) -> None:
    assert httpx.get(proxy.admin_url + "/nope").status_code == 404
    assert httpx.get(proxy.admin_url + "/quitquitquit").status_code == 405


# /metrics


def _families(proxy: Proxy) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    response = httpx.get(proxy.admin_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = [(s.name, dict(s.labels), s.value) for s in family.samples]
    return families


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    matching = [v for n, lbls, v in samples if n == name and lbls == labels]
    assert len(matching) == 1, (name, labels, samples)
    return matching[0]


def test_metrics_is_prometheus_text_with_the_contract_series(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url, "--read-timeout", "0.5")
    assert httpx.get(proxy.url + "/echo").status_code == 200
    assert httpx.get(proxy.url + "/echo").status_code == 200
    assert httpx.post(proxy.url + "/status/404", content=b"x" * 1000).status_code == 404
    assert httpx.get(proxy.url + "/silent", timeout=10).status_code == 504
    streamed = httpx.get(proxy.url + "/stream?bytes=100000")
    assert len(streamed.content) == 100_000

    families = _families(proxy)
    requests = families["streamproxy_requests"]
    assert _value(requests, "streamproxy_requests_total", method="GET", code="2xx") == 3
    assert _value(requests, "streamproxy_requests_total", method="POST", code="4xx") == 1
    assert _value(requests, "streamproxy_requests_total", method="GET", code="5xx") == 1

    latency = families["streamproxy_request_duration_seconds"]
    assert _value(latency, "streamproxy_request_duration_seconds_count") == 5
    assert _value(latency, "streamproxy_request_duration_seconds_bucket", le="+Inf") == 5
    assert _value(latency, "streamproxy_request_duration_seconds_sum") >= 0.5  # the 504

    assert _value(families["streamproxy_request_bytes"], "streamproxy_request_bytes_total") == 1000
    response_bytes = _value(
        families["streamproxy_response_bytes"], "streamproxy_response_bytes_total"
    )
    assert response_bytes >= 100_000

    errors = families["streamproxy_upstream_errors"]
    assert _value(errors, "streamproxy_upstream_errors_total", reason="read_timeout") == 1
    assert _value(errors, "streamproxy_upstream_errors_total", reason="connect_refused") == 0

    assert "streamproxy_counter_flushes" in families
    assert _value(families["streamproxy_counter_pending"], "streamproxy_counter_pending") == 0


def test_metrics_counter_flushes_with_redis(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], redis_server: RedisServer
) -> None:
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    for _ in range(3):
        assert httpx.get(proxy.url + "/echo").status_code == 200

    def flushed() -> bool:
        families = _families(proxy)
        flushes = _value(
            families["streamproxy_counter_flushes"], "streamproxy_counter_flushes_total"
        )
        pending = _value(families["streamproxy_counter_pending"], "streamproxy_counter_pending")
        return flushes >= 1 and pending == 0

    wait_until(flushed, 10, "a counter flush")
    with redis_server.client() as client:
        assert int(client.get("streamproxy:requests") or 0) == 3


# Counting


def test_admin_requests_are_not_counted(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url)
    for path in ("/status", "/livez", "/readyz", "/metrics", "/nope"):
        for _ in range(3):
            httpx.get(proxy.admin_url + path)
    assert proxy.status().json()["counter"] == 0
    assert httpx.get(proxy.url + "/echo").status_code == 200
    assert proxy.status().json()["counter"] == 1


# Hostile clients on the admin port


def test_endless_header_on_the_admin_port_is_cut_off(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url)
    rss_before = proxy.rss()
    sent = 0
    with socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\nX-Endless: ")
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"e" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 16 * 1024 * 1024, "the admin port read a 64 MiB header line"
    growth = proxy.rss() - rss_before
    assert growth < 16 * 1024 * 1024, f"proxy RSS grew by {growth} bytes"
    assert proxy.status().status_code == 200


# Binding


def test_admin_host_binds_the_admin_port_elsewhere(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url, "--admin-host", "127.0.0.2", wait_ready=False)
    admin_elsewhere = f"http://127.0.0.2:{proxy.admin_port}"

    def started() -> bool:
        assert proxy.proc.poll() is None, proxy.log()
        return status_code(admin_elsewhere + "/livez") == 200

    wait_until(started, 20, "the admin port on 127.0.0.2")
    assert httpx.get(admin_elsewhere + "/status").status_code == 200
    # The admin port is not on --host, and the proxy port stays on --host.
    assert status_code(proxy.admin_url + "/livez") is None
    assert httpx.get(proxy.url + "/echo").status_code == 200
    assert status_code(f"http://127.0.0.2:{proxy.port}/echo") is None


def test_admin_port_binds_to_host_by_default(proxy: Proxy) -> None:
    assert status_code(f"http://127.0.0.2:{proxy.admin_port}/livez") is None
    assert httpx.get(proxy.admin_url + "/livez").status_code == 200


# /quitquitquit


def test_quitquitquit_from_loopback_answers_then_exits_zero(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url)
    assert httpx.get(proxy.url + "/echo").status_code == 200
    started = time.monotonic()
    response = httpx.post(proxy.admin_url + "/quitquitquit", timeout=5)
    assert response.status_code == 200
    assert time.monotonic() - started < 2.0, "it must answer at once"
    assert proxy.wait(timeout=15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()


def test_quitquitquit_on_an_ipv6_admin_socket_accepts_ipv4_loopback(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    """An IPv6 listener (as with --host ::) sees 127.0.0.1 as ::ffff:127.0.0.1: still loopback."""
    proxy = proxy_factory(upstream.url, "--admin-host", "::ffff:127.0.0.1")
    response = httpx.post(proxy.admin_url + "/quitquitquit", timeout=5)
    assert response.status_code == 200, response.text
    assert proxy.wait(timeout=15) == 0


def test_quitquitquit_from_another_host_is_forbidden_in_process() -> None:
    """No non-loopback address may be used here: drive the admin app with a fake client."""
    import asyncio

    async def scenario() -> None:
        settings = Settings(upstream=f"http://127.0.0.1:{free_port()}")
        counter = LocalCounter()
        health = UpstreamHealth(settings)
        lifecycle = Lifecycle()
        registry = make_registry(ProxyMetrics(), counter, lambda: True, lambda: True)
        app = create_admin_app(AdminState(counter, health, lifecycle, registry))
        outside = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=outside, base_url="http://admin") as client:
            response = await client.post("/quitquitquit")
        assert response.status_code == 403
        assert not lifecycle.draining
        inside = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=inside, base_url="http://admin") as client:
            response = await client.post("/quitquitquit")
        assert response.status_code == 200
        assert lifecycle.draining

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4 loopback client on a dual-stack socket
        ("192.0.2.10", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("localhost", False),  # a name is not an address: never trusted
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert _is_loopback(host) is loopback
