"""The app's preStop hook: `GET /drain?seconds=N` on the admin port (CONTRACT §3, §4).

A native sidecar is stopped only after the app has exited, so SIGTERM comes too late to move
keep-alive clients away while the app still answers. The chart points the app container's
preStop hook (an httpGet the kubelet makes, so distroless apps need nothing) at /drain: from
then on every response says `Connection: close`, after N seconds the idle keep-alive connections
are closed, and the hook returns so the kubelet may stop the app. Readiness is not touched.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from sidecar.admin import AdminState, create_admin_app
from sidecar.counter.base import LocalCounter
from sidecar.health import UpstreamHealth
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import ProxyMetrics, make_registry
from sidecar.settings import Settings
from tests.proxy_fixtures import Proxy, Upstream, free_port, wait_until

EXIT_TIMEOUT = 20.0


def read_response(sock: socket.socket) -> bytes:
    """One response to GET /echo (Content-Length framed), head and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head


def get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    return read_response(sock).lower()


class DrainCall(threading.Thread):
    """The kubelet's preStop httpGet: blocks until the sidecar answers."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.response = httpx.get(self.url, headers=self.headers, timeout=60)
        except httpx.HTTPError as exc:
            self.error = exc
        self.elapsed = time.monotonic() - started


def test_drain_hook_sends_connection_close_then_closes_idle_connections(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url, "--drain-seconds", "1")
    idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    busy = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    with idle, busy:
        assert b"connection: close" not in get(idle)
        assert b"connection: close" not in get(busy)

        hook = DrainCall(proxy.admin_url + "/drain?seconds=2")
        hook.start()
        wait_until(lambda: proxy.status().json()["closing"], 10, "/drain to begin")
        # The app still serves; the response tells the client to go elsewhere (RFC 9112 §9.6).
        head = get(busy)
        assert head.startswith(b"http/1.1 200 ")
        assert b"connection: close" in head
        assert busy.recv(1) == b"", "the connection stayed open after Connection: close"
        # Readiness is left to the endpoints controller while the pod terminates.
        assert httpx.get(proxy.admin_url + "/readyz", timeout=5).status_code == 200

        hook.join(timeout=30)
        assert hook.response is not None, hook.error
        assert hook.response.status_code == 200
        assert hook.elapsed >= 1.5, "the hook must hold the app's SIGTERM back for N seconds"
        assert hook.response.json()["idle_closed"] >= 1
        idle.settimeout(10)
        assert idle.recv(1) == b"", "the idle keep-alive connection was not closed"

    # New connections are still served until SIGTERM (they come from stale routes).
    fresh = httpx.get(proxy.url + "/echo", timeout=5)
    assert fresh.status_code == 200
    assert fresh.headers["connection"] == "close"

    # SIGTERM: the drain already ran for longer than --drain-seconds, none is repeated.
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(timeout=EXIT_TIMEOUT) == 0
    assert '"msg":"draining"' not in proxy.log()


def test_sigterm_ends_a_pending_drain_wait(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    """A classic sidecar gets SIGTERM while the app's hook still waits: shutdown goes on."""
    proxy = proxy_factory(upstream.url, "--drain-seconds", "0")
    hook = DrainCall(proxy.admin_url + "/drain?seconds=600")
    hook.start()
    wait_until(lambda: proxy.status().json()["closing"], 10, "/drain to begin")
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(timeout=EXIT_TIMEOUT) == 0
    hook.join(timeout=10)
    assert not hook.is_alive()
    assert hook.response is None or hook.response.status_code == 200


@pytest.mark.parametrize("seconds", ["-1", "abc", "nan", "3601", "inf"])
def test_drain_rejects_a_bad_wait(proxy: Proxy, seconds: str) -> None:
    response = httpx.get(proxy.admin_url + f"/drain?seconds={seconds}", timeout=5)
    assert response.status_code == 400
    assert "seconds" in response.json()["error"]
    assert proxy.status().json()["closing"] is False


def _admin(drain_token: str | None) -> tuple[Lifecycle, Callable[[str], httpx.AsyncClient]]:
    settings = Settings(upstream=f"http://127.0.0.1:{free_port()}")
    counter = LocalCounter()
    lifecycle = Lifecycle()
    registry = make_registry(ProxyMetrics(), counter, lambda: True, lambda: True)
    app = create_admin_app(
        AdminState(counter, UpstreamHealth(settings), lifecycle, registry, drain_token=drain_token)
    )

    def client(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://admin")

    return lifecycle, client


def test_drain_token_is_required_from_other_addresses_in_process() -> None:
    """No non-loopback address may be used here: drive the admin app with fake clients."""

    async def scenario() -> None:
        lifecycle, client = _admin("s3cret")
        async with client("10.1.2.3") as outside:
            assert (await outside.get("/drain")).status_code == 403
            wrong = {"X-Streamproxy-Drain-Token": "s3cre"}
            assert (await outside.get("/drain", headers=wrong)).status_code == 403
            assert not lifecycle.closing
            right = {"X-Streamproxy-Drain-Token": "s3cret"}
            assert (await outside.get("/drain", headers=right)).status_code == 200
            assert lifecycle.closing and not lifecycle.draining

        lifecycle, client = _admin("s3cret")
        async with client("127.0.0.1") as inside:
            assert (await inside.get("/drain")).status_code == 200
            assert lifecycle.closing

        lifecycle, client = _admin(None)
        async with client("10.1.2.3") as outside:
            assert (await outside.post("/drain")).status_code == 200
            assert lifecycle.closing

    asyncio.run(scenario())
