"""The proxy port's connection: an asyncio Protocol with httptools' request parser.

Parse -> `Exchange` (sidecar.proxy.exchange) -> response, all in callbacks: no task per request.
Each request head becomes an exchange; responses go out in request order, so pipelined requests
wait in `_queue` (their bodies held, reading paused) while the first one is answered.

Guards of the connection, RFC 9112 at the edge:
- a header section over `MAX_HEADER_BYTES` gets `431`; a malformed request `400`; a transfer
  coding other than chunked `501`; CL+TE, two different CLs, two Hosts or none (HTTP/1.1) `400`
  (sidecar.proxy.framing decides the framing). A bad request pipelined behind good ones is
  answered after their responses, then the connection closes (§9.3.2: responses in order).
- a request head must be complete `keepalive_timeout` after the connection went idle (slowloris);
  a client that reads nothing for `send_timeout` is dropped; a request body silent for
  `read_timeout` is aborted both ways (one periodic watchdog, `ProxyContext`, checks these).
- `Upgrade`: the request goes to the app; if it answers `101` the connection becomes a byte
  tunnel (sidecar.proxy.tunnel); otherwise the bytes after the request are parsed as HTTP again.

Guard rails (docs/guardrails.md) at their points of the path: the peer's trust once per
connection (`connection_made`); the client's `X-Request-Id` taken out in `on_header`, the one
the app gets (kept or new) added in `on_headers_complete`, together with the declared body
limit (`413` before the app sees anything); the in-flight gate and the streamed body limit are
the exchange's (`Exchange.start`, `Exchange.request_body`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import httptools

from sidecar.body_limit import BODY_TOO_LARGE
from sidecar.errors import error_response
from sidecar.proxy import framing
from sidecar.proxy.context import ProxyContext
from sidecar.proxy.exchange import Exchange
from sidecar.proxy.headers import connection_tokens, request_headers
from sidecar.proxy.tunnel import Tunnel
from sidecar.settings import MAX_HEADER_BYTES
from sidecar.types import RawHeaders
from sidecar.upstream.connection import UpstreamConnection

logger = logging.getLogger("streamproxy.proxy")

# Raw bytes of an unfinished head past which the connection is cut off: the exact limit is
# counted per header; this one also catches a single header line that never ends.
_RAW_HEAD_LIMIT = MAX_HEADER_BYTES + 8 * 1024
# How long the rest of an unread request body is read and dropped before closing.
LINGER_SECONDS = 2.0
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_METHODS = {m: m.decode() for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS")}
_CONTENT_LENGTH_0 = b"content-length: 0\r\n"
_CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
_NO_TOKENS: frozenset[bytes] = frozenset()
# Between requests: never appended to (on_message_begin gives each request its own list).
_NO_HEADERS: RawHeaders = []


def origin_form(target: bytes) -> bytes:
    """The path and query of an absolute-form target (RFC 9112 §3.2.2: a server MUST accept
    it), so the host it names is never connected to; other targets as they are."""
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        path_start = target.find(b"/", target.index(b"//") + 2)
        if path_start < 0:
            query = target.find(b"?")
            return b"/" + target[query:] if query >= 0 else b"/"
        return target[path_start:]
    return target


class _Refused(Exception):
    """A request the proxy answers with `status` without forwarding it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientProtocol(asyncio.Protocol):
    # One per client connection, 10,000s of them idle at once: no per-instance dict.
    __slots__ = (
        "_body_after_upgrade",
        "_boundaries",
        "_client_eof",
        "_closing",
        "_codings",
        "_connection",
        "_expect",
        "_headers",
        "_hosts",
        "_idle_since",
        "_ids",
        "_in_head",
        "_last_read",
        "_lengths",
        "_linger_since",
        "_paused_since",
        "_priming",
        "_queue",
        "_raw_head",
        "_reading",
        "_reading_paused",
        "_refusal",
        "_request_id",
        "_section",
        "_stash",
        "_upgrade",
        "_url",
        "_user_agent",
        "_write_paused",
        "client_host",
        "ctx",
        "loop",
        "parser",
        "peer_trusted",
        "transport",
    )

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.parser = httptools.HttpRequestParser(self)
        self.client_host: str | None = None
        self.peer_trusted = False  # inside --trusted-proxies: its X-Forwarded-Proto/-Host kept
        self._ids = ctx.request_ids  # None: --no-request-id

        # Per-connection state
        # [0] is being answered; the rest wait. A list, not a deque: pipelining is shallow and
        # an empty deque takes 600 bytes, a fifth of an idle connection.
        self._queue: list[Exchange] = []
        self._reading: Exchange | None = None  # the exchange whose body is being read
        self._refusal: _Refused | None = None  # a pipelined bad request, answered in turn
        self._stash: bytes | None = None  # bytes after an upgrade request, until its answer
        self._closing = False
        self._linger_since: float | None = None  # closing, reading what the client still sends
        self._client_eof = False
        self._reading_paused = False
        self._write_paused = False
        self._paused_since = 0.0
        self._idle_since = 0.0  # start of the wait for a request head
        self._last_read = 0.0
        self._in_head = True
        self._raw_head = 0
        self._boundaries = 0  # heads and messages completed on this connection
        # An Upgrade request with a body is served as HTTP/1.1 (RFC 9110 §7.8: the server may
        # ignore Upgrade). llhttp stops before such a body: a fresh parser, primed with a
        # head of the same framing, reads it on.
        self._body_after_upgrade: bytes | None = None
        self._priming = False

        # Per-request parse state. Between requests it holds nothing of the last one, and the
        # rarely seen headers are tuples (an empty one is shared): an idle keep-alive connection
        # costs what the connection needs, not what its last request carried.
        self._url = b""
        self._headers: RawHeaders = _NO_HEADERS
        self._section = 0
        self._hosts = 0
        self._lengths: tuple[bytes, ...] = ()
        self._codings: tuple[bytes, ...] = ()
        self._connection: tuple[bytes, ...] = ()
        self._expect = False
        self._upgrade: bytes | None = None
        self._request_id: bytes | None = None  # the client's X-Request-Id (b"" when two)
        self._user_agent: bytes | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client_host = str(peer[0])
        self.peer_trusted = self.ctx.trusted_peers.is_trusted(self.client_host)
        self._idle_since = self._last_read = self.loop.time()
        self.ctx.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._stash is not None:
            self._stash += data
            return
        self._last_read = self.loop.time()
        boundaries = self._boundaries
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if self._body_after_upgrade is not None:
                self._prime(rest)
            else:
                self._upgrade_requested(rest)
            return
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if not isinstance(context, _Refused):
                # Not the client's fault: a bug of ours, raised inside a parser callback.
                logger.error("request handling failed", exc_info=context)
                context = _Refused(400, "bad_request")
            self._refuse(context)
            return
        except httptools.HttpParserError:
            self._refuse(_Refused(400, "bad_request"))
            return
        if self._in_head:
            # Bytes of an unfinished head. A head or a message that ended in this read (a body's
            # tail, pipelined requests) makes the count uncertain: start again (one read is at
            # most the transport's buffer). Else the whole read was head.
            if boundaries != self._boundaries:
                self._raw_head = 0
            else:
                self._raw_head += len(data)
            if self._raw_head > _RAW_HEAD_LIMIT:
                # Not drained: a line that never ends would be read for ever.
                self._refuse(_Refused(431, "header_too_large"), linger=False)

    def eof_received(self) -> bool | None:
        if self._queue and self._linger_since is None:
            # Half-closed after its request: the answer can still go out, then we close.
            self._client_eof = True
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        queue = self._queue
        while queue:
            queue.pop(0).client_gone()
        self.ctx.remove(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._paused_since = self.loop.time()
        if self._queue:
            self._queue[0].client_writable(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._queue:
            self._queue[0].client_writable(True)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._priming:
            return
        self._in_head = True
        self._url = b""
        self._headers = []
        self._section = 2
        self._hosts = 0
        self._lengths = ()
        self._codings = ()
        self._connection = ()
        self._expect = False
        self._upgrade = None
        self._request_id = None
        self._user_agent = None

    def on_url(self, url: bytes) -> None:
        if self._priming:
            return
        self._url += url
        self._section += len(url) + 12
        if self._section > MAX_HEADER_BYTES:
            raise _Refused(431, "header_too_large")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._priming:
            return
        self._section += len(name) + len(value) + 4
        if self._section > MAX_HEADER_BYTES:
            raise _Refused(431, "header_too_large")
        if not self._in_head:
            return  # a trailer field of a chunked body: counted above, never forwarded
        name = name.lower()
        size = len(name)
        if size == 4:
            if name == b"host":
                self._hosts += 1
        elif size == 14:
            if name == b"content-length":
                self._lengths += (value,)
        elif size == 17:
            if name == b"transfer-encoding":
                self._codings += (value,)
        elif size == 10:
            if name == b"connection":
                self._connection += (value,)
            elif name == b"user-agent":
                self._user_agent = value
        elif size == 12:
            if name == b"x-request-id" and self._ids is not None:
                # Replaced by the one the app gets; two are no one's (neither is kept).
                self._request_id = value if self._request_id is None else b""
                return
        elif size == 6:
            if name == b"expect":
                self._expect = value.lower() == b"100-continue"
        elif size == 7 and name == b"upgrade":
            self._upgrade = value
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._raw_head = 0
        self._boundaries += 1
        if self._priming:
            self._priming = False
            return
        if self._closing:
            return  # pipelined behind a response that closes the connection: never forwarded
        parser = self.parser
        http10 = parser.get_http_version() != "1.1"
        if self._hosts > 1 or (self._hosts == 0 and not http10):
            raise _Refused(400, "bad_host")  # RFC 9112 §3.2: none or two (which one to trust?)
        try:
            kind, length = framing.request_framing(self._lengths, self._codings)
        except framing.FramingError as exc:
            raise _Refused(exc.status, exc.reason) from None
        raw_method: bytes = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        target = self._url
        if target[:1] != b"/":
            target = origin_form(target)
        upgrade = self._upgrade is not None and parser.should_upgrade()
        if upgrade and kind != framing.NO_BODY:
            upgrade = False
            self._body_after_upgrade = (
                b"content-length: %d\r\n" % length if kind == framing.LENGTH else _CHUNKED_LINE
            )
        tokens = connection_tokens(self._connection) if self._connection else _NO_TOKENS

        parts = [raw_method, b" ", target, b" HTTP/1.1\r\n"]
        request_headers(parts, self._headers, tokens, self.client_host, self.peer_trusted)
        request_id = None
        if self._ids is not None:
            request_id = self._ids.keep_or_new(self._request_id)
            parts += (b"x-request-id: ", request_id, b"\r\n")
        if kind == framing.LENGTH:
            parts.append(b"content-length: %d\r\n" % length)
        elif kind == framing.CHUNKED:
            parts.append(_CHUNKED_LINE)
        elif self._lengths or raw_method in _BODY_METHODS:
            parts.append(_CONTENT_LENGTH_0)
        if upgrade and self._upgrade is not None:
            parts += (b"connection: upgrade\r\nupgrade: ", self._upgrade, b"\r\n")
        parts.append(b"\r\n")
        exchange = Exchange(
            self,
            method,
            target,
            b"".join(parts),
            kind,
            http10,
            parser.should_keep_alive() and not self.ctx.shutting_down,
            upgrade,
            self._expect,
        )
        exchange.request_id = request_id
        exchange.user_agent = self._user_agent
        self._url = b""
        self._headers = _NO_HEADERS
        self._lengths = self._codings = self._connection = ()
        self._user_agent = self._request_id = None
        self._reading = exchange
        self._queue.append(exchange)
        if raw_method == b"CONNECT":
            # Never a tunnel to a host the client picks; and its bytes after are not HTTP.
            exchange.local = (405, "connect_not_supported")
        elif not target.startswith(b"/"):
            # Origin-form only: absolute-form or `*` could name another host.
            exchange.local = (400, "bad_request_target")
        else:
            ctx = self.ctx
            ctx.counter.incr()  # it reaches the forwarder: counted, whatever comes of it
            body_limit = ctx.body_limit
            if (
                kind == framing.LENGTH
                and body_limit.enabled
                and body_limit.declared_too_large(length)
            ):
                exchange.local = (413, BODY_TOO_LARGE)  # the app sees nothing of it
        if len(self._queue) == 1:
            exchange.start()
        else:
            self.update_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._reading
        if exchange is not None:
            exchange.request_body(body)

    def on_message_complete(self) -> None:
        if self._body_after_upgrade is not None:
            return  # llhttp skipped the body: the primed parser ends this message
        self._boundaries += 1
        self._in_head = True
        exchange = self._reading
        self._reading = None
        if exchange is not None:
            exchange.request_end()

    # Called by exchanges

    def write(self, data: bytes) -> None:
        transport = self.transport
        if not transport.is_closing():  # aborted a moment ago: connection_lost is on its way
            transport.write(data)

    def abort(self) -> None:
        """Reset the connection: how a response whose upstream failed mid-body ends."""
        if not self.transport.is_closing():
            self.transport.abort()

    def update_reading(self) -> None:
        """Read from the client unless something must wait: a pipelined request (or its body)
        behind the one being answered, or the current exchange's flow control."""
        queue = self._queue
        blocked = (
            self._closing
            or self._stash is not None
            or len(queue) > 1
            or (bool(queue) and queue[-1].reading_blocked)
        )
        if blocked != self._reading_paused and not self.transport.is_closing():
            self._reading_paused = blocked
            if blocked:
                self.transport.pause_reading()
            else:
                self._last_read = self.loop.time()
                self.transport.resume_reading()

    def exchange_done(self, exchange: Exchange) -> None:
        queue = self._queue
        if queue and queue[0] is exchange:
            queue.pop(0)
        if exchange.status == 101 and exchange.upgrade:
            return  # start_tunnel comes next
        if self._reading is exchange:
            # Answered before its body was read: the rest is not read on (RFC 9112 §9.6), but
            # drained a little while, or closing with unread bytes would reset the connection
            # and could destroy the response before the client reads it.
            self._linger()
            return
        if exchange.close or self._client_eof or self.ctx.shutting_down:
            self._close_transport()
            return
        if queue:
            queue[0].start()  # pipelined: the next response, in request order (§9.3.2)
        elif self._refusal is not None:
            refusal = self._refusal
            self._refusal = None
            self._refuse(refusal)  # a bad request behind good ones: answered last
            return
        elif self._closing:
            self._close_transport()
            return
        else:
            self._idle_since = self.loop.time()
        stash = self._stash
        if stash is not None:
            # The app declined an upgrade: what followed the request is HTTP again.
            self._stash = None
            self.parser = httptools.HttpRequestParser(self)
            self.update_reading()
            if stash:
                self.data_received(stash)
            return
        self.update_reading()

    def start_tunnel(self, conn: UpstreamConnection, rest: bytes) -> None:
        stash = self._stash or b""
        self._stash = None
        self._closing = True
        self.ctx.remove(self)
        tunnel = Tunnel(self.ctx, self.transport, conn.transport)
        tunnel.start(client_bytes=stash, app_bytes=rest)
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    # Refusals and upgrades

    def _refuse(self, refusal: _Refused, linger: bool = True) -> None:
        """Answer a request the parser or the checks refused, in turn, then close."""
        if self._reading is not None:
            # Broken mid-body: the app must see the request broken too, never ended cleanly.
            self.transport.abort()
            return
        self._closing = True
        if self._queue:
            self._refusal = refusal
            self.update_reading()
            return
        self.transport.write(error_response(refusal.status, refusal.reason, close=True))
        if linger:
            self._linger()  # the rest of what the client sent would turn our close into a reset
        else:
            self._close_transport()

    def _prime(self, rest: bytes) -> None:
        framing_line = self._body_after_upgrade
        assert framing_line is not None
        self._body_after_upgrade = None
        self._priming = True
        self.parser = httptools.HttpRequestParser(self)
        self.parser.feed_data(b"POST / HTTP/1.1\r\nhost: x\r\n" + framing_line + b"\r\n")
        if rest:
            self.data_received(rest)

    def _upgrade_requested(self, rest: bytes) -> None:
        """The parser stopped after an upgrade request: what follows is the app's to decide."""
        self._stash = rest
        self.update_reading()

    def _linger(self) -> None:
        self._closing = True
        self._linger_since = self.loop.time()
        transport = self.transport
        if transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()  # after what is buffered: the response
        self._reading_paused = False
        transport.resume_reading()

    def _close_transport(self) -> None:
        self._closing = True
        if not self.transport.is_closing():
            self.transport.close()

    # Live (watchdog and shutdown)

    @property
    def idle(self) -> bool:
        return not self._queue

    def check_timeouts(self, now: float) -> None:
        ctx = self.ctx
        if self._linger_since is not None:
            if now - self._linger_since >= LINGER_SECONDS:
                self.transport.close()
        elif self._write_paused:
            if now - self._paused_since >= ctx.send_timeout:
                self.abort()  # the client stopped reading: drop it, release the app
        elif not self._queue:
            if now - self._idle_since >= ctx.keepalive_timeout:
                self._close_transport()  # idle, or a head that never completes
        elif (
            self._reading is self._queue[0]
            and not self._reading_paused
            and now - self._last_read >= ctx.read_timeout
        ):
            self.abort()  # the request body stalled: aborted both ways

    def close(self) -> None:
        if not self._queue:
            self._close_transport()

    # `Live.abort` is `abort` above.
