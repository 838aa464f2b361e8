"""One HTTP/1.1 connection to the app: an asyncio Protocol feeding httptools' response parser.

A connection carries one exchange at a time (no pipelining toward the app). The exchange is a
`Receiver` (in practice `sidecar.proxy.exchange.Exchange`): the parser's callbacks hand it the
response head, each body piece as it arrives and the end, with no queue and no task in between,
so a chunk read from the app is written to the client inside the same `data_received`.

What httptools cannot frame alone: a response to HEAD ends with its head (a fresh parser is used
for the next exchange); a body without Content-Length or chunked framing ends when the app
closes the connection, cleanly (a reset is an error, never the end of the body).

Errors leave here only as `sidecar.errors.UpstreamError`s, through `Receiver.response_failed`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from sidecar.errors import (
    ConnectionClosed,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
)
from sidecar.proxy.headers import connection_tokens
from sidecar.types import RawHeaders

if TYPE_CHECKING:
    from sidecar.upstream.pool import Pool


class Receiver(Protocol):
    """What an exchange hears from its upstream connection."""

    def response_head(
        self, status: int, headers: RawHeaders, tokens: frozenset[bytes], has_length: bool
    ) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_flush(self) -> None:
        """Called after each read from the app: write what the callbacks held back."""

    def response_end(self) -> None: ...

    def response_failed(self, error: UpstreamError) -> None: ...

    def upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The app answered 101: the connection is now a byte stream; `rest` came after."""

    def upstream_writable(self, writable: bool) -> None:
        """The socket toward the app filled up (False) or drained (True): flow control."""


def _keepalive_hint(value: bytes) -> float | None:
    """`timeout=N` of a `Keep-Alive` response header (RFC 2068 §19.7.1.1), else None."""
    for param in value.split(b","):
        name, _, number = param.partition(b"=")
        if name.strip().lower() == b"timeout":
            try:
                return max(float(number.strip()), 0.0)
            except ValueError:
                return None
    return None


# Between exchanges: never appended to (`begin` gives each exchange its own list).
_NO_HEADERS: RawHeaders = []


