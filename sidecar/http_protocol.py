"""uvicorn's httptools protocol, plus the guards a proxy needs at the connection level.

- Header-section limit: more than `MAX_HEADER_BYTES` of request line + headers gets `431` and a
  closed connection. httptools has no limit of its own, so an endless header would otherwise
  grow memory without bound.
- Header deadline: a request head must be complete within the keep-alive timeout of the
  connection opening or of its first byte. uvicorn times out only idle connections *between*
  requests, so a client that sends nothing, or a byte now and then (slowloris), would hold its
  connection for ever.
- Client disconnect: uvicorn only flags the request as disconnected, and a task awaiting the app
  would not notice until it next sends. We cancel the request's task instead, so the upstream
  request is abandoned and its connection released at once (and marks the scope with `GONE_KEY`).
- Abort: `scope["streamproxy.abort"]` resets the client connection, which is how a response
  whose upstream failed mid-body is ended: never as a clean, truncated response.
- Upgrades other than websocket (`Upgrade: h2c` from `curl --http2`, `CONNECT`): llhttp stops at
  them, skips the request's body and reads nothing more, so the request would hang or lose its
  body. The upgrade is ignored instead: a fresh parser, primed with the body's framing, reads on.
  A refused `CONNECT` leaves nothing to read: its connection closes once answered.
- Keep-alive: one timer per connection that re-arms itself, not one per request.
- Responses are written by `sidecar.response_cycle.ProxyCycle`, which each request's cycle
  becomes once uvicorn has made it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from sidecar.response_cycle import ProxyCycle
from sidecar.settings import MAX_HEADER_BYTES

# Scope keys shared with the forwarder: reset the client connection; set when the client left.
ABORT_KEY = "streamproxy.abort"
GONE_KEY = "streamproxy.client_gone"

# Raw bytes allowed before the header section completes: the exact limit is enforced per header
# in on_header; this one also catches a single header line that never ends.
_RAW_HEADER_LIMIT = MAX_HEADER_BYTES + 8 * 1024

_RESPONSE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\n"
    b"x-streamproxy-error: header_too_large\r\n"
    b"connection: close\r\n\r\n"
    b"request header section too large"
)


class _HeaderSectionTooLarge(Exception):
    pass


class _BadTransferEncoding(Exception):
    pass


class _AmbiguousHost(Exception):
    pass


def _body_framing(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The framing header of a request's body, None when it has none."""
    length = b""
    for name, value in headers:
        if name == b"transfer-encoding":
            return b"transfer-encoding: chunked\r\n"  # llhttp allows only chunked as last
        if name == b"content-length":
            length = value.strip()
    if length.isdigit() and int(length) > 0:
        return b"content-length: " + length + b"\r\n"
    return None


class ProxyHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per-request guards
        self._reading_headers = True
        self._message_boundaries = 0
        self._raw_header_bytes = 0
        self._header_bytes = 0
        self._header_too_large = False
        self._final_coding: bytes | None = None
        self._host_headers = 0
        # An ignored upgrade: the framing of the body llhttp skipped; priming a fresh parser.
        self._skipped_body: bytes | None = None
        self._priming = False
        self._header_deadline: asyncio.TimerHandle | None = None
        self._asgi_task: asyncio.Task[None] | None = None
        self._asgi_scope: dict[str, Any] | None = None
        # Keep-alive: when the connection went idle; None while a request is in flight.
        self._idle_since: float | None = None

    # Connection level
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.timeout_keep_alive, self._header_deadline_passed
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    # Keep-alive timeout. uvicorn arms a timer when a response completes and cancels it when
    # the next request arrives: ~3 us per request. Ours stays armed across requests; when it
    # fires it closes an idle connection or re-arms for the rest of the idle time.
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = self.loop.time()
        self.flow.resume_reading()
        if self.pipeline:
            self._idle_since = None
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keepalive_expired
            )

    def _keepalive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # busy: re-armed when the response completes
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keepalive_expired)
        else:
            self.timeout_keep_alive_handler()

    def data_received(self, data: bytes) -> None:
        # Counted after parsing: the first read often carries headers *and* body bytes. A read
        # is at most 256 KiB, so the parser never holds more than that of an unfinished header.
        was_reading_headers = self._reading_headers
        boundaries_seen = self._message_boundaries
        try:
            self._feed(data)
        except _HeaderSectionTooLarge:
            self._reject_header_section()
            return
        # Only a read that crossed no message boundary belongs wholly to an unfinished header.
        if (
            was_reading_headers
            and self._reading_headers
            and boundaries_seen == self._message_boundaries
        ):
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > _RAW_HEADER_LIMIT:
                self._reject_header_section()
                return
        # A new request head has begun (no response is pending): it gets a deadline.
        if (
            self._reading_headers
            and (self.cycle is None or self.cycle.response_complete)
            and not self.transport.is_closing()
        ):
            self._arm_header_deadline()

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, but keeping where llhttp stopped at an upgrade."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._ignore_upgrade(data[exc.args[0] :])
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def _ignore_upgrade(self, rest: bytes) -> None:
        if self.parser.get_method() == b"CONNECT":
            # A tunnel we refuse: nothing after it is HTTP.
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
            else:
                self.transport.close()
            return
        parser = httptools.HttpRequestParser(self)
        if self._skipped_body is not None:
            self._priming = True
            try:
                parser.feed_data(b"POST / HTTP/1.1\r\n" + self._skipped_body + b"\r\n")
            finally:
                self._priming = False
            self._skipped_body = None
        self.parser = parser
        if rest:
            self.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        cycle = self.cycle
        super().connection_lost(exc)
        task = self._asgi_task
        if (
            task is not None
            and not task.done()
            and cycle is not None
            and not cycle.response_complete
        ):
            if self._asgi_scope is not None:
                self._asgi_scope[GONE_KEY] = True
            task.cancel()

    def _reject_header_section(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_RESPONSE_431)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # httptools wraps our callback's exception in HttpParserError, which uvicorn answers
        # with a 400: the limit deserves its own status.
        if self._header_too_large:
            self._reject_header_section()
            return
        super().send_400_response(msg)

    def _abort(self) -> None:
        self.transport.abort()

    # Parser callbacks
    def on_message_begin(self) -> None:
        if self._priming:
            return
        super().on_message_begin()
        self._header_bytes = 0
        self._final_coding = None
        self._host_headers = 0
        self.scope[ABORT_KEY] = self._abort  # type: ignore[literal-required]

    # on_url and on_header do what uvicorn's do (append the URL; fold the name, note
    # `Expect: 100-continue`, keep the pair) without calling them: they run once per header of
    # every request, and a second Python call each is a measurable part of a header's cost.
    def on_url(self, url: bytes) -> None:
        if self._priming:
            return
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._header_too_large = True
            raise _HeaderSectionTooLarge
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._priming:
            return
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            self._header_too_large = True
            raise _HeaderSectionTooLarge
        name = name.lower()
        self.headers.append((name, value))
        if name == b"transfer-encoding":
            self._final_coding = value.rsplit(b",", 1)[-1].strip().lower()
        elif name == b"host":
            self._host_headers += 1
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True

    def on_headers_complete(self) -> None:
        if self._priming:
            return
        if self._final_coding not in (None, b"chunked"):
            # llhttp refuses it too, but only after this callback has sent the request on its
            # way to the app. RFC 9112 §6.3: the body length is unknown; 400 and close.
            raise _BadTransferEncoding
        if self._host_headers > 1:
            # RFC 9112 §3.2: 400. Which one would the app believe? (aiohttp keeps the last.)
            raise _AmbiguousHost
        if self._host_headers == 0 and self.parser.get_http_version() == "1.1":
            # RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400 (HTTP/1.0 may omit it).
            raise _AmbiguousHost
        self._disarm_header_deadline()
        self._reading_headers = False
        self._message_boundaries += 1
        self._raw_header_bytes = 0
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and type(cycle) is RequestResponseCycle:
            # uvicorn names its cycle class inside on_headers_complete; ours replaces only `send`.
            cycle.__class__ = ProxyCycle
        if self.parser.should_upgrade() and not self._should_upgrade():
            self._skipped_body = _body_framing(self.headers)

    def on_message_complete(self) -> None:
        if self._skipped_body is not None:
            return  # llhttp skipped the body: the primed parser will end this message
        self._reading_headers = True
        self._message_boundaries += 1
        self._raw_header_bytes = 0
        super().on_message_complete()

    # Track the running request's task so a disconnect can cancel it.
    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._asgi_task = task
        self._asgi_scope = cycle.scope
