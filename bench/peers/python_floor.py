"""python-floor: the least a Python reverse proxy can do (a bench target, not a product).

uvloop + httptools, asyncio protocol callbacks only: no ASGI, no task or coroutine per request.
Happy path: keep-alive on both sides; Content-Length or chunked bodies relayed both ways, one
write per read, a Content-Length body's bytes relayed without the parser once its head is
parsed; hop-by-hop headers (and the names Connection lists) stripped; X-Forwarded-For added; a
LIFO pool of idle upstream connections; backpressure both ways; an upgrade (101) relayed as a
byte tunnel. No timeouts, no pipelining, no HEAD or close-delimited responses, 502
as the only error. What streamproxy spends above this is what its contract costs.

    python -m bench.peers.python_floor --port 15000 --upstream http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
from http import HTTPStatus
from urllib.parse import urlsplit

import httptools
import uvloop

HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
     b"transfer-encoding", b"upgrade")
)  # fmt: skip
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
IDLE_MAX = 1024  # idle upstream connections kept (streamproxy: a pool of 1,024)
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def filter_headers(headers: list[tuple[bytes, bytes]], head: list[bytes]) -> tuple[bool, int]:
    """Append `name: value` lines to head, minus hop-by-hop: (chunked?, Content-Length or 0)."""
    drop, chunked, length = HOP_BY_HOP, False, 0
    for name, value in headers:  # names a Connection header lists are hop-by-hop too
        if len(name) == 10 and name.lower() == b"connection":
            drop = drop.union(token.strip().lower() for token in value.split(b","))
    for name, value in headers:
        lower = name.lower()
        if lower in drop:
            chunked = chunked or (lower == b"transfer-encoding" and b"chunked" in value.lower())
        elif lower != b"x-forwarded-for":
            head += (name, b": ", value, b"\r\n")
            if lower == b"content-length":
                length = int(value)
    return chunked, 0 if chunked else length


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Upstream] = []

    def get(self, client: Client) -> None:
        if self.idle:
            self.idle.pop().attach(client)
            return
        loop = asyncio.get_event_loop()
        connecting = loop.create_task(
            loop.create_connection(lambda: Upstream(self), self.host, self.port)
        )
        connecting.add_done_callback(
            lambda done: client.fail() if done.exception() else done.result()[1].attach(client)
        )

    def put(self, upstream: Upstream) -> None:
        if len(self.idle) < IDLE_MAX:
            self.idle.append(upstream)
        else:
            upstream.transport.close()


class Side(asyncio.Protocol):
    """What both ends share: parsing or relaying what arrives, header callbacks, backpressure."""

    transport: asyncio.Transport
    parser: httptools.HttpRequestParser | httptools.HttpResponseParser
    peer: Side | None = None
    tunnel = chunked = keep_alive = False
    length = left = 0  # a Content-Length body: bytes not yet seen; once parsing stops, relayed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.headers: list[tuple[bytes, bytes]] = []
        self.out: list[bytes] = []  # bytes for the peer, written once per data_received
        self.parser = self.new_parser()

    def new_parser(self) -> httptools.HttpRequestParser | httptools.HttpResponseParser:
        raise NotImplementedError

    def receive(self, data: bytes) -> bool:
        """What arrived, parsed or relayed as it is into self.out; False on a parse error."""
        if self.tunnel:
            self.out.append(data)
        elif self.left:  # the rest of a Content-Length body: no parser, no copy
            if len(data) < self.left:
                self.left -= len(data)
                self.out.append(data)
                return True
            self.out.append(data[: self.left])
            data, self.left = data[self.left :], 0
            self.parser = self.new_parser()  # the old one is still in that body
            self.on_message_complete()
            return self.receive(data) if data else True
        else:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                self.tunnel = True
                self.out.append(data[upgrade.args[0] :])
            except httptools.HttpParserError:
                return False
            self.left, self.length = self.length, 0
        return True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if self.chunked:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)
            self.length -= len(body)

    def flush(self) -> None:
        if self.out and self.peer is not None:
            self.peer.transport.write(b"".join(self.out))
            self.out.clear()

    def pause_writing(self) -> None:  # our peer must stop reading until we have drained
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()


class Client(Side):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.responded = True

    def new_parser(self) -> httptools.HttpRequestParser:
        return httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ip = transport.get_extra_info("peername")[0].encode()

    def data_received(self, data: bytes) -> None:
        if not self.receive(data):
            self.fail()
        self.flush()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.responded = b"", [], False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        parser = self.parser
        head = [parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]  # type: ignore[union-attr]
        self.chunked, self.length = filter_headers(self.headers, head)
        xff = [value for name, value in self.headers if name.lower() == b"x-forwarded-for"]
        head += (b"x-forwarded-for: ", b", ".join([*xff, self.ip]), b"\r\n")
        if self.chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        if parser.should_upgrade():
            upgrade = next(value for name, value in self.headers if name.lower() == b"upgrade")
            head += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n")
        head.append(b"\r\n")
        self.out += head
        self.keep_alive = parser.should_keep_alive()
        self.pool.get(self)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.out.append(b"0\r\n\r\n")

    def fail(self) -> None:
        if self.transport.is_closing():
            return
        if not self.responded:
            self.transport.write(BAD_GATEWAY)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:  # mid-exchange or a tunnel: that connection is spoilt
            self.peer.peer = None
            self.peer.transport.close()


class Upstream(Side):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.done = False

    def new_parser(self) -> httptools.HttpResponseParser:
        return httptools.HttpResponseParser(self)

    def attach(self, client: Client) -> None:
        self.peer, client.peer = client, self
        client.flush()  # the request so far

    def data_received(self, data: bytes) -> None:
        client = self.peer
        if client is None:  # bytes from an idle connection: drop it
            self.transport.close()
            return
        if not self.receive(data):
            self.transport.close()
            return
        client.tunnel = self.tunnel
        self.flush()
        if self.done:
            self.done, self.peer, client.peer = False, None, None
            for transport in (client.transport, self.transport):  # as pause_writing left them
                if not transport.is_closing():
                    transport.resume_reading()
            if self.keep_alive:
                self.pool.put(self)
            else:
                self.transport.close()
            if not client.keep_alive:
                client.transport.close()

    def on_message_begin(self) -> None:
        self.headers = []

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = status = parser.get_status_code()  # type: ignore[union-attr]
        head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        self.chunked, self.length = filter_headers(self.headers, head)
        if self.chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        if status == 101:
            upgrade = next(value for name, value in self.headers if name.lower() == b"upgrade")
            head += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n")
        head.append(b"\r\n")
        self.out += head
        self.keep_alive = parser.should_keep_alive()
        if self.peer is not None:
            self.peer.responded = True  # type: ignore[attr-defined]

    def on_message_complete(self) -> None:
        if self.chunked:
            self.out.append(b"0\r\n\r\n")
        self.done = self.status != 101

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.peer is not None:
            self.peer.fail()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port")
    args = parser.parse_args()
    upstream = urlsplit(args.upstream)
    pool = Pool(upstream.hostname or "127.0.0.1", upstream.port or 80)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Client(pool), "127.0.0.1", args.port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
