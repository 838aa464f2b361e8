"""CONTRACT §2 through a real proxy process in front of a real upstream app."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.proxy_fixtures import Proxy, Upstream, free_port, wait_until

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PURGE"]


def raw_request(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes exactly as given; return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_forwarded_with_its_body(proxy: Proxy, method: str) -> None:
    response = httpx.request(method, proxy.url + "/a/b/c", content=b"payload-" + method.encode())
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == method
    assert echoed["raw_path"] == "/a/b/c"
    assert echoed["body_bytes"] == len(b"payload-" + method.encode())


def test_head_has_headers_and_no_body(proxy: Proxy) -> None:
    response = httpx.head(proxy.url + "/stream?bytes=5000")
    assert response.status_code == 200
    assert response.headers["content-length"] == "5000"
    assert response.content == b""


@pytest.mark.parametrize(
    "target",
    [
        b"/a//b/%2F%2e%2E/x?q=%20+%2B&q=2&empty=&=weird",
        b"//evil.example/x",
        b"/@evil.example/x",
        b"/caf%C3%A9/%ZZ?%ZZ=%",
        b"/x?a=1;b=2&c=%3B",
    ],
)
def test_path_and_query_pass_byte_for_byte(proxy: Proxy, target: bytes) -> None:
    reply = raw_request(
        proxy.port,
        b"GET " + target + b" HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n",
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply[:200]
    echoed = httpx.Response(200, content=body).json()
    path, _, query = target.partition(b"?")
    assert echoed["raw_path"].encode("latin-1") == path
    assert echoed["query"].encode("latin-1") == query
    # The request reached *our* upstream, whatever the target looked like.
    assert ["host", "front.example"] in echoed["headers"]


def test_absolute_form_target_never_reaches_another_host(proxy: Proxy) -> None:
    reply = raw_request(
        proxy.port,
        b"GET http://evil.example:9/steal?x=1 HTTP/1.1\r\nHost: evil.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 200"):
        echoed = httpx.Response(200, content=body).json()
        assert echoed["raw_path"] == "/steal"
    else:
        assert head.startswith(b"HTTP/1.1 4"), reply[:200]


def test_connect_is_refused(proxy: Proxy) -> None:
    reply = raw_request(proxy.port, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:200]


def test_repeated_headers_keep_multiplicity_and_order(proxy: Proxy) -> None:
    reply = raw_request(
        proxy.port,
        b"GET /echo HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nX-Other: o\r\nX-Dup: 2\r\n"
        b"Cookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n",
    )
    body = reply.partition(b"\r\n\r\n")[2]
    headers = httpx.Response(200, content=body).json()["headers"]
    dups = [value for name, value in headers if name == "x-dup"]
    assert dups == ["1", "2"]
    assert [value for name, value in headers if name == "cookie"] == ["a=1", "b=2"]
    names = [name for name, _ in headers]
    assert names.index("x-dup") < names.index("x-other")


def test_two_set_cookie_headers_stay_two(proxy: Proxy) -> None:
    reply = raw_request(
        proxy.port, b"GET /cookies HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    head = reply.partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"\r\nset-cookie: ") == 2
    assert b"set-cookie: a=1; path=/" in head and b"set-cookie: b=2; path=/" in head
    assert head.index(b"x-multi: one") < head.index(b"x-multi: two")


def test_hop_by_hop_request_headers_are_stripped(proxy: Proxy) -> None:
    """RFC 9110 §7.6.1: Connection, what it lists, and the standard hop-by-hop fields go;
    Proxy-Authorization passes (§11.7.2: the app may itself be a proxy)."""
    reply = raw_request(
        proxy.port,
        b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nTrailer: X-T\r\n"
        b"X-Kept: yes\r\n\r\n",
    )
    body = reply.partition(b"\r\n\r\n")[2]
    names = {name for name, _ in httpx.Response(200, content=body).json()["headers"]}
    for hop in (
        "connection",
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "trailer",
        "transfer-encoding",
    ):
        assert hop not in names
    assert "x-kept" in names
    assert "proxy-authorization" in names


def test_hop_by_hop_response_headers_are_stripped(proxy: Proxy) -> None:
    """RFC 9110 §7.6.1 on the way back; Proxy-Authenticate passes (§11.7.1)."""
    reply = raw_request(proxy.port, b"GET /hop HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head = reply.partition(b"\r\n\r\n")[0].lower()
    assert b"x-hop-one" not in head
    assert b"keep-alive" not in head
    assert b"proxy-authenticate" in head
    assert b"\r\ntrailer:" not in head
    assert b"x-end-to-end: stays" in head


def test_x_forwarded_headers_are_filled_in(proxy: Proxy) -> None:
    headers = dict(
        httpx.get(proxy.url + "/echo", headers={"Host": "shop.example"}).json()["headers"]
    )
    assert headers["host"] == "shop.example"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "shop.example"


def test_x_forwarded_headers_from_an_ingress_are_kept_and_appended(proxy: Proxy) -> None:
    sent = {
        "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example",
    }
    headers = dict(httpx.get(proxy.url + "/echo", headers=sent).json()["headers"])
    assert headers["x-forwarded-for"] == "203.0.113.7, 10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "public.example"


def test_status_codes_pass_through(proxy: Proxy) -> None:
    for status in (201, 204, 301, 304, 404, 418, 500, 503):
        response = httpx.get(proxy.url + f"/status/{status}", follow_redirects=False)
        assert response.status_code == status
        assert "x-streamproxy-error" not in response.headers


def test_compressed_bodies_are_not_touched(proxy: Proxy) -> None:
    with httpx.stream("GET", proxy.url + "/gzip", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == b"hello compressed world" * 100


def test_no_cookie_is_carried_between_clients(proxy: Proxy) -> None:
    first = httpx.get(proxy.url + "/set-cookie-once")
    assert "session=secret-of-client-1" in first.headers["set-cookie"]
    second = httpx.get(proxy.url + "/echo")
    names = [name for name, _ in second.json()["headers"]]
    assert "cookie" not in names


def test_chunked_upload_streams_through(proxy: Proxy) -> None:
    parts = [b"x" * 1000, b"y" * 70000, b"z"]

    def body() -> Iterator[bytes]:
        yield from parts

    echoed = httpx.post(proxy.url + "/echo", content=body()).json()
    assert echoed["body_bytes"] == sum(map(len, parts))


def test_app_refusing_connections_gives_502(proxy_factory: Callable[..., Proxy]) -> None:
    proxy = proxy_factory(f"http://127.0.0.1:{free_port()}")
    response = httpx.get(proxy.url + "/x")
    assert response.status_code == 502
    assert response.headers["x-streamproxy-error"] == "connect_refused"


def test_app_silent_before_headers_gives_504(proxy: Proxy) -> None:
    started = time.monotonic()
    response = httpx.get(proxy.url + "/silent", timeout=30)
    assert response.status_code == 504
    assert response.headers["x-streamproxy-error"] == "read_timeout"
    assert time.monotonic() - started < 20  # --read-timeout 2 on the shared proxy


def test_connect_timeout_gives_504(proxy_factory: Callable[..., Proxy]) -> None:
    # A listener that never accepts, with its backlog filled: further SYNs go unanswered.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        proxy = proxy_factory(f"http://127.0.0.1:{port}", "--connect-timeout", "0.5")
        response = httpx.get(proxy.url + "/x", timeout=30)
        assert response.status_code == 504
        assert response.headers["x-streamproxy-error"] == "connect_timeout"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_app_abort_mid_body_aborts_the_client(proxy: Proxy) -> None:
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", proxy.url + "/abort?bytes=1000") as r:
        b"".join(r.iter_raw())


def test_app_silent_mid_body_aborts_the_client_after_read_timeout(proxy: Proxy) -> None:
    url = proxy.url + "/silent-mid"
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        b"".join(response.iter_raw())


def test_client_disconnect_cancels_the_upstream_request(proxy: Proxy, upstream: Upstream) -> None:
    baseline = int(upstream.stats()["disconnects"])  # type: ignore[call-overload]
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(b"GET /hang HTTP/1.1\r\nHost: h\r\n\r\n")
    wait_until(lambda: upstream.stats()["hanging"] == 1, 10, "the request to reach the app")
    sock.close()
    wait_until(
        lambda: (
            upstream.stats()["hanging"] == 0
            and int(upstream.stats()["disconnects"]) == baseline + 1
        ),  # type: ignore[call-overload]
        10,
        "the app to see the upstream request cancelled",
    )


def test_proxy_serves_on_after_errors(proxy: Proxy) -> None:
    for path in ("/abort?bytes=10", "/status/500", "/echo"):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(proxy.url + path)
    assert httpx.get(proxy.url + "/echo").status_code == 200


class RaceUpstream:
    """An app that closes each keep-alive connection when the *next* request arrives on it,
    without answering: the keep-alive race, made deterministic."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self.dropped = 0
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._handle(reader, writer)
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(on_connect, "127.0.0.1", self.port)
        self._started.set()
        await self._stop.wait()
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if served == 1:
                    self.dropped += 1
                    break  # second request on this connection: drop it unanswered
                self.requests += 1
                served += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_keep_alive_race_never_surfaces(proxy_factory: Callable[..., Proxy], method: str) -> None:
    """RFC 9110 §9.2.2: an idempotent request whose reused connection failed before any
    response byte is retried on a fresh connection; the client never sees the race."""
    app = RaceUpstream()
    try:
        proxy = proxy_factory(f"http://127.0.0.1:{app.port}")
        with httpx.Client() as client:
            statuses = [client.request(method, proxy.url + "/r").status_code for _ in range(20)]
        assert statuses == [200] * 20
        assert app.dropped >= 1  # the race really happened
        assert app.requests == 20
    finally:
        app.close()


