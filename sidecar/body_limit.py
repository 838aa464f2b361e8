"""Request body limit: `--max-request-body BYTES` (unset = unlimited), else `413`.

Two moments decide it. When the head arrives, a `Content-Length` over the limit is refused at
once: the app never sees the request, and the connection is closed after the 413 rather than
reading a body we will not forward (an `Expect: 100-continue` client gets the 413 instead of
the 100). A chunked (or otherwise unannounced) body is counted as it streams: the chunk that
crosses the limit is not forwarded, the app's request is aborted (its connection closed, never
returned to the pool, so the app sees a truncated body and not a complete one), and the client
gets `413` if no response has started, else an aborted connection.

Where the proxy port calls it (one `BodyLimit` per process, `ProxyContext.body_limit`):

- `ClientProtocol.on_headers_complete` (sidecar/proxy/protocol.py): a `Content-Length` body
  with `declared_too_large(length)` is answered locally (`too_large_response()`, the same
  bytes), never forwarded;
- `Exchange.request_body` (sidecar/proxy/exchange.py) keeps the running total and compares it
  with `max_bytes` itself (one int comparison per piece); past it, `Exchange._body_too_large`
  counts the refusal in `refused`, aborts the app's connection and answers or aborts the client.
"""

from __future__ import annotations

from sidecar.errors import error_response

BODY_TOO_LARGE = "body_too_large"


class BodyLimit:
    __slots__ = ("enabled", "max_bytes", "refused")

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0 or None (unlimited)")
        self.max_bytes = max_bytes
        self.enabled = max_bytes is not None
        self.refused = 0  # requests answered 413, for metrics

    def declared_too_large(self, content_length: int | None) -> bool:
        """At the head: does the announced length exceed the limit? None (chunked) never does."""
        if self.max_bytes is None or content_length is None or content_length <= self.max_bytes:
            return False
        self.refused += 1
        return True

    def crossed(self, received_total: int) -> bool:
        """While streaming: has the running total passed the limit?"""
        if self.max_bytes is None or received_total <= self.max_bytes:
            return False
        self.refused += 1
        return True


def too_large_response() -> bytes:
    """The 413 the proxy answers itself, ready to write; the connection closes after it."""
    return error_response(413, BODY_TOO_LARGE, close=True)
