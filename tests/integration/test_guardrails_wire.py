"""The guard rails of docs/guardrails.md on the proxy port, with real sockets on both sides.

A real proxy process between a raw client and a scripted app (tests.integration.scripted):
request IDs, trusted forwarding hops (a real non-loopback peer: this machine's own address),
load shedding, the body limit, the app's own timing and pool gauges in /metrics, and the
access log line.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.integration.scripted import IO_TIMEOUT, AppConn, RawClient, ScriptedApp, read_until
from tests.integration.test_admin_logging import non_loopback_address
from tests.proxy_fixtures import Proxy, free_port, wait_until
from tests.redis_fixtures import RedisServer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
WAIT = 15.0
HEX_ID = re.compile(rb"[0-9a-f]{32}")


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


def recording(app_holder: list[ScriptedApp]) -> Callable[[AppConn], object]:
    """A script that records each request head (`app.requests`) and answers `200 ok`."""

    async def script(conn: AppConn) -> None:
        while True:
            head, _ = await conn.read_request()
            app_holder[0].requests.append(head)
            await conn.send(OK)

    return script


def recording_app(app_factory: Callable[..., ScriptedApp]) -> ScriptedApp:
    holder: list[ScriptedApp] = []
    app = app_factory(recording(holder))
    holder.append(app)
    return app


def header_values(head: bytes, name: bytes) -> list[bytes]:
    values = []
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            values.append(value.strip())
    return values


def metrics(proxy: Proxy) -> dict[str, float]:
    """Every unlabelled sample of /metrics (histogram _count/_sum included)."""
    samples: dict[str, float] = {}
    for line in httpx.get(proxy.admin_url + "/metrics", timeout=WAIT).text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()[:2]
            samples[name] = float(value)
    return samples


def counter(proxy: Proxy) -> int:
    return int(proxy.status().json()["counter"])


def exchange(port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    """One request on a fresh connection; the proxy's whole answer, parsed, as raw bytes."""
    with RawClient(port) as client:
        client.send(request)
        return client.read_response().raw


# Request IDs (docs/guardrails.md "Request IDs")