def test_post_the_app_read_is_never_sent_twice(proxy_factory: Callable[..., Proxy]) -> None:
    """RFC 9112 §9.3.1.1: a proxy MUST NOT retry a non-idempotent request. The app reads each
    second POST on a connection and drops it: that POST gets a 502, and reached the app once."""
    app = RaceUpstream()
    try:
        proxy = proxy_factory(f"http://127.0.0.1:{app.port}")
        with httpx.Client() as client:
            responses = [client.post(proxy.url + "/r", content=b"pay") for _ in range(20)]
        statuses = [response.status_code for response in responses]
        assert app.dropped >= 1  # the race really happened
        assert statuses.count(502) == app.dropped
        assert statuses.count(200) == app.requests
        assert app.requests + app.dropped == 20  # each POST reached the app exactly once
        failed = [r for r in responses if r.status_code == 502]
        assert all(r.headers["x-streamproxy-error"] == "upstream_reset" for r in failed)
    finally:
        app.close()


def test_keep_alive_race_with_real_app_idle_timeout(
    proxy_factory: Callable[..., Proxy], upstream_factory: Callable[..., Upstream]
) -> None:
    # A uvicorn app closing idle connections after 1 s, the proxy keeping them 4 s.
    app = upstream_factory(keep_alive=1)
    proxy = proxy_factory(app.url)
    failures = 0
    deadline = time.monotonic() + 4
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            failures += client.post(proxy.url + "/echo").status_code != 200
            time.sleep(0.25)  # spread requests across the app's idle timeout (load shape)
    assert failures == 0


