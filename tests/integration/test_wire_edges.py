"""RFC 9110/9112 at the proxy's edges, clause by clause, against a scripted app.

Each test drives the real proxy process with raw sockets on both sides (tests.integration.
scripted): the app does what real apps do only sometimes, the client sees exactly the bytes the
proxy wrote. Each docstring names the clause it pins.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psutil
import pytest

from tests.integration.scripted import AppConn, RawClient, ScriptedApp, read_until
from tests.proxy_fixtures import Proxy, wait_until

GET = b"GET /%b HTTP/1.1\r\nHost: pod.local\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
WAIT = 15.0


@pytest.fixture
def app_factory() -> Iterator[Callable[[Callable[[AppConn], object]], ScriptedApp]]:
    started: list[ScriptedApp] = []

    def start(script: Callable[[AppConn], object]) -> ScriptedApp:
        app = ScriptedApp(script)  # type: ignore[arg-type]
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


def get(path: bytes) -> bytes:
    return GET % path


async def serve_ok_forever(conn: AppConn) -> None:
    while True:
        await conn.read_request()
        await conn.send(OK)


# Framing of responses (RFC 9112 §6.3)


def test_304_with_content_length_has_no_body_and_keeps_the_connection(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9110 §8.6 / RFC 9112 §6.3 rule 1: a 304 may carry Content-Length and has no body;
    the client's keep-alive connection serves the next request."""

    async def script(conn: AppConn) -> None:
        while True:
            head, _ = await conn.read_request()
            if b"/cached" in head:
                await conn.send(
                    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: x\r\n\r\n"
                )
            else:
                await conn.send(OK)

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(get(b"cached"))
        response = client.read_response()
        assert response.status == 304
        assert response.header(b"content-length") == b"1234"
        assert response.body == b""
        client.send(get(b"next"))
        assert client.read_response().body == b"ok"