def test_request_ids_kept_when_sane_replaced_otherwise_and_echoed(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """A sane client ID reaches the app unchanged; a missing, over-long, tab-carrying or
    non-ASCII one is replaced by 32 hex digits; the app sees exactly one X-Request-Id and the
    client gets the same value back with --request-id-response."""
    app = recording_app(app_factory)
    proxy = proxy_factory(app.url, "--request-id-response")
    cases = {
        b"sane": b"X-Request-Id: 9f86d081-884c-7d65!~\r\n",
        b"none": b"",
        b"tab": b"X-Request-Id: abc\tdef\r\n",  # a control character llhttp lets through
        b"long": b"X-Request-Id: " + b"a" * 201 + b"\r\n",
        b"nonascii": b"X-Request-Id: caf\xc3\xa9\r\n",
        b"two": b"X-Request-Id: one\r\nX-Request-Id: two\r\n",  # which one? neither
    }
    with RawClient(proxy.port) as client:
        for name, line in cases.items():
            client.send(b"GET /%b HTTP/1.1\r\nHost: a\r\n%b\r\n" % (name, line))
            response = client.read_response()
            assert response.status == 200
            sent = header_values(app.requests[-1], b"x-request-id")
            assert len(sent) == 1, app.requests[-1]
            assert [v for k, v in response.headers if k.lower() == b"x-request-id"] == sent
            if name == b"sane":
                assert sent == [b"9f86d081-884c-7d65!~"]
            else:
                assert HEX_ID.fullmatch(sent[0]), (name, sent)
    ids = [header_values(head, b"x-request-id")[0] for head in app.requests[1:]]
    assert len(set(ids)) == len(ids)  # a new one each time


def test_request_id_with_other_control_characters_never_reaches_the_app(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """CR, LF, ESC and the other controls but HTAB are refused by the parser (RFC 9110 §5.5):
    400, and the app sees nothing."""
    app = recording_app(app_factory)
    proxy = proxy_factory(app.url)
    raw = exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: a\x1b[31mb\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert app.requests == []


def test_request_id_response_replaces_the_apps_own_echo(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """An app that echoes X-Request-Id itself (common middleware) does not make it two."""

    async def script(conn: AppConn) -> None:
        head, _ = await conn.read_request()
        rid = header_values(head, b"x-request-id")[0]
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Request-Id: %b\r\nContent-Length: 0\r\n\r\n" % rid)

    proxy = proxy_factory(app_factory(script).url, "--request-id-response")
    with RawClient(proxy.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\n\r\n")
        response = client.read_response()
    assert [v for k, v in response.headers if k.lower() == b"x-request-id"] == [b"abc-123"]


def test_request_ids_off_pass_the_clients_header_and_add_none(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """--no-request-id: the app sees its requests unchanged (no ID added, the client's kept)."""
    app = recording_app(app_factory)
    proxy = proxy_factory(app.url, "--no-request-id", "--request-id-response")
    with RawClient(proxy.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\tdef\r\n\r\n")
        first = client.read_response()
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        client.read_response()
    assert header_values(app.requests[0], b"x-request-id") == [b"abc\tdef"]
    assert header_values(app.requests[1], b"x-request-id") == []
    assert first.header(b"x-request-id") is None


def test_proxy_made_errors_carry_the_request_id(proxy_factory: Callable[..., Proxy]) -> None:
    """A 502 is the answer a user most needs to quote: it carries the ID too."""
    proxy = proxy_factory(f"http://127.0.0.1:{free_port()}", "--request-id-response")
    with RawClient(proxy.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: report-me\r\n\r\n")
        response = client.read_response()
    assert response.status == 502
    assert response.header(b"x-request-id") == b"report-me"


# Trusted forwarding hops (docs/guardrails.md "Trusted forwarding hops")

FORWARDED = (
    b"GET /f HTTP/1.1\r\nHost: pod.local\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: shop.example.com\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n"
)


def test_forwarded_headers_kept_from_a_trusted_peer(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """A loopback peer inside --trusted-proxies (an ingress controller): its X-Forwarded-Proto
    and -Host reach the app; X-Forwarded-For gets the peer appended."""
    app = recording_app(app_factory)
    proxy = proxy_factory(app.url, "--trusted-proxies", "127.0.0.0/8")
    assert exchange(proxy.port, FORWARDED).startswith(b"HTTP/1.1 200")
    head = app.requests[0]
    assert header_values(head, b"x-forwarded-proto") == [b"https"]
    assert header_values(head, b"x-forwarded-host") == [b"shop.example.com"]
    assert header_values(head, b"x-forwarded-for") == [b"10.9.9.9, 127.0.0.1"]


def test_forwarded_headers_replaced_from_an_untrusted_peer(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """A peer outside --trusted-proxies (a real non-loopback address of this machine) cannot
    say the user came over HTTPS or by another name: `http` and the request's Host instead.
    X-Forwarded-For is appended to all the same, so its last entry is always true."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    app = recording_app(app_factory)
    proxy = proxy_factory(
        app.url,
        *("--host", address, "--admin-host", "127.0.0.1", "--trusted-proxies", "127.0.0.0/8"),
        wait_ready=False,
    )

    def listening() -> bool:
        try:
            socket.create_connection((address, proxy.port), timeout=0.5).close()
            return httpx.get(proxy.admin_url + "/livez", timeout=1).status_code == 200
        except (OSError, httpx.HTTPError):
            return False

    wait_until(listening, 20, "the proxy on " + address)
    with socket.create_connection((address, proxy.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(FORWARDED)
        data = b""
        while b"\r\n\r\nok" not in data and (chunk := sock.recv(65536)):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    head = app.requests[0]
    assert header_values(head, b"x-forwarded-proto") == [b"http"]
    assert header_values(head, b"x-forwarded-host") == [b"pod.local"]
    assert header_values(head, b"x-forwarded-for") == [b"10.9.9.9, " + address.encode()]


# Load shedding (docs/guardrails.md "Load shedding")


def held_app(app_factory: Callable[..., ScriptedApp]) -> tuple[ScriptedApp, threading.Event]:
    """An app that records each request and answers only once `release` is set."""
    release = threading.Event()
    holder: list[ScriptedApp] = []

    async def script(conn: AppConn) -> None:
        while True:
            head, _ = await conn.read_request()
            holder[0].requests.append(head)
            await asyncio.to_thread(release.wait, WAIT)
            await conn.send(OK)

    app = app_factory(script)
    holder.append(app)
    return app, release


def test_request_past_max_in_flight_gets_503_at_once_and_still_counts(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """--max-in-flight 2: while two requests wait on the app, the third is answered 503
    overloaded with Retry-After at once (never queued, never sent to the app); it is counted
    (CONTRACT §4) and shed; once a slot frees, requests pass again."""
    app, release = held_app(app_factory)
    proxy = proxy_factory(app.url, "--max-in-flight", "2")
    held = [RawClient(proxy.port) for _ in range(2)]
    try:
        for index, client in enumerate(held):
            client.send(b"GET /held/%d HTTP/1.1\r\nHost: a\r\n\r\n" % index)
        wait_until(lambda: len(app.requests) == 2, WAIT, "two requests at the app")
        started = time.monotonic()
        with RawClient(proxy.port) as third:
            third.send(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
            shed = third.read_response()
        assert time.monotonic() - started < 2.0  # at once, not after the held ones
        assert shed.status == 503
        assert shed.header(b"x-streamproxy-error") == b"overloaded"
        assert shed.header(b"retry-after") == b"1"
        assert len(app.requests) == 2  # the app never saw it
        sample = metrics(proxy)
        assert sample["streamproxy_in_flight_requests"] == 2
        assert sample["streamproxy_requests_shed_total"] == 1
        assert sample["streamproxy_max_in_flight"] == 2
        wait_until(lambda: counter(proxy) == 3, WAIT, "the shed request counted")
        release.set()
        for client in held:
            assert client.read_response().status == 200
    finally:
        for client in held:
            client.sock.close()
    assert exchange(proxy.port, b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").startswith(
        b"HTTP/1.1 200"
    )
    wait_until(lambda: metrics(proxy)["streamproxy_in_flight_requests"] == 0, WAIT, "0 in flight")
    assert counter(proxy) == 4


def test_shed_requests_count_in_redis(
    app_factory: Callable[..., ScriptedApp],
    proxy_factory: Callable[..., Proxy],
    redis_server: RedisServer,
) -> None:
    """CONTRACT §4 with the shared counter: a request answered 503 overloaded reached the
    forwarder, so the Redis key counts it like any other."""
    app, release = held_app(app_factory)
    proxy = proxy_factory(
        app.url,
        *("--max-in-flight", "1", "--redis-url", redis_server.url, "--counter-key", "shed:test"),
    )
    with RawClient(proxy.port) as held:
        held.send(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_until(lambda: len(app.requests) == 1, WAIT, "the held request at the app")
        for _ in range(3):
            assert exchange(proxy.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").startswith(
                b"HTTP/1.1 503 "
            )
        release.set()
        assert held.read_response().status == 200
    with redis_server.client() as client:
        wait_until(lambda: client.get("shed:test") == b"4", WAIT, "4 in Redis")
    assert metrics(proxy)["streamproxy_requests_shed_total"] == 3


def test_an_open_tunnel_holds_its_in_flight_slot(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """Upgrades count while they last: with --max-in-flight 1 an open tunnel sheds the next
    request; once it closes, requests pass again. The tunnel gauges follow."""

    async def script(conn: AppConn) -> None:
        head, _ = await conn.read_request()
        if b"upgrade: echo/1" in head.lower():
            await conn.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo/1\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            while data := await conn.reader.read(65536):
                await conn.send(data)
            conn.close()
            return
        await conn.send(OK)

    proxy = proxy_factory(app_factory(script).url, "--max-in-flight", "1")
    with RawClient(proxy.port) as tunnel:
        tunnel.send(b"GET /t HTTP/1.1\r\nHost: a\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n")
        assert tunnel.read_response(head_only=True).status == 101
        tunnel.send(b"ping")
        assert read_until(tunnel, b"ping").endswith(b"ping")
        sample = metrics(proxy)
        assert sample["streamproxy_tunnels_open"] == 1
        assert sample["streamproxy_in_flight_requests"] == 1
        raw = exchange(proxy.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 503 ") and b"overloaded" in raw
    wait_until(lambda: metrics(proxy)["streamproxy_tunnels_open"] == 0, WAIT, "the tunnel end")
    assert metrics(proxy)["streamproxy_in_flight_requests"] == 0
    assert exchange(proxy.port, b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n").startswith(b"HTTP/1.1 200")


# Body limit (docs/guardrails.md "Body limit")


def test_content_length_over_the_limit_is_413_before_the_app_sees_anything(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """--max-request-body 100: a declared 101 bytes is refused at the head (an Expect:
    100-continue client gets the 413 instead of the 100); the app gets no connection at all.
    Exactly 100 bytes pass."""
    app = recording_app(app_factory)
    proxy = proxy_factory(app.url, "--max-request-body", "100")
    with RawClient(proxy.port) as client:
        client.send(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n"
        )
        response = client.read_response()
        assert response.status == 413
        assert response.header(b"x-streamproxy-error") == b"body_too_large"
        assert response.header(b"connection") == b"close"
        assert b"100 Continue" not in response.raw
    assert app.connections == 0 and app.requests == []
    body = b"x" * 100
    raw = exchange(
        proxy.port, b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + body
    )
    assert raw.startswith(b"HTTP/1.1 200")
    assert metrics(proxy)["streamproxy_requests_too_large_total"] == 1
    assert counter(proxy) == 2  # the refused request reached the forwarder: counted


def test_chunked_body_crossing_the_limit_is_413_and_the_app_sees_it_aborted(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """A chunked upload is counted as it streams: the chunk that crosses the limit is not
    forwarded, the app's request is aborted (never ended with a last-chunk), the client gets
    413 and the connection closes."""
    got_first = threading.Event()
    holder: list[ScriptedApp] = []

    async def script(conn: AppConn) -> None:
        app = holder[0]
        await conn.reader.readuntil(b"\r\n\r\n")
        received = b""
        try:
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await conn.reader.readexactly(size + 2)
                if size == 0:
                    app.record("complete")
                    break
                received += chunk[:-2]
                got_first.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            app.record(f"aborted after {len(received)}")
            return
        await conn.send(OK)

    app = app_factory(script)
    holder.append(app)
    proxy = proxy_factory(app.url, "--max-request-body", "100")
    with RawClient(proxy.port) as client:
        client.send(
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3c\r\n" + b"a" * 60 + b"\r\n"
        )
        assert got_first.wait(WAIT)
        client.send(b"3c\r\n" + b"b" * 60 + b"\r\n")
        response = client.read_response()
        assert response.status == 413
        assert response.header(b"x-streamproxy-error") == b"body_too_large"
        assert response.header(b"connection") == b"close"
    wait_until(lambda: bool(app.events), WAIT, "the app to see the body end")
    assert app.events == ["aborted after 60"]
    assert metrics(proxy)["streamproxy_requests_too_large_total"] == 1


def test_pipelined_chunked_body_over_the_limit_is_413_in_turn(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """A chunked body that crosses the limit while its request waits behind another
    (pipelined, RFC 9112 §9.3.2): the first is answered, then the 413, in request order; the
    app sees only the first."""
    app = recording_app(app_factory)
    proxy = proxy_factory(app.url, "--max-request-body", "100")
    with RawClient(proxy.port) as client:
        client.send(
            b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3c\r\n" + b"a" * 60 + b"\r\n3c\r\n" + b"b" * 60 + b"\r\n0\r\n\r\n"
        )
        first = client.read_response()
        assert first.status == 200 and first.body == b"ok"
        second = client.read_response()
        assert second.status == 413
        assert second.header(b"x-streamproxy-error") == b"body_too_large"
    assert len(app.requests) == 1 and app.requests[0].startswith(b"GET /first")


def test_chunked_body_crossing_the_limit_after_the_response_started_aborts_the_client(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """An app that answers before reading the body: a 413 can no longer be sent, so the
    client's connection is aborted (never a clean end) and the app's request too."""
    answered = threading.Event()

    async def script(conn: AppConn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        answered.set()
        while await conn.reader.read(65536):
            pass

    proxy = proxy_factory(app_factory(script).url, "--max-request-body", "100")
    with RawClient(proxy.port) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert answered.wait(WAIT)
        read_until(client, b"hello")
        client.send(b"c8\r\n" + b"b" * 200 + b"\r\n")
        client.read_until_closed()
        assert client.closed
    assert metrics(proxy)["streamproxy_requests_too_large_total"] == 1


# The app's time, the pool, in-flight and tunnels in /metrics


def test_metrics_show_the_apps_time_and_the_pool(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """streamproxy_upstream_duration_seconds is the app's time to its response head (0.3 s
    here), apart from the whole request's; with a pool of one connection two concurrent
    requests wait once for a slot; afterwards the connection is idle, none busy."""
    release = threading.Event()
    holder: list[ScriptedApp] = []

    async def script(conn: AppConn) -> None:
        while True:
            head, _ = await conn.read_request()
            holder[0].requests.append(head)
            if b"/slow" in head:
                await asyncio.sleep(0.3)
            else:
                await asyncio.to_thread(release.wait, WAIT)
            await conn.send(OK)

    app = app_factory(script)
    holder.append(app)
    proxy = proxy_factory(app.url, "--upstream-pool-size", "1")
    assert exchange(proxy.port, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").startswith(
        b"HTTP/1.1 200"
    )
    sample = metrics(proxy)
    assert sample["streamproxy_upstream_duration_seconds_count"] == 1
    assert 0.3 <= sample["streamproxy_upstream_duration_seconds_sum"] < 5
    assert (
        sample["streamproxy_request_duration_seconds_sum"]
        >= (sample["streamproxy_upstream_duration_seconds_sum"])
    )
    assert sample["streamproxy_upstream_pool_idle_connections"] == 1
    assert sample["streamproxy_upstream_pool_busy_connections"] == 0
    assert sample["streamproxy_upstream_pool_waits_total"] == 0

    clients = [RawClient(proxy.port) for _ in range(2)]
    try:
        for client in clients:
            client.send(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_until(lambda: len(app.requests) == 2, WAIT, "the first held request")
        wait_until(
            lambda: metrics(proxy)["streamproxy_upstream_pool_waits_total"] == 1,
            WAIT,
            "a wait for the pool's only slot",
        )
        sample = metrics(proxy)
        assert sample["streamproxy_upstream_pool_busy_connections"] == 1
        assert sample["streamproxy_upstream_pool_idle_connections"] == 0
        assert sample["streamproxy_in_flight_requests"] == 2
        release.set()
        for client in clients:
            assert client.read_response().status == 200
    finally:
        for client in clients:
            client.sock.close()
    sample = metrics(proxy)
    assert sample["streamproxy_upstream_duration_seconds_count"] == 3
    assert sample["streamproxy_upstream_pool_busy_connections"] == 0


# The access log line (docs/guardrails.md "The access log line")


def access_lines(proxy: Proxy) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in proxy.log().splitlines()
        if '"logger":"streamproxy.access"' in line
    ]


def test_access_log_line_carries_the_request(
    app_factory: Callable[..., ScriptedApp], proxy_factory: Callable[..., Proxy]
) -> None:
    """One JSON object per request: method, raw path (no query), status, body bytes both ways,
    total and upstream milliseconds, client address, request ID, user agent."""

    async def script(conn: AppConn) -> None:
        while True:
            await conn.read_request()
            await asyncio.sleep(0.05)
            reply = b"x" * 1234
            await conn.send(b"HTTP/1.1 201 Created\r\nContent-Length: 1234\r\n\r\n" + reply)

    proxy = proxy_factory(app_factory(script).url, "--access-log")
    with RawClient(proxy.port) as client:
        client.send(
            b"POST /items/caf%C3%A9/1?token=secret HTTP/1.1\r\nHost: a\r\n"
            b'User-Agent: curl/8.5.0 "quoted"\r\nX-Request-Id: trace-42\r\n'
            b"Content-Length: 5\r\n\r\nhello"
        )
        assert client.read_response().status == 201
    wait_until(lambda: len(access_lines(proxy)) == 1, WAIT, "the access log line")
    line = access_lines(proxy)[0]
    assert line["msg"] == "request" and line["level"] == "info"
    assert line["method"] == "POST"
    assert line["path"] == "/items/caf%C3%A9/1"
    assert line["status"] == 201
    assert line["bytes_in"] == 5 and line["bytes_out"] == 1234
    upstream_ms, duration_ms = line["upstream_ms"], line["duration_ms"]
    assert isinstance(upstream_ms, float) and isinstance(duration_ms, float)
    assert 50 <= upstream_ms <= duration_ms < 5000
    assert line["client"] == "127.0.0.1"
    assert line["request_id"] == "trace-42"
    assert line["user_agent"] == 'curl/8.5.0 "quoted"'

    # A request the proxy answers itself: no upstream time, a generated ID, no user agent.
    with RawClient(proxy.port) as client:
        client.send(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n")
        assert client.read_response().status == 405
    wait_until(lambda: len(access_lines(proxy)) == 2, WAIT, "two access log lines")
    refused = access_lines(proxy)[1]
    assert refused["status"] == 405 and refused["upstream_ms"] is None
    assert refused["user_agent"] is None
    assert isinstance(refused["request_id"], str)
