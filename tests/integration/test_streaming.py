"""Bodies stream both ways in bounded memory, and a slow client slows the app (CONTRACT §2)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.proxy_fixtures import Proxy, Upstream, wait_until

GIB = 1 << 30
MIB = 1 << 20
RSS_BOUND = 150 * MIB


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A proxy of this module's own, with a read timeout that a loaded machine can't trip."""
    server = Proxy(upstream.url, tmp_path_factory.mktemp("streaming") / "proxy.log")
    yield server
    server.stop()


class RssSampler:
    """Samples a process's RSS in the background; `peak` is the highest value seen."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self.peak = proxy.rss()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._proxy.rss())
            self.samples += 1

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_one_gib_download_in_bounded_memory(proxy: Proxy, chunked: bool) -> None:
    url = proxy.url + f"/stream?bytes={GIB}" + ("&chunked=1" if chunked else "")
    received = 0
    with RssSampler(proxy) as rss, httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw(1 << 20):
            received += len(chunk)
    assert received == GIB
    assert rss.samples > 5
    assert rss.peak < RSS_BOUND, f"proxy RSS peaked at {rss.peak / MIB:.0f} MiB"


@pytest.mark.slow
def test_one_gib_upload_in_bounded_memory(proxy: Proxy) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    expected = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(GIB // len(block)):
            expected.update(block)
            yield block

    with RssSampler(proxy) as rss:
        response = httpx.post(proxy.url + "/sink", content=body(), timeout=120)
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["body_bytes"] == GIB
    assert echoed["body_sha256"] == expected.hexdigest()
    assert rss.peak < RSS_BOUND, f"proxy RSS peaked at {rss.peak / MIB:.0f} MiB"


def test_slow_client_slows_the_app_instead_of_growing_memory(
    proxy: Proxy, upstream: Upstream
) -> None:
    total = 256 * MIB
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.sendall(f"GET /stream?bytes={total} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        sock.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        head, _, first = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        received = len(first)
        rss_before = proxy.rss()

        # The client now reads nothing. The app must stall once the buffers between it and the
        # client are full: wait until its progress stops moving, then check where it stopped.
        progress: list[int] = []

        def app_stalled() -> bool:
            progress.append(int(upstream.stats()["stream_sent"]))  # type: ignore[call-overload]
            return len(progress) >= 10 and progress[-1] == progress[-10]

        wait_until(app_stalled, 30, "the app to be held back by the slow client")
        assert progress[-1] < 64 * MIB, f"app sent {progress[-1] / MIB:.0f} MiB unread"
        assert proxy.rss() - rss_before < 64 * MIB

        # Then the client reads everything, and all of it arrives.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        deadline = time.monotonic() + 120
        while received < total and time.monotonic() < deadline:
            data = sock.recv(1 << 20)
            if not data:
                break
            received += len(data)
        assert received == total
        wait_until(lambda: upstream.stats()["stream_done"] is True, 10, "the app to finish")
    finally:
        sock.close()


def slow_download(port: int, path: str) -> int:
    """GET `path` on a connection with a tiny receive buffer, read in small sips: the proxy's
    writes to it back up, so flow control pauses the app connection often."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        received = 0
        while data := sock.recv(16384):
            received += len(data)
            time.sleep(0.0005)
        return received


@pytest.mark.parametrize("chunked", [False, True])
def test_app_connection_paused_at_the_end_of_a_response_is_read_again_in_the_pool(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], chunked: bool
) -> None:
    """A slow client can make the proxy pause reading from the app in the very read that ends
    the response. That connection goes back to the pool and is the next one handed out (LIFO):
    unless it is read again, the next request's response is never read (a hang, with no read
    timeout either, since a paused connection is not one the app keeps waiting)."""
    proxy = proxy_factory(upstream.url)
    size = 4_000_000
    flag = "&chunked=1" if chunked else ""
    for attempt in range(8):
        assert slow_download(proxy.port, f"/stream?bytes={size}{flag}") > size
        after = httpx.get(proxy.url + "/echo", timeout=10)
        assert after.status_code == 200, (attempt, after.text[:200])