def test_head_response_with_content_length_has_no_body(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9110 §9.3.2 / RFC 9112 §6.3 rule 1: a HEAD response's Content-Length announces
    the GET's body; none follows, and the connection goes on."""

    async def script(conn: AppConn) -> None:
        while True:
            head, _ = await conn.read_request()
            if head.startswith(b"HEAD"):
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
            else:
                await conn.send(OK)

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.read_response(head_only=True)
        assert response.status == 200
        assert response.header(b"content-length") == b"5000"
        client.send(get(b"next"))
        after = client.read_response()
        assert after.raw.startswith(b"HTTP/1.1 200"), after.raw[:100]  # nothing in between
        assert after.body == b"ok"


def test_close_delimited_body_cut_by_a_reset_aborts_the_client(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §6.3 rule 8 and §8: a close-delimited body ends with a clean close only; a
    reset is an incomplete message, which the client must see as one (no last-chunk)."""
    proceed = threading.Event()

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\n\r\npartial")
        await asyncio.to_thread(proceed.wait, WAIT)
        conn.reset()

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(get(b"cut"))
        read_until(client, b"partial")
        proceed.set()
        raw = client.read_until_closed()
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in raw.lower()
    assert not raw.endswith(b"0\r\n\r\n"), raw  # never a complete response


def test_close_delimited_body_ended_cleanly_is_complete(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §6.3 rule 8: without length or chunked, the body runs to the close; an
    HTTP/1.1 client gets it chunked (§7.1) and its connection stays open."""

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        conn.close()

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(get(b"whole"))
        response = client.read_response()
        assert response.complete
        assert response.body == b"all of it"
        assert response.header(b"transfer-encoding") == b"chunked"
        client.send(get(b"again"))
        assert client.read_response().body == b"all of it"


def test_content_length_body_cut_short_aborts_the_client(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §8: a body shorter than its Content-Length is incomplete; the client's
    connection ends with it (never padded, never reused)."""

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        conn.close()

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(get(b"short"))
        response = client.read_response()
    assert response.status == 200
    assert not response.complete
    assert client.closed


def test_http10_client_never_gets_chunked(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §6.1: a server MUST NOT send chunked to an HTTP/1.0 client; the body is
    close-delimited instead (§6.3 rule 8)."""

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(b"GET /old HTTP/1.0\r\n\r\n")
        raw = client.read_until_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"hello"


# The upstream connection and the pool (RFC 9112 §9)


def test_post_read_then_dropped_is_a_502_and_never_resent(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §9.3.1.1: a proxy MUST NOT retry a non-idempotent request the app may have
    received; the client gets the proxy's 502."""

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        conn.close()

    app = app_factory(script)
    proxy = proxy_factory(app.url)
    response = httpx.post(proxy.url + "/pay", content=b"once", timeout=WAIT)
    assert response.status_code == 502
    assert response.headers["x-streamproxy-error"] == "upstream_reset"
    assert app.connections == 1


def _app_connections(proxy: Proxy, app_port: int) -> int:
    return sum(
        1
        for conn in psutil.Process(proxy.pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == app_port
    )


def test_pooled_connection_the_app_closed_is_never_reused(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §9.3.1: the app may close an idle connection at any time; the proxy notices
    the close while the connection is idle and never sends the next request on it."""

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(OK)  # no `Connection: close`: the close comes unannounced
        conn.close()

    app = app_factory(script)
    proxy = proxy_factory(app.url)
    assert httpx.get(proxy.url + "/first", timeout=WAIT).text == "ok"
    wait_until(lambda: _app_connections(proxy, app.port) == 0, WAIT, "the proxy to drop it")
    response = httpx.post(proxy.url + "/second", content=b"x", timeout=WAIT)
    assert response.status_code == 200
    assert app.connections == 2


@pytest.mark.parametrize(("hint", "connections"), [(b"timeout=1", 2), (b"timeout=60", 1)])
def test_keep_alive_timeout_hint_caps_idle_time(
    app_factory: Callable[..., ScriptedApp],
    proxy_factory: Callable[..., Proxy],
    hint: bytes,
    connections: int,
) -> None:
    """RFC 9112 §9.3 and the Keep-Alive header (RFC 2068 §19.7.1.1): an app that says it
    closes idle connections after N s gets no request on one that idled that long."""

    async def script(conn: AppConn) -> None:
        while True:
            await conn.read_request()
            await conn.send(
                b"HTTP/1.1 200 OK\r\nKeep-Alive: " + hint + b"\r\nContent-Length: 2\r\n\r\nok"
            )

    app = app_factory(script)
    proxy = proxy_factory(app.url, "--upstream-keepalive", "30")
    assert httpx.get(proxy.url + "/a", timeout=WAIT).text == "ok"
    time.sleep(1.5)  # idle time is what is under test: longer than the hint of 1 s
    assert httpx.get(proxy.url + "/b", timeout=WAIT).text == "ok"
    assert app.connections == connections


def test_waiting_for_a_pool_slot_is_bounded(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """CONTRACT §2 timeouts: with every upstream connection busy, a request waits at most
    --pool-timeout, then gets 503 (RFC 9110 §15.6.4) with X-Streamproxy-Error."""
    release = threading.Event()

    async def script(conn: AppConn) -> None:
        head, _ = await conn.read_request()
        app.record("request")
        if b"/hold" in head:
            await asyncio.to_thread(release.wait, WAIT)
        await conn.send(OK)

    app = app_factory(script)
    proxy = proxy_factory(app.url, "--upstream-pool-size", "1", "--pool-timeout", "0.5")
    with RawClient(proxy.port) as holder:
        holder.send(get(b"hold"))
        wait_until(lambda: app.events == ["request"], WAIT, "the held request")
        response = httpx.get(proxy.url + "/waits", timeout=WAIT)
        assert response.status_code == 503
        assert response.headers["x-streamproxy-error"] == "pool_timeout"
        release.set()
        assert holder.read_response().body == b"ok"


# The client side


def test_pipelined_bad_request_never_disturbs_the_response_before_it(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §9.3.2: responses go out in request order; the 400 for a malformed request
    pipelined behind a streaming one comes after that whole response."""
    proceed = threading.Event()

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await asyncio.to_thread(proceed.wait, WAIT)
        await conn.send(b"world")

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(get(b"stream") + b"GARBAGE\r\n\r\n")
        read_until(client, b"hello")
        proceed.set()
        raw = client.read_until_closed()
    assert b"helloworld" in raw
    assert b"HTTP/1.1 400" in raw
    assert raw.index(b"helloworld") < raw.index(b"HTTP/1.1 400")


def test_answer_before_the_request_body_closes_the_client_connection(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §9.6 / RFC 9110 §15.5.14: an app may answer before reading the body; the
    proxy says `Connection: close` and does not read the rest of the body on."""

    async def script(conn: AppConn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await conn.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
        conn.close()

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000
        )
        response = client.read_response()
        assert response.status == 413
        assert response.header(b"connection") == b"close"
        client.read_until_closed()
        assert client.closed


def test_stalled_request_body_is_aborted_both_ways(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """CONTRACT §2 timeouts: a request body silent for --read-timeout is aborted: the client's
    connection closes and the app's request ends broken (never completed)."""

    async def script(conn: AppConn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        data = await conn.reader.read()  # until the proxy gives up on the request
        app.record(f"ended after {len(data)} bytes")

    app = app_factory(script)
    proxy = proxy_factory(app.url, "--read-timeout", "1")
    with RawClient(proxy.port) as client:
        client.send(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        raw = client.read_until_closed()
    assert not raw.startswith(b"HTTP/1.1 2"), raw[:100]
    wait_until(lambda: app.events == ["ended after 10 bytes"], WAIT, "the app's request to end")


def test_client_that_stops_reading_is_dropped_and_the_app_released(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """CONTRACT §2 timeouts: a client that reads nothing for --send-timeout is dropped, and
    its upstream connection released (the app's writes then fail)."""

    async def script(conn: AppConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
        block = b"z" * 65536
        try:
            while True:
                await conn.send(block)
        except ConnectionError:
            app.record("released")

    app = app_factory(script)
    proxy = proxy_factory(app.url, "--send-timeout", "1")
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(get(b"big"))
        wait_until(lambda: app.events == ["released"], WAIT, "the app's connection to end")
    finally:
        sock.close()


def test_drain_says_connection_close_on_every_response(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """CONTRACT §4: during --drain-seconds every response carries `Connection: close` (RFC
    9112 §9.6) and its connection closes after it, so keep-alive clients move elsewhere."""
    proxy = proxy_factory(app_factory(serve_ok_forever).url, "--drain-seconds", "5")
    with RawClient(proxy.port) as client:
        client.send(get(b"before"))
        assert client.read_response().header(b"connection") is None
        proxy.signal(signal.SIGTERM)
        wait_until(lambda: proxy.status().status_code == 503, WAIT, "draining")
        client.send(get(b"during"))
        response = client.read_response()
        assert response.body == b"ok"
        assert response.header(b"connection") == b"close"
        client.read_until_closed()
        assert client.closed
    assert proxy.wait(timeout=WAIT) == 0


def test_connection_cannot_nominate_what_the_proxy_owns(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9110 §7.6.1 and the CVE-2022-31813 class: `Connection` listing Content-Length,
    Host or X-Forwarded-For removes none of them; the app gets the whole body."""

    async def script(conn: AppConn) -> None:
        head, body = await conn.read_request()
        app.requests.append(head + b"|" + body)
        await conn.send(OK)

    app = app_factory(script)
    proxy = proxy_factory(app.url)
    with RawClient(proxy.port) as client:
        client.send(
            b"POST /p HTTP/1.1\r\nHost: pod.local\r\n"
            b"Connection: Content-Length, Host, X-Forwarded-For, Transfer-Encoding\r\n"
            b"X-Forwarded-For: 10.1.1.1\r\nContent-Length: 5\r\n\r\nhello"
        )
        assert client.read_response().body == b"ok"
    head, _, body = app.requests[0].partition(b"|")
    lowered = head.lower()
    assert body == b"hello"
    assert b"\r\nhost: pod.local\r\n" in lowered
    assert b"\r\ncontent-length: 5\r\n" in lowered
    assert b"\r\nx-forwarded-for: 10.1.1.1, 127.0.0.1\r\n" in lowered


# Upgrades: byte tunnels after the app's 101 (RFC 9110 §7.8, §15.2.2)


def _metric(proxy: Proxy, name: str) -> float:
    for line in httpx.get(proxy.admin_url + "/metrics", timeout=WAIT).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_any_upgrade_becomes_a_byte_tunnel_with_half_close(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9110 §7.8: after 101 the connection speaks the app's protocol, whatever it is: the
    proxy relays bytes both ways; a half-close passes on and the other side may still answer."""

    async def script(conn: AppConn) -> None:
        head, _ = await conn.read_request()
        assert b"\r\nupgrade: echo/1\r\n" in head.lower()
        await conn.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n"
        )
        while data := await conn.reader.read(65536):
            await conn.send(data)
        await conn.send(b"bye")  # after the client's EOF: the other direction still works
        conn.close()

    proxy = proxy_factory(app_factory(script).url)
    with RawClient(proxy.port) as client:
        client.send(b"GET /t HTTP/1.1\r\nHost: a\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n")
        response = client.read_response(head_only=True)
        assert response.status == 101
        assert response.header(b"upgrade") == b"echo/1"
        payload = bytes(range(256)) * 64  # not HTTP, not WebSocket frames
        client.send(payload)
        assert read_until(client, payload[-256:]).endswith(payload)
        client._buffer = b""
        assert _metric(proxy, "streamproxy_tunnels_open") == 1
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_until_closed() == b"bye"
    wait_until(lambda: _metric(proxy, "streamproxy_tunnels_open") == 0, WAIT, "the tunnel end")
    assert _metric(proxy, "streamproxy_tunnels_opened_total") == 1
    assert _metric(proxy, "streamproxy_tunnels_closed_total") == 1


def test_declined_upgrade_is_plain_http_on_a_kept_connection(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9110 §7.8: a server may ignore Upgrade; the connection then stays HTTP/1.1."""
    proxy = proxy_factory(app_factory(serve_ok_forever).url)
    with RawClient(proxy.port) as client:
        client.send(
            b"GET /u HTTP/1.1\r\nHost: a\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n"
            + get(b"next")
        )
        assert client.read_response().body == b"ok"
        assert client.read_response().body == b"ok"


def test_a_burst_of_pipelined_requests_is_answered_in_order(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §9.3.2: a client may send many requests without waiting; each is answered, in
    order. 600 heads in one send (~100 KiB, more than one header section's limit): the
    head-size guard counts one head at a time, not the burst."""

    async def script(conn: AppConn) -> None:
        while True:
            head, _ = await conn.read_request()
            path = head.split(b" ")[1]
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(path), path))

    proxy = proxy_factory(app_factory(script).url)
    paths = [b"/burst/%04d/%s" % (index, b"p" * 120) for index in range(600)]
    with RawClient(proxy.port) as client:
        client.send(b"".join(b"GET %b HTTP/1.1\r\nHost: a\r\n\r\n" % path for path in paths))
        assert [client.read_response().body for _ in paths] == paths
        client.send(get(b"after"))
        assert client.read_response().body == b"/after"  # the connection was never refused


def test_a_body_tail_read_at_once_is_not_mistaken_for_a_head(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """RFC 9112 §6.3 / §9.3: after a body ends, the connection carries the next request; the
    header-size guard (RFC 6585 §5) counts head bytes only, never the body's last read."""

    async def script(conn: AppConn) -> None:
        while True:
            head = await conn.reader.readuntil(b"\r\n\r\n")
            app.record("head")
            if b"content-length: 200000" in head.lower():
                await conn.reader.readexactly(200_000)
            await conn.send(OK)

    app = app_factory(script)
    proxy = proxy_factory(app.url)
    with RawClient(proxy.port) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n")
        wait_until(lambda: app.events == ["head"], WAIT, "the head to reach the app")
        client.send(b"b" * 200_000)  # one read on the proxy's side, most likely
        assert client.read_response().body == b"ok"
        client.send(get(b"next"))
        response = client.read_response()
        assert response.status == 200, response.raw[:200]


def test_request_trailer_fields_are_dropped_and_never_reach_the_next_request(
    proxy: Proxy,
) -> None:
    """RFC 9112 §7.1.2: a recipient may discard trailer fields it does not understand; the
    proxy forwards a chunked body's data and ends it with a bare last chunk. The trailer is never
    taken for a header, of this request or of the next one on the connection."""
    with RawClient(proxy.port) as client:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Trailer-Field: t1\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Second: 2\r\n\r\n"
        )
        first, second = client.read_response(), client.read_response()
    assert (first.status, second.status) == (200, 200)
    posted, got = json.loads(first.body), json.loads(second.body)
    assert posted["body_bytes"] == 5
    sent = [name.lower() for name, _ in posted["headers"]]
    assert "x-trailer-field" not in sent
    names = [name.lower() for name, _ in got["headers"]]
    assert "x-trailer-field" not in names and "x-second" in names
    assert names.count("host") == 1
