"""The proxy's side of a response: uvicorn's request/response cycle with a `send` of its own.

`ProxyHttpProtocol` (sidecar/http_protocol.py) gives every request this cycle class in place of
uvicorn's; the forwarder marks a scope with `CORK_KEY` when the app's body is already in.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from sidecar.headers import connection_listed

# Scope key set by the forwarder: hold the response head back and write it with the first body
# chunk.
CORK_KEY = "streamproxy.cork"

# Header names whose values change how the response is framed, by length: only these few are
# lower-cased and compared (content-length 14, transfer-encoding 17, connection 10).
_FRAMING_NAME_LENGTHS = frozenset({10, 14, 17})


class ProxyCycle(RequestResponseCycle):
    """uvicorn's request/response cycle with a `send` of our own, for two reasons:

    - A corked response (`CORK_KEY` in the scope) has its head held back and written together
      with the first body chunk: a small response is one write() and one TCP segment.
    - uvicorn runs two regex searches per response header. The proxy's headers have passed
      httptools' parser (which rejects bad names and control characters) or are our own, so
      one check over the serialised head is enough for what matters on the wire: no CR, LF or
      NUL inside a name or value, nothing that could split the response.
    Everything else is uvicorn's behaviour (framing by Content-Length or chunked, HEAD, 204/304,
    `Connection: close`, flow control), with no access-log branch: ours is the forwarder's.
    """

    _held_head: bytes | None = None

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', got {kind!r}.")
            self.response_started = True
            self.waiting_for_100_continue = False
            head = self._encode_head(message["status"], message.get("headers", ()))
            if self.scope.get(CORK_KEY):
                self._held_head = head
            else:
                self.transport.write(head)
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', got {kind!r}.")
            self._write_body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after the response completed.")

    def _encode_head(self, status: int, headers: Any) -> bytes:
        if self.default_headers:
            headers = [*self.default_headers, *headers]
        content = [STATUS_LINE[status]]
        lines = 2  # the status line and the blank line
        has_connection_close = False
        for name, value in headers:
            if len(name) in _FRAMING_NAME_LENGTHS:
                lowered = name.lower()
                if lowered == b"content-length" and self.chunked_encoding is None:
                    self.expected_content_length = int(value)
                    self.chunked_encoding = False
                elif lowered == b"transfer-encoding" and value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
                elif lowered == b"connection" and b"close" in connection_listed([(lowered, value)]):
                    self.keep_alive = False
                    has_connection_close = True
            content += (name, b": ", value, b"\r\n")
            lines += 1
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
            lines += 1
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        content.append(b"\r\n")
        head = b"".join(content)
        if head.count(b"\n") != lines or head.count(b"\r") != lines or 0 in head:
            raise RuntimeError("Invalid HTTP header name or value (CR, LF or NUL).")
        return head

    def _write_body(self, body: bytes, more_body: bool) -> None:
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            data = b""
        elif self.chunked_encoding:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            data = body
        held = self._held_head
        if held is not None:
            self._held_head = None
            data = held + data
        if data:
            self.transport.write(data)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
