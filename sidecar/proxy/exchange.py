"""One request's way through the proxy: forward -> upstream exchange -> response.

`ClientProtocol` (sidecar.proxy.protocol) parses a request and makes an `Exchange`; the exchange
takes a connection from the pool, writes the request head and body to it, hears the response
from the connection's parser callbacks and writes it to the client. No task, no queue in
between: a piece read from one side is written to the other in the same callback, and each side's
`pause_writing` stops reading on the other (flow control both ways).

Errors are mapped here, in one place:
- before the response head: `UpstreamError.status`/`reason` become the proxy's own response
  (502/503/504 with `X-Streamproxy-Error`), or, in the keep-alive race, one retry on a fresh
  connection: idempotent requests that got no response byte (RFC 9110 §9.2.2), others only if
  nothing of them was written (RFC 9112 §9.3.1.1);
- after it: the client connection is aborted, never ended as a clean, truncated response;
- the client leaves: the upstream connection is dropped at once (never pooled half-read).

Guard rails (docs/guardrails.md): an exchange takes an in-flight slot when it starts (none
left: `503 overloaded`, the app never asked) and gives it back once, in `_finish` (an upgrade's
slot passes to its tunnel); a streamed body that crosses `--max-request-body` aborts the app's
request (`_body_too_large`); the app's time to its response head feeds
`streamproxy_upstream_duration_seconds`; the access log line is written in `_finish`, only when
the log is on.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import TYPE_CHECKING

from sidecar.access_log import format_line
from sidecar.body_limit import BODY_TOO_LARGE
from sidecar.errors import UpstreamError, UpstreamProtocolError, error_response
from sidecar.in_flight import OVERLOADED
from sidecar.proxy import framing
from sidecar.proxy.context import ProxyContext
from sidecar.proxy.headers import HOP_BY_HOP, response_headers
from sidecar.types import RawHeaders
from sidecar.upstream.connection import UpstreamConnection

if TYPE_CHECKING:
    from sidecar.proxy.protocol import ClientProtocol

# RFC 9110 §9.2.2
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
STATUS_LINES = {s.value: b"HTTP/1.1 %d %b\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Request body bytes held while no upstream connection is ready, before the client is paused.
BODY_BUFFER = 256 * 1024
_CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
_CLOSE_LINE = b"connection: close\r\n"
_KEEP_ALIVE_LINE = b"connection: keep-alive\r\n"


def status_line(status: int) -> bytes:
    return STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


class Exchange:
    __slots__ = (
        "admitted",
        "body",
        "body_buffered",
        "bytes_in",
        "bytes_out",
        "close",
        "conn",
        "ctx",
        "done",
        "expect_continue",
        "gone",
        "head",
        "head_only",
        "http10",
        "keep_alive",
        "local",
        "method",
        "path",
        "pending",
        "proto",
        "request_done",
        "request_framing",
        "request_id",
        "response_framing",
        "retried",
        "sent_at",
        "started",
        "status",
        "upgrade",
        "upstream_full",
        "upstream_seconds",
        "user_agent",
    )

    def __init__(
        self,
        proto: ClientProtocol,
        method: str,
        path: bytes,
        head: bytes,
        request_framing: int,
        http10: bool,
        keep_alive: bool,
        upgrade: bool,
        expect_continue: bool,
    ) -> None:
        self.proto = proto
        self.ctx: ProxyContext = proto.ctx
        self.method = method
        self.path = path
        self.head = head
        self.head_only = method == "HEAD"
        self.request_framing = request_framing
        self.http10 = http10
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self.started = time.perf_counter()
        self.conn: UpstreamConnection | None = None
        self.gone = False  # the client left: read by the pool (Waiter)
        self.done = False
        self.retried = False
        # Request body pieces (already framed for the app) held until a connection is ready.
        self.body: list[bytes] | None = []
        self.body_buffered = 0
        self.request_done = request_framing == framing.NO_BODY
        self.upstream_full = False
        self.status = 0
        self.response_framing = -1  # no response head yet
        self.pending: bytes | None = None  # a response head held back for the first body piece
        self.close = False
        self.local: tuple[int, str] | None = None  # answered by the proxy itself
        self.admitted = False  # holds an in-flight slot (--max-in-flight)
        self.request_id: bytes | None = None  # the X-Request-Id the app gets (None: IDs off)
        self.user_agent: bytes | None = None  # for the access log line
        self.bytes_in = 0  # request body bytes received (the body limit, the access log)
        self.bytes_out = 0
        self.sent_at = 0.0
        self.upstream_seconds: float | None = None  # request written -> the app's head

    # Forward (called by the client protocol)

    def start(self) -> None:
        if self.local is None:
            if self.ctx.in_flight.try_acquire():
                self.admitted = True
                self.ctx.pool.acquire(self)
                return
            # Shed at once, never queued; the connection closes (the body is not read, and a
            # client behind a Service may land on another pod when it reconnects).
            self.local = (503, OVERLOADED)
        self.respond_locally(*self.local)

    def respond_locally(self, status: int, reason: str) -> None:
        """A request the proxy answers itself (CONNECT, a target that is not a path, shed,
        a declared body over the limit)."""
        self.status = status
        self.close = True
        self.response_framing = framing.NO_BODY
        self.proto.write(error_response(status, reason, True, self._id_line()))
        self._finish()

    def _id_line(self) -> bytes:
        """`X-Request-Id` for the client, with --request-id-response."""
        request_id = self.request_id
        if request_id is None or not self.ctx.request_id_response:
            return b""
        return b"x-request-id: %b\r\n" % request_id

    def request_body(self, data: bytes) -> None:
        ctx = self.ctx
        size = len(data)
        ctx.metrics.request_bytes += size
        received = self.bytes_in = self.bytes_in + size
        max_body = ctx.max_body
        if max_body is not None and received > max_body and self.local is None and not self.done:
            self._body_too_large()  # this piece is not forwarded
            return
        piece = framing.frame(self.request_framing, data)
        conn = self.conn
        if conn is not None and self.body is None:
            conn.write(piece)
            return
        if self.body is not None:
            self.body.append(piece)
            self.body_buffered += len(piece)
            if self.body_buffered > BODY_BUFFER:
                self.proto.update_reading()

    def request_end(self) -> None:
        self.request_done = True
        end = framing.END[self.request_framing]
        conn = self.conn
        if conn is not None and self.body is None:
            if end:
                conn.write(end)
            conn.request_sent()
        elif self.body is not None and end:
            self.body.append(end)

    @property
    def reading_blocked(self) -> bool:
        """The client's reading must pause for this exchange (flow control)."""
        return self.upstream_full or self.body_buffered > BODY_BUFFER

    def client_writable(self, writable: bool) -> None:
        conn = self.conn
        if conn is not None:
            if writable:
                conn.resume_reading()
            else:
                conn.pause_reading()

    def client_gone(self) -> None:
        """The client connection ended: drop the upstream side now (never pooled half-read)."""
        if self.done:
            return
        self.gone = True
        conn = self.conn
        self.conn = None
        if conn is not None:
            self.ctx.pool.release(conn, False)
        if self.status == 0:
            self.status = 499  # nginx's "client closed request"
        self._finish()

    def _body_too_large(self) -> None:
        """A streamed body crossed --max-request-body: the app's request is aborted (its
        connection closed, never pooled, so the app sees a broken body, never an ended one);
        the client gets 413, or an aborted connection once the response has started."""
        self.ctx.body_limit.refused += 1
        self.local = (413, BODY_TOO_LARGE)
        self.body = None  # what was held for the app is dropped
        self.body_buffered = 0
        if not self.admitted:
            return  # not started (pipelined behind another): answered 413 in turn
        conn = self.conn
        self.conn = None
        if conn is not None:
            self.ctx.pool.release(conn, False)
        if self.response_framing >= 0:
            self.pending = None
            self.proto.abort()
            return
        self.gone = True  # a connection still being made for it goes to the pool
        self.respond_locally(413, BODY_TOO_LARGE)
        self.proto.exchange_done(self)

    def abort_both(self) -> None:
        """The request body stalled past --read-timeout: abort it both ways."""
        self.proto.abort()

    # Pool waiter

    def connection_ready(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.begin(self, self.head_only, not self.request_done)
        self.sent_at = time.perf_counter()
        body = self.body
        data = self.head + b"".join(body) if body else self.head
        if not conn.write(data):
            conn.fail(UpstreamProtocolError("the app closed the connection before the request"))
            return
        self.body = None
        self.body_buffered = 0
        if self.request_done:
            conn.request_sent()
        elif self.expect_continue and not self.http10:
            self.proto.write(_CONTINUE)
        self.proto.update_reading()

    def connection_failed(self, error: UpstreamError) -> None:
        self.response_failed(error)

    # Upstream receiver

    def upstream_writable(self, writable: bool) -> None:
        self.upstream_full = not writable
        self.proto.update_reading()

    def response_head(
        self, status: int, headers: RawHeaders, tokens: frozenset[bytes], has_length: bool
    ) -> None:
        self.status = status
        upstream = self.upstream_seconds = time.perf_counter() - self.sent_at
        self.ctx.metrics.observe_upstream(upstream)
        kind = framing.response_framing(
            framing.response_has_body(self.head_only, status), has_length, self.http10
        )
        self.response_framing = kind
        close = (
            not self.keep_alive
            or kind == framing.CLOSE
            or not self.request_done  # answered before the body was read: not read on (§9.6)
            or self.ctx.lifecycle.closing
            or self.ctx.shutting_down
        )
        self.close = close
        parts = [status_line(status)]
        if self.ctx.request_id_response:  # the common case (off) costs this one test
            id_line = self._id_line()
            if id_line:
                # Ours replaces the app's own echo: one X-Request-Id, the one the app was given.
                headers = [header for header in headers if header[0] != b"x-request-id"]
                parts.append(id_line)
        response_headers(parts, headers, tokens, kind == framing.LENGTH or kind == framing.NO_BODY)
        if kind == framing.CHUNKED:
            parts.append(_CHUNKED_LINE)
        if close:
            parts.append(_CLOSE_LINE)
        elif self.http10:
            parts.append(_KEEP_ALIVE_LINE)
        parts.append(b"\r\n")
        self.pending = b"".join(parts)

    def response_body(self, data: bytes) -> None:
        kind = self.response_framing
        if kind == framing.NO_BODY:
            return
        self.ctx.metrics.response_bytes += len(data)
        self.bytes_out += len(data)
        out = framing.frame(kind, data)
        pending = self.pending
        if pending is not None:
            self.pending = None
            out = pending + out
        self.proto.write(out)

    def response_flush(self) -> None:
        pending = self.pending
        if pending is not None:
            self.pending = None
            self.proto.write(pending)

    def response_end(self) -> None:
        self.conn = None
        end = framing.END[self.response_framing]
        pending = self.pending
        if pending is not None:
            self.pending = None
            end = pending + end
        if end:
            self.proto.write(end)
        self._finish()

    def response_failed(self, error: UpstreamError) -> None:
        if self.done:
            return
        conn = self.conn
        self.conn = None
        if self.response_framing < 0 and not self.gone:
            if conn is not None and self._may_retry(conn):
                self.retried = True
                if self.body is None:
                    self.body = []  # written, so bodiless: nothing to replay but the head
                self.ctx.pool.acquire(self, fresh=True)
                return
            self.ctx.metrics.upstream_error(error.reason)
            self.status = error.status
            self.response_framing = framing.NO_BODY
            self.close = not self.request_done or not self.keep_alive or self.ctx.shutting_down
            self.proto.write(
                error_response(error.status, error.reason, self.close, self._id_line())
            )
            self._finish()
            return
        # The response has started: the client must see it broken, not short.
        self.ctx.metrics.upstream_error(error.reason)
        self.pending = None
        self.proto.abort()

    def _may_retry(self, conn: UpstreamConnection) -> bool:
        """The keep-alive race: a reused connection the app had closed, no response byte.
        Idempotent requests without a body to replay may go again (RFC 9110 §9.2.2); any
        request may if none of it was written (RFC 9112 §9.3.1.1)."""
        if self.retried or not conn.reused or conn.got_bytes:
            return False
        if not conn.wrote:
            return True  # the head and any body are still here, untouched
        return self.method in IDEMPOTENT and self.request_framing == framing.NO_BODY

    def upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        self.conn = None
        if not self.upgrade or self.gone:
            conn.abort()
            self.response_failed(UpstreamProtocolError("101 to a request that asked no upgrade"))
            return
        self.status = 101
        self.response_framing = framing.NO_BODY
        upstream = self.upstream_seconds = time.perf_counter() - self.sent_at
        self.ctx.metrics.observe_upstream(upstream)
        self.admitted = False  # the tunnel holds the in-flight slot while it is open
        id_line = self._id_line()
        parts = [status_line(101), id_line]
        upgrade = b""
        for name, value in conn.headers:
            if name == b"upgrade":
                upgrade = value
            elif name not in HOP_BY_HOP and not (id_line and name == b"x-request-id"):
                parts += (name, b": ", value, b"\r\n")
        parts += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n\r\n")
        self.proto.write(b"".join(parts))
        self._finish()
        self.proto.start_tunnel(conn, rest)

    # The end

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        ctx = self.ctx
        if self.admitted:
            self.admitted = False
            ctx.in_flight.release()
        elapsed = time.perf_counter() - self.started
        ctx.metrics.observe("WEBSOCKET" if self.upgrade else self.method, self.status, elapsed)
        access_log = ctx.access_log
        if access_log is not None:
            access_log.write(
                format_line(
                    method=self.method.encode("latin-1"),
                    raw_path=self.path.partition(b"?")[0],
                    status=self.status,
                    bytes_in=self.bytes_in,
                    bytes_out=self.bytes_out,
                    total_seconds=elapsed,
                    upstream_seconds=self.upstream_seconds,
                    client=self.proto.client_host,
                    request_id=self.request_id,
                    user_agent=self.user_agent,
                )
            )
        if not self.gone:
            self.proto.exchange_done(self)