def test_read_timeout_starts_after_the_upload(proxy: Proxy) -> None:
    # The app stays silent after reading the body: the clock starts when the body is sent.
    response = httpx.post(proxy.url + "/silent", content=b"x" * 100_000, timeout=30)
    assert response.status_code == 504
    assert response.headers["x-streamproxy-error"] == "read_timeout"


def test_slow_upload_is_not_cut_by_the_read_timeout(proxy: Proxy) -> None:
    # An upload taking longer than --read-timeout (2 s) in total, while the app reads it.
    def body() -> Iterator[bytes]:
        for _ in range(6):
            yield b"y" * 1000
            time.sleep(0.5)  # the client's pace: part of the scenario, not synchronisation

    response = httpx.post(proxy.url + "/echo", content=body(), timeout=30)
    assert response.status_code == 200
    assert response.json()["body_bytes"] == 6000


@pytest.mark.parametrize("size", [1, 65_535, 65_536, 100_000, 1_000_000])
def test_content_length_bodies_of_any_size_in_one_write(proxy: Proxy, size: int) -> None:
    # Headers and the whole body in one segment: the header-size guard must not count body bytes.
    for _ in range(3):
        reply = raw_request(
            proxy.port,
            b"POST /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
            + b"b" * size,
        )
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply[:100]
        assert httpx.Response(200, content=body).json()["body_bytes"] == size


