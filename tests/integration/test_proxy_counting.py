"""CONTRACT §4 through real proxy processes and a real redis-server."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from tests.proxy_fixtures import Proxy, Upstream, free_port, wait_until
from tests.redis_fixtures import RedisServer

KEY = "streamproxy:requests"


def redis_count(redis_server: RedisServer, key: str = KEY) -> int:
    value = redis_server.client().get(key)
    return int(value) if value is not None else 0


def test_every_outcome_is_counted_once(
    proxy_factory: Callable[..., Proxy], upstream: Upstream, redis_server: RedisServer
) -> None:
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url, "--read-timeout", "0.5")
    refused = proxy_factory(f"http://127.0.0.1:{free_port()}", "--redis-url", redis_server.url)
    with httpx.Client(timeout=30) as client:
        assert client.get(proxy.url + "/echo").status_code == 200
        assert client.get(proxy.url + "/status/404").status_code == 404
        assert client.get(proxy.url + "/silent").status_code == 504
        assert client.get(refused.url + "/x").status_code == 502
        # Admin requests are not counted.
        for _ in range(5):
            client.get(proxy.admin_url + "/status")
            client.get(proxy.admin_url + "/metrics")
    wait_until(lambda: redis_count(redis_server) == 4, 10, "4 requests counted in Redis")
    # The shared total (both proxies' requests) is read live, cached for at most ~1 s.
    wait_until(lambda: proxy.status().json()["counter"] == 4, 5, "/status to show 4")
    status = proxy.status().json()
    assert status["redis"] == "up"
    assert status["pending"] == 0


def test_two_proxies_share_one_key(
    proxy_factory: Callable[..., Proxy], upstream: Upstream, redis_server: RedisServer
) -> None:
    first = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    second = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    with httpx.Client() as client:
        for i in range(30):
            target = first if i % 3 else second
            assert client.get(target.url + "/echo").status_code == 200
    wait_until(lambda: redis_count(redis_server) == 30, 10, "30 requests in Redis")
    wait_until(
        lambda: first.status().json()["counter"] == 30 == second.status().json()["counter"],
        5,
        "both pods to show the shared total",
    )


def test_redis_stopped_and_restarted_mid_traffic_loses_and_doubles_nothing(
    proxy_factory: Callable[..., Proxy], upstream: Upstream, redis_server: RedisServer
) -> None:
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url)
    sent = 0
    failures = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal sent, failures
        with httpx.Client(timeout=10) as client:
            for _ in range(3000):  # bounded
                if stop.is_set():
                    return
                failures += client.get(proxy.url + "/echo").status_code != 200
                sent += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        wait_until(lambda: sent >= 100, 30, "traffic to flow")
        redis_server.stop()
        during_outage = sent
        wait_until(lambda: sent >= during_outage + 200, 30, "traffic during the outage")
        wait_until(lambda: proxy.status().json()["redis"] == "down", 10, "the outage to show")
        status = proxy.status()
        assert status.status_code == 200  # Redis never decides readiness
        assert status.json()["pending"] > 0
        redis_server.start()
        restarted_at = sent
        wait_until(lambda: sent >= restarted_at + 100, 30, "traffic after the restart")
    finally:
        stop.set()
        worker.join(30)
    assert failures == 0
    wait_until(lambda: redis_count(redis_server) == sent, 15, f"exactly {sent} in Redis")
    wait_until(lambda: proxy.status().json()["pending"] == 0, 5, "nothing pending")


def test_sigterm_flushes_pending_counts(
    proxy_factory: Callable[..., Proxy], upstream: Upstream, redis_server: RedisServer
) -> None:
    proxy = proxy_factory(upstream.url, "--redis-url", redis_server.url, "--flush-interval", "30")
    with httpx.Client() as client:
        for _ in range(25):
            assert client.get(proxy.url + "/echo").status_code == 200
    assert proxy.status().json()["pending"] == 25  # nothing flushed yet: interval is 30 s
    proxy.signal(15)
    assert proxy.wait(timeout=30) == 0
    assert redis_count(redis_server) == 25
