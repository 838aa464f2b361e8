"""H1UpstreamClient against real servers on loopback: scripted asyncio servers and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
import uvloop

from sidecar.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamProtocolError,
    UpstreamReadTimeout,
)
from sidecar.h1_connection import HIGH_WATER
from sidecar.settings import Settings
from sidecar.types import Message, Receive, Scope, Send
from sidecar.upstream import make_upstream_client
from sidecar.upstream_h1 import H1UpstreamClient

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


class Request:
    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body
        lines = head.split(b"\r\n")
        self.line = lines[0]
        self.header_lines = [line for line in lines[1:] if line]
        self.headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in self.header_lines)
        ]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


async def read_request(reader: Reader, read_body: bool = True) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    request = Request(head, b"")
    if not read_body:
        return request
    length = request.header(b"content-length")
    if length is not None:
        request.body = await reader.readexactly(int(length))
    elif (request.header(b"transfer-encoding") or b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        request.body = b"".join(parts)
    return request


def response(status: int = 200, body: bytes = b"", headers: list[bytes] | None = None) -> bytes:
    lines = [b"HTTP/1.1 %d X" % status, *(headers or []), b"content-length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


Handler = Callable[[Reader, Writer, "Upstream"], Awaitable[None]]


class Upstream:
    """A loopback server running `handler` once per connection; records what it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0
        self.open = 0
        self.closed_by_client = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: Reader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a reset, or the test is over
        finally:
            self.open -= 1
            self._tasks.discard(task)
            writer.close()

    async def serve(self, reader: Reader, writer: Writer, make: Callable[[Request], bytes]) -> None:
        """Keep-alive loop: one response per request until the client closes."""
        while (request := await read_request(reader)) is not None:
            self.requests.append(request)
            writer.write(make(request))
            await writer.drain()
        self.closed_by_client += 1

    def settings(self, **overrides: object) -> Settings:
        return Settings(upstream=f"http://127.0.0.1:{self.port}", **overrides)  # type: ignore[arg-type]


def simple(body: bytes = b"hello", headers: list[bytes] | None = None) -> Handler:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await up.serve(reader, writer, lambda _: response(200, body, headers))

    return handler


async def read_all(resp: object) -> bytes:
    chunks = [chunk async for chunk in resp.body()]  # type: ignore[attr-defined]
    await resp.aclose()  # type: ignore[attr-defined]
    return b"".join(chunks)


