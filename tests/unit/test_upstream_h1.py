"""H1UpstreamClient pieces alone: head encoding, the connection protocol on a fake transport."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import uvloop

from sidecar.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
)
from sidecar.h1_connection import HIGH_WATER, ConnectionClosed, H1Connection, encode_head
from sidecar.settings import Settings
from sidecar.upstream import UpstreamClient
from sidecar.upstream_h1 import H1Response, H1UpstreamClient

# encode_head


def test_head_keeps_headers_exactly() -> None:
    headers = [(b"host", b"a"), (b"X-Y", b"1"), (b"x-y", b"2"), (b"cookie", b"c=1; d=2")]
    head, chunked, close = encode_head("GET", b"//x/%2F?q", headers, False)
    assert head == (
        b"GET //x/%2F?q HTTP/1.1\r\nhost: a\r\nX-Y: 1\r\nx-y: 2\r\ncookie: c=1; d=2\r\n\r\n"
    )
    assert (chunked, close) == (False, False)


def test_head_adds_chunked_only_without_framing() -> None:
    head, chunked, _ = encode_head("POST", b"/", [], True)
    assert head == b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n" and chunked
    head, chunked, _ = encode_head("POST", b"/", [(b"Content-Length", b"5")], True)
    assert head == b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n" and not chunked
    head, chunked, _ = encode_head("POST", b"/", [(b"transfer-encoding", b"gzip, chunked")], True)
    assert head.count(b"transfer-encoding") == 1 and chunked


@pytest.mark.parametrize(("method", "added"), [("POST", True), ("PUT", True), ("GET", False)])
def test_head_without_body(method: str, added: bool) -> None:
    head, chunked, _ = encode_head(method, b"/", [], False)
    assert (b"content-length: 0" in head) is added and not chunked


def test_head_sees_connection_close() -> None:
    assert encode_head("GET", b"/", [(b"connection", b"Close")], False)[2]
    assert not encode_head("GET", b"/", [(b"connection", b"keep-alive")], False)[2]


def test_head_custom_method() -> None:
    assert encode_head("PROPFIND", b"/", [], False)[0].startswith(b"PROPFIND / HTTP/1.1\r\n")


@pytest.mark.parametrize("target", [b"", b"/a b", b"/a\r\nX: y", b"/a\nb", b"/a\rb", b"/\0"])
def test_head_refuses_a_target_that_would_split_the_request(target: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        encode_head("GET", target, [], False)


# H1Connection on a fake transport


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.paused = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def make_connection(read_timeout: float = 5.0) -> tuple[H1Connection, FakeTransport, list[Any]]:
    lost: list[Any] = []
    conn = H1Connection(asyncio.get_running_loop(), read_timeout, lost.append)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport, lost


async def test_response_parsed_in_pieces() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    raw = b"HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 5\r\n\r\nhello"
    for i in range(len(raw)):
        conn.data_received(raw[i : i + 1])
    assert conn.status == 200 and conn.complete and conn.keep_alive
    assert conn.headers == [(b"set-cookie", b"a"), (b"set-cookie", b"b"), (b"content-length", b"5")]
    assert b"".join(conn.chunks) == b"hello"


@pytest.mark.parametrize(
    ("value", "reusable"),
    [
        (b"keep-alive", True),
        (b"Keep-Alive", True),
        (b"close", False),
        (b"Close", False),
        (b"keep-alive, close", False),
        (b"upgrade", True),
    ],
)
async def test_connection_header_decides_reuse(value: bytes, reusable: bool) -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    head = b"HTTP/1.1 200 OK\r\nConnection: " + value + b"\r\nContent-Length: 0\r\n\r\n"
    conn.data_received(head)
    assert conn.complete and conn.keep_alive is reusable


async def test_head_response_completes_at_headers_and_next_exchange_parses() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert conn.complete and conn.keep_alive and not conn.chunks
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    assert conn.status == 404 and conn.complete and list(conn.chunks) == [b"no"]


async def test_bytes_after_a_head_response_spoil_the_connection() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody")
    assert conn.complete and not conn.chunks and not conn.keep_alive


async def test_extra_response_spoils_the_connection() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert conn.complete and not conn.keep_alive


async def test_content_length_body_after_the_first_read_skips_the_parser() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert not conn.complete and conn._raw_left == 7
    rest = b"defg"
    conn.data_received(rest)
    assert conn.chunks[-1] is rest  # handed over as received, not copied
    conn.data_received(b"hij")
    assert conn.complete and conn.keep_alive and b"".join(conn.chunks) == b"abcdefghij"
    conn.begin(head_only=False)  # the next response gets a fresh parser
    conn.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    assert conn.status == 201 and conn.complete and list(conn.chunks) == [b"ok"]


async def test_bytes_beyond_a_content_length_body_spoil_the_connection() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    conn.data_received(b"cdHTTP/1.1 200 OK\r\n")
    assert conn.complete and not conn.keep_alive and b"".join(conn.chunks) == b"abcd"


async def test_conflicting_content_lengths_are_left_to_the_parser() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n")
    assert conn._raw_left == 0
    assert conn.error is not None or not conn.headers_done


async def test_bytes_on_an_idle_connection_abort_it() -> None:
    conn, transport, _ = make_connection()
    conn.idle = True
    conn.data_received(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert transport.aborted and conn.closed


async def test_interim_responses_do_not_count() -> None:
    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n")
    assert not conn.headers_done and conn.headers == []
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!")
    assert conn.headers_done and conn.complete and conn.headers == [(b"content-length", b"1")]


async def test_switching_protocols_is_refused() -> None:
    conn, transport, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
    assert isinstance(conn.error, UpstreamProtocolError) and transport.aborted


async def test_reading_pauses_past_high_water_and_resumes_when_drained() -> None:
    conn, transport, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
    block = b"." * 65536
    while not transport.paused:
        conn.data_received(block)
    assert conn.buffered > HIGH_WATER
    while transport.paused:
        conn.take()
    assert conn.buffered <= 128 * 1024


async def test_close_mid_body_is_an_error_unless_the_body_runs_to_close() -> None:
    conn, _, lost = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    conn.connection_lost(None)
    assert isinstance(conn.error, ConnectionClosed) and lost == [conn]

    conn, _, _ = make_connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\nabc")
    assert not conn.keep_alive
    conn.connection_lost(None)
    assert conn.complete and conn.error is None


async def test_a_write_on_a_dead_transport_ends_the_exchange() -> None:
    conn, transport, _ = make_connection()
    conn.begin(head_only=False)

    def broken(data: Any) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")

    transport.write = broken  # type: ignore[method-assign]
    assert not conn.write(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(conn.error, ConnectionClosed) and transport.aborted
    assert not conn.write(b"more")  # closed now: no second attempt


async def test_wait_times_out_after_silence() -> None:
    conn, _, _ = make_connection(read_timeout=0.05)
    conn.begin(head_only=False)
    with pytest.raises(UpstreamReadTimeout):
        await conn.wait()


async def test_trickling_bytes_extend_the_wait() -> None:
    conn, _, _ = make_connection(read_timeout=0.1)
    conn.begin(head_only=False)

    async def trickle() -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            await asyncio.sleep(0.01)
            conn.data_received(bytes([byte]))

    task = asyncio.ensure_future(trickle())
    while not conn.headers_done:
        await conn.wait()  # 0.4 s of headers in all, never 0.1 s of silence
    await task


# The client


def test_client_satisfies_the_protocol() -> None:
    client: UpstreamClient = H1UpstreamClient(Settings())
    assert client is not None
    assert issubclass(UpstreamConnectError, UpstreamError)


async def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(loop, "create_connection", hang)
    client = H1UpstreamClient(Settings(connect_timeout=0.05))
    with pytest.raises(UpstreamConnectTimeout) as info:
        await client.request("GET", b"/", [], None)
    assert info.value.status == 504 and client.connections == 0
    await client.aclose()


async def test_closed_client_refuses_requests() -> None:
    client = H1UpstreamClient(Settings())
    await client.aclose()
    with pytest.raises(UpstreamConnectError):
        await client.request("GET", b"/", [], None)


def test_works_on_uvloop() -> None:
    async def main() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError):
                while await reader.readuntil(b"\r\n\r\n"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n")
                    writer.write(b"u" * 300000)
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = H1UpstreamClient(Settings(upstream=f"http://127.0.0.1:{port}"))
        bodies = []
        for _ in range(3):
            resp: H1Response = await client.request("GET", b"/", [], None)
            bodies.append(b"".join([chunk async for chunk in resp.body()]))
            await resp.aclose()
        assert client.connections == 1
        await client.aclose()
        server.close()
        await asyncio.sleep(0.05)  # let both ends see the close
        return b"".join(bodies)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == b"u" * 900000
