"""One HTTP/1.1 connection to the app: an asyncio Protocol feeding httptools' response parser.

A connection carries one exchange at a time (no pipelining). The parser callbacks fill the
exchange state below; the consumer (`sidecar.upstream_h1`) waits on `wait()` and reads it.
Body chunks queue up to `HIGH_WATER` bytes, then the socket stops being read until the consumer
has caught up, so a slow client slows the app instead of growing our memory.

Responses that httptools cannot frame alone: a response to HEAD ends with its headers (a fresh
parser is used for the next exchange), and a body without Content-Length or chunked framing
ends when the app closes the connection.

The request side: `encode_head` writes the head exactly as given (adding framing only when it
is missing), and `BodySender` streams the body with `drain()`, remembering whether what it
pulled can still be replayed on a new connection (the keep-alive race).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import cast

import httptools

from sidecar.errors import UpstreamProtocolError, UpstreamReadTimeout
from sidecar.types import RawHeaders

# Unread response body bytes past which the socket stops being read.
HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024


class ConnectionClosed(UpstreamProtocolError):
    """The app closed (or reset) the connection before the response ended."""


class H1Connection(asyncio.Protocol):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float,
        on_lost: Callable[[H1Connection], None],
        arm_watchdog: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self._on_lost = on_lost
        # With a watchdog (the pool's periodic check_timeout calls) a wait costs no timer of
        # its own; without one, each wait schedules its own.
        self._arm_watchdog = arm_watchdog
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.parser = httptools.HttpResponseParser(self)
        self._fresh_parser_needed = False

        # Connection state
        self.closed = False
        self.counted = False  # holds one of the pool's slots until connection_lost
        self.sending = False  # a request body is still being streamed
        self.reused = False  # an exchange completed on it before the current one
        self.idle = False
        self.idle_since = 0.0
        self.writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

        # Exchange state
        self.head_only = False
        self.status = 0
        self.headers: RawHeaders = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.got_bytes = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.error: BaseException | None = None
        self._framed = False  # Content-Length or Transfer-Encoding seen
        # Content-Length bodies skip the parser once their headers are in (see data_received).
        self._length = -1  # declared Content-Length; -1 none, -2 conflicting
        self._body_seen = 0
        self._raw_left = 0
        self._interim = False
        self._waiter: asyncio.Future[None] | None = None
        self._last_data = 0.0

    # Exchange control (called by the client)

    def begin(self, head_only: bool) -> None:
        if self._fresh_parser_needed:
            self.parser = httptools.HttpResponseParser(self)
            self._fresh_parser_needed = False
        self.idle = False
        self.head_only = head_only
        self.status = 0
        self.headers = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.got_bytes = False
        self.chunks.clear()
        self.buffered = 0
        self.error = None
        self._framed = False
        self._length = -1
        self._body_seen = 0
        self._raw_left = 0
        self._interim = False

    async def wait(self) -> None:
        """Wait for parser progress; UpstreamReadTimeout after read_timeout of silence."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._last_data = self.loop.time()
        if self._arm_watchdog is not None:
            self._arm_watchdog()
            try:
                await waiter
            finally:
                self._waiter = None
            return
        timer = self.loop.call_later(self.read_timeout, self._check_timeout, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def check_timeout(self, now: float) -> None:
        """Called by the watchdog: fail the wait after read_timeout of silence."""
        waiter = self._waiter
        if (
            waiter is not None
            and not waiter.done()
            and not self.sending
            and now - self._last_data >= self.read_timeout
        ):
            waiter.set_exception(
                UpstreamReadTimeout(f"no response bytes for {self.read_timeout:g}s")
            )

    def _check_timeout(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        remaining = self._last_data + self.read_timeout - self.loop.time()
        if self.sending:
            # The app may rightly wait for the rest of a slow upload before it answers.
            remaining = self.read_timeout
        if remaining > 0.001:
            # Bytes arrived that did not complete a step yet (a slow header section).
            self.loop.call_later(remaining, self._check_timeout, waiter)
            return
        waiter.set_exception(UpstreamReadTimeout(f"no response bytes for {self.read_timeout:g}s"))

    def touch(self) -> None:
        """Restart the silence clock (the request body just ended)."""
        self._last_data = self.loop.time()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """End the exchange with `error` and drop the connection."""
        if self.error is None:
            self.error = error
        self._wake()
        self.abort()

    def take(self) -> bytes:
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered <= LOW_WATER:
            self.reading_paused = False
            if not self.closed:
                self.transport.resume_reading()
        return chunk

    def write(self, *parts: bytes) -> bool:
        """Write unless the connection is gone; a write that fails ends the exchange."""
        if self.closed or self.transport.is_closing():
            self.fail(ConnectionClosed("the app closed the connection"))
            return False
        try:
            if len(parts) == 1:
                self.transport.write(parts[0])
            else:
                self.transport.writelines(parts)
        except (RuntimeError, OSError) as exc:  # uvloop raises on a transport closed under us
            self.fail(ConnectionClosed(f"writing to the app failed: {exc}"))
            return False
        return True

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()

    async def drain(self) -> None:
        if self.writing_paused and not self.closed:
            waiter = self.loop.create_future()
            self._drain_waiter = waiter
            try:
                await waiter
            finally:
                self._drain_waiter = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # Bytes nobody asked for: the connection cannot be trusted for the next request.
            self.abort()
            return
        self.got_bytes = True
        self._last_data = self.loop.time()
        if self._raw_left:
            # The rest of a Content-Length body: hand the bytes over as they are, without the
            # parser's copy of every chunk (a third of the CPU of a big download).
            left = self._raw_left
            if len(data) > left:
                data = data[:left]
                self.keep_alive = False  # bytes beyond the body nobody asked for
            self._raw_left = left - len(data)
            self.on_body(data)
            if not self._raw_left:
                self.complete = True
                self._wake()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(UpstreamProtocolError("unexpected protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            self.fail(UpstreamProtocolError(f"invalid response: {exc}"))
            return
        if self.headers_done and not self.complete and self._length > 0:
            self._raw_left = self._length - self._body_seen
            self._fresh_parser_needed = True  # this parser still expects the body

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.idle and not self.complete and self.error is None:
            if self.headers_done and not self._framed and not self.head_only:
                self.complete = True  # body delimited by the end of the connection
            elif self.headers_done:
                self.error = ConnectionClosed("the app closed the connection mid-body")
            else:
                self.error = ConnectionClosed("the app closed the connection before responding")
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        self._on_lost(self)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self.keep_alive = False  # a second response nobody asked for

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"connection":
            lowered = value.lower()
            # "keep-alive", what most apps send, without a substring search.
            if lowered != b"keep-alive" and b"close" in lowered:
                self.keep_alive = False
        elif name == b"content-length":
            self._framed = True
            length = int(value) if value.isdigit() else -2
            self._length = length if self._length in (-1, length) else -2
        elif name == b"transfer-encoding":
            self._framed = True
            self._length = -2
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints): skip it, wait for the real one.
            self.headers = []
            self._framed = False
            self._length = -1
            self._interim = True
            return
        self.status = status
        self.headers_done = True
        if self.parser.get_http_version() != "1.1":
            self.keep_alive = False
        if self.head_only:
            self.complete = True
            self._fresh_parser_needed = True  # httptools would wait for a HEAD "body"
        elif not self._framed and status != 204 and status != 304:
            self.keep_alive = False  # body runs until the app closes the connection
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.keep_alive = False  # bytes after a HEAD response
            return
        self.chunks.append(body)
        self._body_seen += len(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self.head_only:
            self.complete = True
            self._wake()


# Writing requests

_METHODS = {m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SPECIAL = (b"content-length", b"transfer-encoding", b"connection")


def encode_head(
    method: str, target: bytes, headers: RawHeaders, has_body: bool
) -> tuple[bytes, bool, bool]:
    """The request head, headers as given; returns (head, chunk-encode the body?, close after?)."""
    # Integer membership is a memchr; `b" " in target` goes through the buffer protocol and
    # costs ~10x more (0.9 us for these four checks, per request).
    if not target or 32 in target or 13 in target or 10 in target or 0 in target:
        raise UpstreamProtocolError(f"invalid request target {target[:64]!r}")
    method_bytes = _METHODS.get(method) or method.encode("ascii")
    parts = [method_bytes, b" ", target, b" HTTP/1.1\r\n"]
    framed = chunked = close = False
    for name, value in headers:
        if len(name) in (10, 14, 17) and (lowered := name.lower()) in _SPECIAL:
            if lowered == b"connection":
                close = close or b"close" in value.lower()
            else:
                framed = True
                chunked = chunked or (
                    lowered == b"transfer-encoding" and b"chunked" in value.lower()
                )
        parts += (name, b": ", value, b"\r\n")
    if not framed:
        if has_body:
            parts.append(b"transfer-encoding: chunked\r\n")
            chunked = True
        elif method in _BODY_METHODS:
            parts.append(b"content-length: 0\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked, close


async def _replay(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for chunk in rest:
            yield chunk


class BodySender:
    """Streams the request body; remembers enough to tell whether it can be replayed."""

    __slots__ = ("chunked", "conn", "exhausted", "first", "iterator", "pulled", "pulling", "task")

    def __init__(self, conn: H1Connection, body: AsyncIterable[bytes], chunked: bool) -> None:
        self.conn = conn
        self.iterator = aiter(body)
        self.chunked = chunked
        self.pulled = 0
        self.pulling = False
        self.exhausted = False
        self.first: bytes | None = None
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        conn = self.conn
        conn.sending = True
        try:
            while not conn.closed:
                self.pulling = True
                try:
                    chunk = await anext(self.iterator)
                except StopAsyncIteration:
                    self.exhausted = True
                    break
                finally:
                    self.pulling = False
                self.pulled += 1
                self.first = chunk if self.pulled == 1 else None
                if conn.closed or not chunk:
                    continue
                if self.chunked:
                    conn.write(b"%x\r\n" % len(chunk), chunk, b"\r\n")
                else:
                    conn.write(chunk)
                await conn.drain()
            if self.exhausted and self.chunked and not conn.closed:
                conn.write(b"0\r\n\r\n")
        except Exception as exc:  # the caller's body iterator failed: the request is incomplete
            conn.fail(exc)
        finally:
            conn.sending = False
            conn.touch()

    def replayable(self) -> AsyncIterable[bytes] | None:
        if self.pulling:
            return None  # cancelling would close the caller's generator mid-pull
        if self.pulled == 0:
            return self.iterator
        if self.pulled == 1 and self.first is not None:
            return _replay(self.first, None if self.exhausted else self.iterator)
        return None

    @property
    def done_cleanly(self) -> bool:
        return self.task.done() and self.exhausted and not self.task.cancelled()