class UpstreamConnection(asyncio.Protocol):
    # Up to --upstream-pool-size of them, most idle in the pool: no per-instance dict, and
    # nothing of the last response kept (its headers go with `_finish`).
    __slots__ = (
        "_body_seen",
        "_chunked",
        "_connection",
        "_done",
        "_eof",
        "_framed",
        "_fresh_parser_needed",
        "_interim",
        "_length",
        "_raw_left",
        "closed",
        "complete",
        "counted",
        "got_bytes",
        "head_only",
        "headers",
        "headers_done",
        "idle_since",
        "keep_alive",
        "keepalive_hint",
        "last_data",
        "loop",
        "parser",
        "pool",
        "reading_paused",
        "receiver",
        "reused",
        "sending",
        "status",
        "transport",
        "wrote",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.parser = httptools.HttpResponseParser(self)
        self._fresh_parser_needed = False

        # Connection state
        self.closed = False
        self.counted = True  # holds one of the pool's slots until lost or detached
        self.reused = False  # an exchange completed on it before the current one
        self.idle_since = 0.0
        self.keepalive_hint: float | None = None  # the app's Keep-Alive: timeout=N
        self._eof = False

        # Exchange state
        self.receiver: Receiver | None = None
        self.head_only = False
        self.sending = False  # the request body is still being written
        self.wrote = False  # a byte of this exchange was handed to the socket
        self.got_bytes = False  # a byte of the response arrived
        self.reading_paused = False
        self.last_data = 0.0
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.headers: RawHeaders = _NO_HEADERS
        # `Connection` values: rare in responses, so a tuple (the empty one costs nothing).
        self._connection: tuple[bytes, ...] = ()
        self._framed = False  # Content-Length or chunked seen: not delimited by the close
        self._chunked = False
        self._length = -1  # the Content-Length; the rest of such a body skips the parser
        self._body_seen = 0
        self._raw_left = 0
        self._interim = False
        self._done = False  # the message ended inside the current feed

    # Exchange control (called by the exchange and the pool)

    def begin(self, receiver: Receiver, head_only: bool, sending: bool) -> None:
        if self._fresh_parser_needed:
            self.parser = httptools.HttpResponseParser(self)
            self._fresh_parser_needed = False
        self.receiver = receiver
        self.head_only = head_only
        self.sending = sending
        self.keepalive_hint = None
        self.wrote = self.got_bytes = False
        self.last_data = self.loop.time()
        self.status = 0
        self.headers_done = self.complete = self._done = False
        self.keep_alive = True
        self.headers = []
        self._connection = ()
        self._framed = self._chunked = False
        self._length = -1
        self._body_seen = self._raw_left = 0
        self._interim = False

    def write(self, data: bytes) -> bool:
        """Write unless the connection is already going away (then nothing left the proxy)."""
        if self.closed or self.transport.is_closing():
            return False
        self.transport.write(data)
        self.wrote = True
        return True

    def request_sent(self) -> None:
        """The request body ended: from now on, silence from the app is a read timeout."""
        self.sending = False
        self.last_data = self.loop.time()

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.last_data = self.loop.time()
            self.transport.resume_reading()

    def abort(self) -> None:
        self.receiver = None
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def fail(self, error: UpstreamError) -> None:
        """End the exchange with `error` and drop the connection."""
        receiver = self.receiver
        self.abort()
        if receiver is not None:
            receiver.response_failed(error)

    def check_timeout(self, now: float, read_timeout: float) -> None:
        """Called by the pool's watchdog. Silence counts only while the app owes bytes: not
        while the request body is still going out, nor while the client holds us back."""
        if (
            self.receiver is not None
            and not self.sending
            and not self.reading_paused
            and now - self.last_data >= read_timeout
        ):
            self.fail(UpstreamReadTimeout(f"no response bytes for {read_timeout:g}s"))

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is None:
            # Bytes nobody asked for: the connection cannot be trusted for the next request.
            self.abort()
            return
        self.got_bytes = True
        self.last_data = self.loop.time()
        left = self._raw_left
        if left:
            # The rest of a Content-Length body: handed over as it is, without the parser's
            # copy of every piece (a third of the CPU of a big download).
            if len(data) > left:
                data = data[:left]
                self.keep_alive = False  # bytes beyond the body nobody asked for
            self._raw_left = left = left - len(data)
            receiver.response_body(data)
            if not left:
                self._finish(receiver)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.status == 101 and self.headers_done:
                self._upgraded(receiver, data[exc.args[0] :])
            else:
                self.fail(UpstreamProtocolError("unexpected protocol switch"))
            return
        except httptools.HttpParserError as exc:
            self.fail(UpstreamProtocolError(f"invalid response: {exc}"))
            return
        if self._done:
            self._finish(receiver)
            return
        if self.headers_done and self._length > 0:
            self._raw_left = self._length - self._body_seen
            self._length = -1
            self._fresh_parser_needed = True  # this parser still expects the body
        if self.receiver is receiver:
            receiver.response_flush()

    def eof_received(self) -> bool | None:
        self._eof = True
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        receiver = self.receiver
        self.receiver = None
        if receiver is not None:
            if self.headers_done and not self._framed and self._eof and exc is None:
                self.complete = True  # a body delimited by the end of the connection
                receiver.response_end()
            elif self.headers_done:
                receiver.response_failed(ConnectionClosed("the app closed the connection mid-body"))
            else:
                receiver.response_failed(
                    ConnectionClosed("the app closed the connection before responding")
                )
        self.pool.lost(self)

    def pause_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_writable(True)

    # The end of an exchange

    def _finish(self, receiver: Receiver) -> None:
        self.complete = True
        self.receiver = None
        self.headers = _NO_HEADERS  # the exchange has built its head from them
        self._connection = ()
        self.pool.release(self, self.keep_alive and not self.sending)
        receiver.response_end()

    def _upgraded(self, receiver: Receiver, rest: bytes) -> None:
        self.receiver = None
        self.pool.detach(self)
        receiver.upgraded(self, rest)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if len(name) in (10, 14, 17):
            if name == b"connection":
                self._connection += (value,)
            elif name == b"keep-alive":
                self.keepalive_hint = _keepalive_hint(value)
            elif name == b"content-length":
                self._framed = True
                self._length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                self._chunked = True
                # RFC 9112 §6.3 rule 4: a final coding other than chunked runs to the close.
                self._framed = value.lower().rstrip().endswith(b"chunked")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints): skip it, wait for the real one.
            self.headers = []
            self._connection = ()
            self._framed = self._chunked = False
            self._length = -1
            self._interim = True
            return
        self.status = status
        self.headers_done = True
        tokens = connection_tokens(self._connection) if self._connection else frozenset()
        if b"close" in tokens or self.parser.get_http_version() != "1.1":
            self.keep_alive = False
        if self._chunked:
            self._length = -1  # Transfer-Encoding overrides Content-Length (RFC 9112 §6.3)
        has_length = self._length >= 0
        if self.head_only or status == 204 or status == 304:
            self._length = -1
            if self.head_only:
                self._done = True
                self._fresh_parser_needed = True  # httptools would wait for a HEAD "body"
        elif not self._framed:
            self.keep_alive = False  # the body runs until the app closes the connection
        receiver = self.receiver
        if receiver is not None and status != 101:
            receiver.response_head(status, self.headers, tokens, has_length)

    def on_body(self, body: bytes) -> None:
        if self._done:
            self.keep_alive = False  # bytes after a HEAD response
            return
        self._body_seen += len(body)
        receiver = self.receiver
        if receiver is not None:
            receiver.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.status != 101:
            self._done = True