def test_bodies_after_a_timed_out_request_on_a_kept_alive_client(proxy: Proxy) -> None:
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            assert client.post(proxy.url + "/silent", content=b"s" * 100_000).status_code == 504
            response = client.post(proxy.url + "/echo", content=b"e" * 1_000_000)
            assert response.status_code == 200, (response.headers, response.text[:200])
            assert response.json()["body_bytes"] == 1_000_000


def test_http11_request_without_host_is_refused(proxy: Proxy, upstream: Upstream) -> None:
    reply = raw_request(proxy.port, b"GET /no-host-marker HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:100]
    recent = upstream.stats()["recent"]
    assert isinstance(recent, list) and "/no-host-marker" not in recent
    # HTTP/1.0 may omit Host.
    reply = raw_request(proxy.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]


def test_headers_are_not_held_back_until_a_late_body(proxy: Proxy) -> None:
    started = time.monotonic()
    with httpx.stream("GET", proxy.url + "/late-body?delay=1.5", timeout=30) as response:
        headers_at = time.monotonic() - started
        assert response.status_code == 200
        body = b"".join(response.iter_raw())
        body_at = time.monotonic() - started
    assert body == b"late"
    assert body_at >= 1.4
    assert headers_at < body_at - 0.5  # the head went out before the body existed


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_client_leaving_mid_upload_never_looks_like_a_complete_body(
    proxy: Proxy, upstream: Upstream, framing: str
) -> None:
    marker = f"cut-{framing}"
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    if framing == "chunked":
        head = b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    else:
        head = b"Content-Length: 1000\r\n\r\nhello"
    sock.sendall(f"POST /record?id={marker} HTTP/1.1\r\nHost: h\r\n".encode() + head)

    def app_saw_it() -> bool:
        recorded = upstream.stats().get("recorded") or {}
        return isinstance(recorded, dict) and marker in recorded

    try:
        # Give the proxy time to start the upstream request (the app then waits for the rest).
        wait_until(lambda: f"/record?id={marker}" in upstream.stats()["recent"], 10, "upload")  # type: ignore[operator]
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST: the client is gone mid-body
    wait_until(app_saw_it, 10, "the app to see the upload end")
    recorded = upstream.stats()["recorded"][marker]  # type: ignore[index]
    assert recorded["complete"] is False


def read_response(sock: socket.socket) -> bytes:
    """One Content-Length-framed response from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_idle_client_connection_outlives_uvicorns_5s_default(proxy: Proxy) -> None:
    # Load balancers keep idle connections ~60 s: a proxy closing them at 5 s makes them fail.
    request = b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # the idle period under test, not a wait for something to happen
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")


def test_idle_client_connection_closes_after_the_keepalive_timeout(
    proxy_factory: Callable[..., Proxy], upstream: Upstream
) -> None:
    proxy = proxy_factory(upstream.url, "--keepalive-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # the proxy closes the idle connection
        assert time.monotonic() - started < 8


def test_a_busy_connection_outlives_the_keepalive_timeout_and_closes_once_idle(
    proxy_factory: Callable[..., Proxy], upstream: Upstream
) -> None:
    # The keep-alive timer stays armed across requests: when it fires on a connection that
    # was used since, it must re-arm for the rest of the idle time, not close it.
    proxy = proxy_factory(upstream.url, "--keepalive-timeout", "1")
    request = b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        for _ in range(8):  # 8 gaps of 0.4 s: 3 s of use, each gap shorter than the timeout
            sock.sendall(request)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.4)  # the idle gap under test
        started = time.monotonic()
        assert sock.recv(65536) == b""  # then idle: closed
        assert time.monotonic() - started < 8


def test_expect_100_continue_is_answered_before_the_body_is_sent(proxy: Proxy) -> None:
    # curl sends `Expect: 100-continue` before large uploads and waits for the interim answer
    # (or a timeout) before the body: the proxy answers it, and the app never sees Expect.
    body = b"hello world"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        reply = read_response(sock)
    assert reply.startswith(b"HTTP/1.1 200")
    echoed = httpx.Response(200, content=reply.partition(b"\r\n\r\n")[2]).json()
    assert echoed["body_bytes"] == len(body)
    assert "expect" not in {name for name, _ in echoed["headers"]}
