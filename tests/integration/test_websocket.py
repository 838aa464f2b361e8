"""WebSocket upgrades through the proxy (CONTRACT §2 "WebSocket upgrades", §4 counting).

A real client (`websockets.sync`) talks to the real proxy process, which relays to the test
app's `/ws` echo. Text stays text, binary stays binary, subprotocols and close codes cross
the proxy in both directions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.proxy_fixtures import Proxy, Upstream, free_port, wait_until

TIMEOUT = 10.0


def ws_url(proxy: Proxy, path: str = "/ws") -> str:
    return proxy.url.replace("http://", "ws://") + path


def websocket_requests(proxy: Proxy) -> dict[str, float]:
    """streamproxy_requests_total for method WEBSOCKET, by status class."""
    text = httpx.get(proxy.admin_url + "/metrics", timeout=5).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamproxy_requests_total" and (
                sample.labels.get("method") == "WEBSOCKET"
            ):
                found[sample.labels["code"]] = sample.value
    return found


def test_text_and_binary_echo(proxy: Proxy) -> None:
    payload = os.urandom(200_000)
    with connect(ws_url(proxy, "/ws?x=1"), open_timeout=TIMEOUT) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=TIMEOUT) == "héllo"
        ws.send(payload)
        echoed = ws.recv(timeout=TIMEOUT)
        assert isinstance(echoed, bytes)
        assert echoed == payload
        ws.send(b"")
        assert ws.recv(timeout=TIMEOUT) == b""
        for index in range(20):
            ws.send(f"message {index}")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(20)] == [f"message {i}" for i in range(20)]


def test_subprotocol_is_negotiated_by_the_app(proxy: Proxy) -> None:
    with connect(
        ws_url(proxy),
        subprotocols=["chat.v2", "chat.v1"],
        open_timeout=TIMEOUT,  # type: ignore[list-item]
    ) as ws:
        # The echo app picks the first subprotocol offered.
        assert ws.subprotocol == "chat.v2"
        ws.send("ok")
        assert ws.recv(timeout=TIMEOUT) == "ok"


def test_no_subprotocol_when_none_offered(proxy: Proxy) -> None:
    with connect(ws_url(proxy), open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol is None


def test_app_close_code_reaches_the_client(proxy: Proxy) -> None:
    with connect(ws_url(proxy), open_timeout=TIMEOUT) as ws:
        ws.send("close:4001")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001


def test_client_close_code_reaches_the_app(proxy: Proxy, upstream: Upstream) -> None:
    with connect(ws_url(proxy), open_timeout=TIMEOUT) as ws:
        ws.send("before close")
        assert ws.recv(timeout=TIMEOUT) == "before close"
        ws.close(code=4002, reason="client done")
    wait_until(
        lambda: upstream.stats().get("ws_client_close_code") == 4002,
        TIMEOUT,
        "the app to see close code 4002",
    )
    # And another code, so a stale 4002 from an earlier session can't pass this test.
    with connect(ws_url(proxy), open_timeout=TIMEOUT) as ws:
        ws.close(code=4003)
    wait_until(
        lambda: upstream.stats().get("ws_client_close_code") == 4003,
        TIMEOUT,
        "the app to see close code 4003",
    )


def test_handshake_refused_when_the_app_is_down(proxy_factory: Callable[..., Proxy]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    dedicated = proxy_factory(dead)
    started = time.monotonic()
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(dedicated), open_timeout=TIMEOUT)
    assert time.monotonic() - started < 5.0, "the refusal took too long"
    response = refused.value.response
    assert response.status_code == 502
    assert response.headers["x-streamproxy-error"] == "connect_refused"
    assert dedicated.proc.poll() is None
    assert websocket_requests(dedicated) == {"5xx": 1}


def test_websocket_session_counts_once(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    dedicated = proxy_factory(upstream.url)
    assert dedicated.status().json()["counter"] == 0
    with connect(ws_url(dedicated), open_timeout=TIMEOUT) as ws:
        for index in range(10):
            ws.send(f"m{index}")
            assert ws.recv(timeout=TIMEOUT) == f"m{index}"
        ws.send(b"\x00binary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00binary"
    wait_until(lambda: dedicated.status().json()["counter"] >= 1, 5, "the handshake to count")
    assert dedicated.status().json()["counter"] == 1
    # In /metrics too, as one request: the handshake, answered 101.
    assert websocket_requests(dedicated) == {"1xx": 1}


def test_handshake_refused_by_the_app_passes_its_status(proxy: Proxy) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(proxy, "/ws-refuse"), open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403
    assert proxy.proc.poll() is None


def test_app_dying_mid_session_closes_the_client_promptly(
    upstream_factory: Callable[..., Upstream], proxy_factory: Callable[..., Proxy]
) -> None:
    app = upstream_factory()
    dedicated = proxy_factory(app.url)
    with connect(ws_url(dedicated), open_timeout=TIMEOUT) as ws:
        ws.send("alive")
        assert ws.recv(timeout=TIMEOUT) == "alive"
        app.proc.kill()  # no close frame: an abnormal closure
        app.proc.wait(timeout=10)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    # A byte tunnel makes up no frame: the client sees what the app did, a connection that
    # ended without a close frame (RFC 6455 §7.1.5: 1006).
    assert closed.value.rcvd is None
    assert dedicated.proc.poll() is None


def test_open_websocket_is_closed_at_shutdown_on_both_sides(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    dedicated = proxy_factory(upstream.url)
    with connect(ws_url(dedicated), open_timeout=TIMEOUT) as ws:
        ws.send("before shutdown")
        assert ws.recv(timeout=TIMEOUT) == "before shutdown"
        sent_at = time.monotonic()
        dedicated.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    # The tunnel closes both connections once the drain is over (no frame is made up: the
    # tunnel parses none); the client sees the session end and reconnects elsewhere.
    assert dedicated.wait(timeout=20) == 0
    assert time.monotonic() - sent_at < 10


def _mapped(pid: int, fragment: str) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return any(fragment in line for line in maps)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/<pid>/maps")
def test_tunnels_load_no_websocket_library(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    """Upgrades are byte tunnels: no WebSocket code is in the proxy, before or after one."""
    dedicated = proxy_factory(upstream.url)
    with connect(ws_url(dedicated), open_timeout=TIMEOUT) as ws:
        ws.send("first")
        assert ws.recv(timeout=TIMEOUT) == "first"
    assert not _mapped(dedicated.pid, "/websockets/")
    assert not _mapped(dedicated.pid, "/aiohttp/")


def test_tunnels_are_not_limited_by_the_upstream_pool(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    """CONTRACT §2: concurrent tunnels are limited only by file descriptors. 150 sessions
    (the retired client allowed 100) through a pool of 4 connections all stay open and echo."""
    dedicated = proxy_factory(upstream.url, "--upstream-pool-size", "4")
    with contextlib.ExitStack() as stack:
        sessions = [
            stack.enter_context(connect(ws_url(dedicated), open_timeout=TIMEOUT))
            for _ in range(150)
        ]
        for index, ws in enumerate(sessions):
            ws.send(f"session {index}")
        for index, ws in enumerate(sessions):
            assert ws.recv(timeout=TIMEOUT) == f"session {index}"
        assert httpx.get(dedicated.url + "/echo", timeout=TIMEOUT).status_code == 200