async def agen(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# Request head: exactly as given


@pytest.mark.parametrize(
    "target",
    [b"/", b"//x/y", b"/a%2Fb?q=%2F&x=1+2", b"/@evil.example/x", b"/p?a=b&&c=%ZZ", b"*"],
)
async def test_target_is_sent_byte_for_byte(target: bytes) -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("GET", target, [(b"host", b"app")], None)
        assert await read_all(resp) == b"hello"
        assert up.requests[0].line == b"GET " + target + b" HTTP/1.1"
        await client.aclose()


async def test_headers_written_exactly_in_order_with_repeats_and_case() -> None:
    headers = [
        (b"host", b"app:8080"),
        (b"x-b", b"2"),
        (b"cookie", b"a=1"),
        (b"X-Mixed-Case", b"v"),
        (b"x-b", b"1"),
        (b"cookie", b"b=2"),
    ]
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        await read_all(await client.request("GET", b"/", headers, None))
        assert up.requests[0].header_lines == [b"%s: %s" % pair for pair in headers]
        await client.aclose()


@pytest.mark.parametrize("kind", ["h1", "aiohttp"])
async def test_response_headers_keep_order_and_multiplicity_with_names_lower_cased(
    kind: str,
) -> None:
    # The seam's rule for every client: names folded once, by the client that parsed them.
    extra = [b"Set-Cookie: a=1", b"X-One: 1", b"Set-Cookie: b=2", b"Content-Encoding: gzip"]
    async with Upstream(simple(b"\x1f\x8b raw", extra)) as up:
        client = make_upstream_client(up.settings(upstream_client=kind))
        resp = await client.request("GET", b"/", [], None)
        assert resp.status == 200
        assert resp.headers == [
            (b"set-cookie", b"a=1"),
            (b"x-one", b"1"),
            (b"set-cookie", b"b=2"),
            (b"content-encoding", b"gzip"),
            (b"content-length", b"6"),
        ]
        assert await read_all(resp) == b"\x1f\x8b raw"  # never decompressed
        await client.aclose()


# Request bodies


async def test_body_with_content_length_is_sent_raw() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        headers = [(b"content-length", b"11")]
        await read_all(await client.request("POST", b"/", headers, agen(b"hello", b" world")))
        request = up.requests[0]
        assert request.body == b"hello world"
        assert request.header(b"transfer-encoding") is None
        assert request.header_lines == [b"content-length: 11"]
        await client.aclose()


async def test_body_without_framing_is_chunked() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        await read_all(await client.request("PUT", b"/", [], agen(b"ab", b"", b"cde")))
        request = up.requests[0]
        assert request.header(b"transfer-encoding") == b"chunked"
        assert request.body == b"abcde"
        await client.aclose()


async def test_given_chunked_framing_is_not_doubled() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        headers = [(b"transfer-encoding", b"chunked")]
        await read_all(await client.request("POST", b"/", headers, agen(b"xyz")))
        assert up.requests[0].header_lines == [b"transfer-encoding: chunked"]
        assert up.requests[0].body == b"xyz"
        await client.aclose()


async def test_post_without_body_gets_content_length_zero_and_get_gets_nothing() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        await read_all(await client.request("POST", b"/", [], None))
        await read_all(await client.request("GET", b"/", [], None))
        assert up.requests[0].header_lines == [b"content-length: 0"]
        assert up.requests[1].header_lines == []
        await client.aclose()


# Response bodies and framing


async def test_complete_is_set_with_the_last_chunk() -> None:
    async with Upstream(simple(b"small body")) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("GET", b"/", [], None)
        assert not resp.complete
        body = resp.body()
        assert await anext(body) == b"small body"
        assert resp.complete  # no need to ask body() again before sending more_body=False
        assert client.idle_connections == 1  # and the connection is back in the pool
        with pytest.raises(StopAsyncIteration):
            await anext(body)
        await resp.aclose()
        await client.aclose()


async def test_chunked_response_is_dechunked() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"first ", b"second ", b"third"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await up.serve(reader, writer, lambda _: response(200, b"again"))

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        assert await read_all(await client.request("GET", b"/", [], None)) == b"first second third"
        assert await read_all(await client.request("GET", b"/", [], None)) == b"again"
        assert up.connections == 1  # reused after a clean chunked response
        await client.aclose()


async def test_body_delimited_by_close_is_complete_and_not_reused() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        assert await read_all(await client.request("GET", b"/", [], None)) == b"until the end"
        assert await read_all(await client.request("GET", b"/", [], None)) == b"until the end"
        assert up.connections == 2
        await client.aclose()


async def test_head_response_has_no_body_and_connection_is_reused() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        def make(request: Request) -> bytes:
            if request.line.startswith(b"HEAD"):
                return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            return response(200, b"body")

        await up.serve(reader, writer, make)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("HEAD", b"/", [], None)
        assert resp.headers == [(b"content-length", b"1000")]
        assert await read_all(resp) == b""
        assert await read_all(await client.request("GET", b"/", [], None)) == b"body"
        resp = await client.request("HEAD", b"/", [], None)
        assert await read_all(resp) == b""
        assert up.connections == 1
        await client.aclose()


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(status: int) -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        head = b"HTTP/1.1 %d X\r\nETag: x\r\n\r\n" % status
        await up.serve(reader, writer, lambda _: head)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        for _ in range(3):
            resp = await client.request("GET", b"/", [], None)
            assert resp.status == status
            assert await read_all(resp) == b""
        assert up.connections == 1
        await client.aclose()


async def test_interim_responses_are_skipped() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        request = await read_request(reader, read_body=False)
        assert request is not None
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
        await writer.drain()
        body = await reader.readexactly(int(request.header(b"content-length") or 0))
        writer.write(response(201, body, [b"X-Final: yes"]))
        await up.serve(reader, writer, lambda _: response(200, b"next"))

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        headers = [(b"expect", b"100-continue"), (b"content-length", b"4")]
        resp = await client.request("POST", b"/", headers, agen(b"data"))
        assert resp.status == 201
        assert resp.headers == [(b"x-final", b"yes"), (b"content-length", b"4")]
        assert await read_all(resp) == b"data"
        assert await read_all(await client.request("GET", b"/", [], None)) == b"next"
        assert up.connections == 1
        await client.aclose()


# Streaming in bounded memory, both ways


async def test_big_download_is_streamed_with_backpressure() -> None:
    total = 64 * 1024 * 1024
    sent = 0

    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        block = b"x" * 65536
        while sent < total:
            writer.write(block)
            sent += len(block)
            await writer.drain()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("GET", b"/big", [], None)
        await asyncio.sleep(0.3)  # a slow consumer: the app must be held back
        assert sent < 24 * 1024 * 1024
        conn = resp._conn
        assert conn is not None and conn.reading_paused
        assert conn.buffered <= HIGH_WATER + 256 * 1024
        received = peak = 0
        async for chunk in resp.body():
            received += len(chunk)
            if resp._conn is not None:
                peak = max(peak, resp._conn.buffered)
        assert received == total
        assert peak <= HIGH_WATER + 256 * 1024
        await resp.aclose()
        await client.aclose()


async def test_big_upload_waits_for_the_app() -> None:
    produced = 0
    total = 64 * 1024 * 1024
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        block = b"y" * 65536
        while produced < total:
            produced += len(block)
            yield block

    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        request = await read_request(reader, read_body=False)
        assert request is not None
        await release.wait()
        received = 0
        while received < total:
            received += len(await reader.read(1 << 20))
        writer.write(response(200, b"%d" % received))
        await writer.drain()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        task = asyncio.ensure_future(
            client.request("POST", b"/up", [(b"content-length", b"%d" % total)], body())
        )
        await asyncio.sleep(0.3)
        assert produced < 24 * 1024 * 1024  # held back by drain(), not buffered
        release.set()
        resp = await task
        assert await read_all(resp) == b"%d" % total
        await client.aclose()


async def test_slow_upload_is_not_a_read_timeout() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            await asyncio.sleep(0.1)
            yield b"slow"

    async with Upstream(simple(b"ok")) as up:
        client = H1UpstreamClient(up.settings(read_timeout=0.15))
        resp = await client.request("POST", b"/", [], body())
        assert await read_all(resp) == b"ok"
        assert up.requests[0].body == b"slow" * 4
        await client.aclose()


# Errors


async def test_connect_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = H1UpstreamClient(Settings(upstream=f"http://127.0.0.1:{port}"))
    with pytest.raises(UpstreamConnectError) as info:
        await client.request("GET", b"/", [], None)
    assert info.value.status == 502 and info.value.reason == "connect_refused"
    assert client.connections == 0
    await client.aclose()


async def test_silent_upstream_is_a_read_timeout() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings(read_timeout=0.2))
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamReadTimeout) as info:
            await client.request("GET", b"/", [], None)
        assert 0.15 < asyncio.get_running_loop().time() - started < 1.5
        assert info.value.status == 504
        await eventually(lambda: client.connections == 0)
        await client.aclose()


