"""Errors the proxy itself produces, and the one place they become HTTP responses.

    StreamproxyError
    ├── ClientDisconnected            the client left while its request body was streaming
    └── UpstreamError                 the app could not be used; `status` and `reason` say how
        ├── UpstreamConnectError      refused / unreachable            -> 502 connect_refused
        ├── UpstreamConnectTimeout    no connection in time            -> 504 connect_timeout
        ├── UpstreamReadTimeout       app silent past --read-timeout   -> 504 read_timeout
        └── UpstreamProtocolError     reset, closed early, bad HTTP    -> 502 upstream_reset

Upstream client implementations translate their library's exceptions into these (and only
these) at their boundary; the forwarder maps them to responses via `status` and `reason`.
A failure after the response has started cannot become a status code: the forwarder aborts the
client connection instead.
"""

from __future__ import annotations


class StreamproxyError(Exception):
    """Base of every error streamproxy raises on purpose."""


class ClientDisconnected(StreamproxyError):
    """Raised into the upstream request body: a truncated body must never look complete."""


class UpstreamError(StreamproxyError):
    status = 502
    reason = "upstream_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, reason={self.reason!r}, detail={self.detail!r})"


class UpstreamConnectError(UpstreamError):
    status = 502
    reason = "connect_refused"


class UpstreamConnectTimeout(UpstreamError):
    status = 504
    reason = "connect_timeout"


class UpstreamReadTimeout(UpstreamError):
    status = 504
    reason = "read_timeout"


class UpstreamProtocolError(UpstreamError):
    status = 502
    reason = "upstream_reset"


# Every reason, for pre-creating metric series.
UPSTREAM_ERROR_REASONS = tuple(
    cls.reason
    for cls in (
        UpstreamConnectError,
        UpstreamConnectTimeout,
        UpstreamReadTimeout,
        UpstreamProtocolError,
    )
)


def error_response(status: int, reason: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a response the proxy makes itself. `X-Streamproxy-Error`
    tells it apart from an answer of the app."""
    body = f"streamproxy: {reason.replace('_', ' ')}\n".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-streamproxy-error", reason.encode()),
    ]
    return status, headers, body
