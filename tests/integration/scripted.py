"""Raw-socket helpers for wire-level tests: a scripted upstream app and a raw HTTP client.

`ScriptedApp` runs its own event loop in a thread and hands each accepted connection to a
script (`async def script(conn: AppConn)`), so a test can make the app do what real apps do
only sometimes: send a 304 with a length, reset mid-body, read a POST and drop it, answer
before reading the body, switch protocols. `RawClient` speaks HTTP/1.x over a plain socket and
parses responses with httptools, so a test sees exactly what the proxy wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools

IO_TIMEOUT = 10.0


class AppConn:
    """One connection to the scripted app, as its script sees it."""

    def __init__(
        self, app: ScriptedApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.requests = 0

    async def read_request(self) -> tuple[bytes, bytes]:
        """One request: its head (up to the blank line) and its de-chunked body."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not self.requests:
            self.app.connections += 1  # one that carried a request (not a health check)
        self.requests += 1
        lowered = head.lower()
        body = b""
        if b"\r\ntransfer-encoding: chunked" in lowered:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            for line in lowered.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    body = await self.reader.readexactly(int(line.split(b":")[1]))
        return head, body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), not a clean FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


Script = Callable[[AppConn], Awaitable[None]]


class ScriptedApp:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0  # connections that carried at least one request
        self.requests: list[bytes] = []  # heads, as scripts record them with `record`
        self.events: list[str] = []
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, event: str) -> None:
        self.events.append(event)

    async def _start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        conn = AppConn(self, reader, writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, OSError):
            await self.script(conn)
        if not writer.transport.is_closing():
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in self._writers:
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False  # the parser saw the message end (not just the connection)
    raw: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Collector:
    def __init__(self, response: Response) -> None:
        self.response = response
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.response.body += body

    def on_message_complete(self) -> None:
        self.done = True


class RawClient:
    """HTTP over a plain socket: `send` bytes, `read_response` one parsed response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self._buffer = b""
        self.closed = False  # the proxy ended the connection (FIN or reset)
        self.reset = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.closed = True
        return data

    def read_response(self, head_only: bool = False) -> Response:
        """One response; bytes after it (a pipelined response, tunnel data) stay buffered.
        Fed to the parser a byte at a time, so it stops exactly at the message's end."""
        response = Response()
        collector = _Collector(response)
        parser = httptools.HttpResponseParser(collector)
        data, self._buffer = self._buffer, b""
        while True:
            for index in range(len(data)):
                response.raw += data[index : index + 1]
                try:
                    parser.feed_data(data[index : index + 1])
                except httptools.HttpParserUpgrade:
                    collector.done = True
                if head_only and response.raw.endswith(b"\r\n\r\n"):
                    collector.done = True
                if collector.done:
                    response.status = parser.get_status_code()
                    response.complete = True
                    self._buffer = data[index + 1 :]
                    return response
            data = self._recv()
            if not data:
                if response.raw:
                    response.status = parser.get_status_code()
                return response

    def read_until_closed(self) -> bytes:
        data = self._buffer
        self._buffer = b""
        while chunk := self._recv():
            data += chunk
        return data


def read_until(client: RawClient, marker: bytes) -> bytes:
    """Bytes from `client` until `marker` has arrived (kept for the next read)."""
    data = client._buffer
    while marker not in data:
        chunk = client._recv()
        if not chunk:
            break
        data += chunk
    client._buffer = data
    return data