async def test_silence_between_chunks_is_a_read_timeout() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings(read_timeout=0.2))
        resp = await client.request("GET", b"/", [], None)
        body = resp.body()
        assert await anext(body) == b"abc"
        with pytest.raises(UpstreamReadTimeout):
            await anext(body)
        await resp.aclose()
        await eventually(lambda: client.connections == 0)
        await client.aclose()


async def test_abort_mid_body_is_a_protocol_error() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 5000)
        await writer.drain()
        writer.transport.abort()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("GET", b"/", [], None)
        with pytest.raises(UpstreamProtocolError) as info:
            async for _ in resp.body():
                pass
        assert info.value.reason == "upstream_reset"
        await resp.aclose()
        await eventually(lambda: client.connections == 0)
        await client.aclose()


async def test_close_before_any_response_on_a_fresh_connection_is_an_error() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        with pytest.raises(UpstreamProtocolError):
            await client.request("GET", b"/", [], None)
        assert up.connections == 1  # a fresh connection is never retried
        await client.aclose()


async def test_garbage_response_is_a_protocol_error() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        with pytest.raises(UpstreamProtocolError):
            await client.request("GET", b"/", [], None)
        await client.aclose()


async def test_invalid_target_never_reaches_the_app() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        for target in (b"/a b", b"/x\r\nHost: evil", b""):
            with pytest.raises(UpstreamProtocolError):
                await client.request("GET", target, [], None)
        assert up.connections == 0
        await client.aclose()


