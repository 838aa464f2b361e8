"""The benchmark's Python upstream: asyncio + httptools (+ uvloop), one process.

    GET  /small          1 KiB body
    GET  /big?bytes=N    N bytes (default 1 GiB), Content-Length framed, written with drain
    POST /sink           reads the whole body, answers with its size in bytes
    GET  /stats          {"sunk": bytes received by /sink so far, "requests": n}
    GET  /ws             a WebSocket (Upgrade) that echoes every text or binary message

Always used as the upload sink (so "bytes that reached the sink" is measured, not assumed);
also the whole upstream when nginx is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json

import httptools

SMALL = b"x" * 1024
BLOCK = b"\0" * (256 * 1024)
GIB = 1 << 30
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_stats = {"sunk": 0, "requests": 0}


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body_bytes = 0
        self.paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.streaming: asyncio.Future[None] | None = None
        self.ws_key = b""
        self.ws: bytearray | None = None  # once upgraded: bytes of frames not yet whole

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws += data
            self.echo_frames()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def on_message_begin(self) -> None:
        self.url = self.ws_key = b""
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"sec-websocket-key":
            self.ws_key = value

    # WebSocket echo (RFC 6455): enough for the bench's clients, through any proxy.

    def upgrade(self, rest: bytes) -> None:
        assert self.transport is not None
        if not self.url.startswith(b"/ws") or not self.ws_key:
            self.respond(400, b"not a websocket", False)
            return
        accept = base64.b64encode(hashlib.sha1(self.ws_key + WS_GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.ws = bytearray(rest)
        self.echo_frames()

    def echo_frames(self) -> None:
        buf, transport = self.ws, self.transport
        assert buf is not None and transport is not None
        while len(buf) >= 2:
            opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size == 126:
                size, at = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                size, at = int.from_bytes(buf[2:10], "big"), 10
            masked = buf[1] & 0x80
            end = at + (4 if masked else 0) + size
            if len(buf) < end or len(buf) < at:
                return
            payload = bytes(buf[end - size : end])
            if masked:
                key = bytes(buf[at : at + 4]) * (size // 4 + 1)
                payload = (
                    int.from_bytes(payload, "big") ^ int.from_bytes(key[:size], "big")
                ).to_bytes(size, "big")
            del buf[:end]
            if size < 126:
                head = bytes((0x80 | opcode, size))
            elif size < 65536:
                head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
            else:
                head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
            if opcode == 0x9:  # ping -> pong
                head = bytes((0x8A,)) + head[1:]
            transport.write(head + payload)  # text, binary, close: echoed
            if opcode == 0x8:
                transport.close()
                return

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        _stats["sunk"] += len(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():
            return  # data_received answers it (HttpParserUpgrade)
        _stats["requests"] += 1
        path, _, query = self.url.partition(b"?")
        keep = self.parser.should_keep_alive()
        if path == b"/small":
            self.respond(200, SMALL, keep)
        elif path == b"/sink":
            self.respond(200, b"%d" % self.body_bytes, keep)
        elif path == b"/stats":
            self.respond(200, json.dumps(_stats).encode(), keep)
        elif path == b"/big":
            size = GIB
            for pair in query.split(b"&"):
                if pair.startswith(b"bytes="):
                    size = int(pair[6:])
            self.streaming = asyncio.ensure_future(self.stream(size, keep))
        else:
            self.respond(404, b"not found", keep)

    def respond(self, status: int, body: bytes, keep: bool) -> None:
        assert self.transport is not None
        head = b"HTTP/1.1 %d X\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n"
        self.transport.write(
            head % (status, len(body)) + (b"" if keep else b"connection: close\r\n")
        )
        self.transport.write(b"\r\n" + body)
        if not keep:
            self.transport.close()

    async def stream(self, size: int, keep: bool) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        left = size
        while left > 0 and not transport.is_closing():
            block = BLOCK if left >= len(BLOCK) else BLOCK[:left]
            transport.write(block)
            left -= len(block)
            if self.paused:
                self.drain_waiter = asyncio.get_running_loop().create_future()
                await self.drain_waiter
        if not keep:
            transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