async def test_failing_request_body_closes_the_connection() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part"
        raise RuntimeError("client went away")

    outcome: list[str] = []

    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        try:
            await read_request(reader)  # chunked: never complete without the terminator
            outcome.append("complete body")
        except (asyncio.IncompleteReadError, ConnectionError):
            outcome.append("truncated")

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        with pytest.raises(RuntimeError, match="client went away"):
            await client.request("POST", b"/", [], body())
        await eventually(lambda: client.connections == 0 and outcome == ["truncated"])
        await client.aclose()


# Connection reuse and the pool


async def test_connection_is_reused() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings())
        for _ in range(20):
            assert await read_all(await client.request("GET", b"/", [], None)) == b"hello"
        assert up.connections == 1
        assert client.connections == 1 and client.idle_connections == 1
        await client.aclose()
        await eventually(lambda: up.open == 0)


@pytest.mark.parametrize("side", ["request", "response"])
async def test_connection_close_from_either_side_is_honoured(side: str) -> None:
    extra = [b"Connection: close"] if side == "response" else []
    async with Upstream(simple(b"x", extra)) as up:
        client = H1UpstreamClient(up.settings())
        headers = [(b"connection", b"close")] if side == "request" else []
        for _ in range(3):
            assert await read_all(await client.request("GET", b"/", headers, None)) == b"x"
        assert up.connections == 3
        await eventually(lambda: client.connections == 0)
        await client.aclose()


async def test_http10_response_is_not_reused() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await up.serve(reader, writer, lambda _: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        for _ in range(2):
            assert await read_all(await client.request("GET", b"/", [], None)) == b"ok"
        assert up.connections == 2
        await client.aclose()


async def test_keepalive_race_is_retried_on_a_fresh_connection() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        request = await read_request(reader)
        assert request is not None
        up.requests.append(request)
        writer.write(response(200, b"#%d" % len(up.requests)))
        await writer.drain()
        await asyncio.sleep(0.05)  # then close the idle connection, like uvicorn after 5 s

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        for method, body in [("GET", None), ("POST", agen(b"payload")), ("DELETE", None)]:
            resp = await client.request(method, b"/", [], body)
            await read_all(resp)
            await asyncio.sleep(0.15)
        assert [r.line.split()[0] for r in up.requests] == [b"GET", b"POST", b"DELETE"]
        assert up.requests[1].body == b"payload"
        await client.aclose()


async def test_keepalive_race_when_close_arrives_after_the_request_is_written() -> None:
    # The app closes the idle connection just as the next request goes out.
    closing = asyncio.Event()

    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        request = await read_request(reader)
        if request is None:
            return
        up.requests.append(request)
        writer.write(response(200, b"ok"))
        await writer.drain()
        if len(up.requests) == 1:
            await closing.wait()
            await read_request(reader, read_body=False)  # swallow the next one, then close
            return
        await up.serve(reader, writer, lambda _: response(200, b"ok"))

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        await read_all(await client.request("GET", b"/", [], None))
        closing.set()
        resp = await client.request("POST", b"/", [(b"content-length", b"3")], agen(b"abc"))
        assert await read_all(resp) == b"ok"
        assert up.connections == 2
        assert up.requests[-1].body == b"abc"
        await client.aclose()


async def test_idle_connections_expire() -> None:
    async with Upstream(simple()) as up:
        client = H1UpstreamClient(up.settings(upstream_keepalive=0.1))
        await read_all(await client.request("GET", b"/", [], None))
        assert client.idle_connections == 1
        await eventually(lambda: up.closed_by_client == 1 and client.connections == 0)
        await client.aclose()


async def test_pool_size_caps_concurrent_connections() -> None:
    peak = 0

    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        nonlocal peak
        peak = max(peak, up.open)
        while (request := await read_request(reader)) is not None:
            up.requests.append(request)
            await asyncio.sleep(0.05)
            writer.write(response(200, b"ok"))
            await writer.drain()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings(upstream_pool_size=2))

        async def one() -> bytes:
            return await read_all(await client.request("GET", b"/", [], None))

        assert await asyncio.gather(*(one() for _ in range(8))) == [b"ok"] * 8
        assert peak <= 2 and up.connections == 2
        await client.aclose()


async def test_waiting_for_a_busy_pool_is_bounded_by_connect_timeout() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        await reader.read()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings(upstream_pool_size=1, connect_timeout=0.2))
        first = asyncio.ensure_future(client.request("GET", b"/", [], None))
        await eventually(lambda: up.connections == 1)
        with pytest.raises(UpstreamConnectTimeout) as info:
            await client.request("GET", b"/", [], None)
        assert info.value.status == 504
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await client.aclose()


async def test_early_response_during_upload_is_returned_and_not_reused() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader, read_body=False)
        writer.write(response(413, b"too big", [b"Connection: close"]))
        await writer.drain()
        await asyncio.sleep(0.5)

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            yield b"q" * 65536
            await asyncio.sleep(0)

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("POST", b"/", [], endless())
        assert resp.status == 413
        assert await read_all(resp) == b"too big"
        await eventually(lambda: client.connections == 0)
        await client.aclose()


# Cancellation


async def test_cancel_while_waiting_for_headers_closes_the_connection() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        await reader.read()  # wait for the client to go away
        up.closed_by_client += 1

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        task = asyncio.ensure_future(client.request("GET", b"/", [], None))
        await eventually(lambda: up.connections == 1)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: up.closed_by_client == 1 and client.connections == 0)
        assert client.idle_connections == 0
        await client.aclose()


async def test_aclose_before_the_body_is_read_closes_the_connection() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"b" * 50_000)
        await writer.drain()
        await reader.read()  # the rest never comes; wait for the client to go away
        up.closed_by_client += 1

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("GET", b"/", [], None)
        body = resp.body()
        await anext(body)
        await resp.aclose()
        await eventually(lambda: client.connections == 0 and up.closed_by_client == 1)
        assert client.idle_connections == 0
        await client.aclose()


async def test_cancel_while_reading_the_body_closes_the_connection() -> None:
    async def handler(reader: Reader, writer: Writer, up: Upstream) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await reader.read()

    async with Upstream(handler) as up:
        client = H1UpstreamClient(up.settings())
        resp = await client.request("GET", b"/", [], None)

        async def consume() -> None:
            async for _ in resp.body():
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: client.connections == 0 and up.open == 0)
        await client.aclose()


# A real ASGI server as the app


async def _uvicorn_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = b""
    more = True
    while more:
        message: Message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    reply = b"%s %s %d" % (scope["method"].encode(), scope["raw_path"], len(body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": reply})


async def test_against_uvicorn_with_keepalive_race() -> None:
    config = uvicorn.Config(
        _uvicorn_app,
        host="127.0.0.1",
        port=0,
        log_level="error",
        lifespan="off",
        timeout_keep_alive=1,
        http="httptools",
    )
    server = uvicorn.Server(config)
    serve = asyncio.ensure_future(server.serve())
    await eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = H1UpstreamClient(Settings(upstream=f"http://127.0.0.1:{port}"))
    try:
        resp = await client.request("POST", b"/a%2Fb?x=1", [(b"host", b"t")], agen(b"12345"))
        assert resp.status == 200 and (b"x-app", b"1") in resp.headers
        assert await read_all(resp) == b"POST /a%2Fb 5"
        await asyncio.sleep(1.3)  # uvicorn closes the idle connection meanwhile
        resp = await client.request("GET", b"/again", [(b"host", b"t")], None)
        assert await read_all(resp) == b"GET /again 0"
    finally:
        await client.aclose()
        server.should_exit = True
        await asyncio.wait_for(serve, 5)


# The proxy runs on uvloop, whose transports differ from asyncio's in small ways: run the
# scenarios that lean on transport behaviour (flow control, aborts, EOF) on uvloop too.

UVLOOP_SCENARIOS: list[Callable[[], Awaitable[None]]] = [
    test_headers_written_exactly_in_order_with_repeats_and_case,
    test_body_without_framing_is_chunked,
    test_chunked_response_is_dechunked,
    test_body_delimited_by_close_is_complete_and_not_reused,
    test_interim_responses_are_skipped,
    test_big_download_is_streamed_with_backpressure,
    test_big_upload_waits_for_the_app,
    test_connect_refused,
    test_silence_between_chunks_is_a_read_timeout,
    test_abort_mid_body_is_a_protocol_error,
    test_keepalive_race_when_close_arrives_after_the_request_is_written,
    test_idle_connections_expire,
    test_pool_size_caps_concurrent_connections,
    test_early_response_during_upload_is_returned_and_not_reused,
    test_cancel_while_waiting_for_headers_closes_the_connection,
    test_aclose_before_the_body_is_read_closes_the_connection,
    test_cancel_while_reading_the_body_closes_the_connection,
]


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS, ids=lambda f: f.__name__[5:])
def test_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())  # type: ignore[arg-type]
