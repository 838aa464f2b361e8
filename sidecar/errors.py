"""Errors the proxy itself produces, and the one place they become HTTP responses.

    StreamproxyError
    └── UpstreamError                 the app could not be used; `status` and `reason` say how
        ├── UpstreamConnectError      refused / unreachable            -> 502 connect_refused
        ├── UpstreamConnectTimeout    no connection in time            -> 504 connect_timeout
        ├── UpstreamPoolTimeout       no pool slot in --pool-timeout   -> 503 pool_timeout
        ├── UpstreamReadTimeout       app silent past --read-timeout   -> 504 read_timeout
        └── UpstreamProtocolError     bad HTTP from the app            -> 502 upstream_reset
            └── ConnectionClosed      reset, or closed early

The upstream side (`sidecar.upstream`) turns OSErrors, timeouts and parser errors into these,
and only these, at its boundary; `sidecar.proxy.exchange` maps them to responses via `status`
and `reason` in one place (`error_response`). A failure after the response has started cannot
become a status code: the client connection is aborted instead.
"""

from __future__ import annotations


class StreamproxyError(Exception):
    """Base of every error streamproxy raises on purpose."""


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


class UpstreamPoolTimeout(UpstreamError):
    status = 503
    reason = "pool_timeout"


class UpstreamReadTimeout(UpstreamError):
    status = 504
    reason = "read_timeout"


class UpstreamProtocolError(UpstreamError):
    status = 502
    reason = "upstream_reset"


class ConnectionClosed(UpstreamProtocolError):
    """The app closed (or reset) the connection before the response ended."""


# Every reason, for pre-creating metric series.
UPSTREAM_ERROR_REASONS = tuple(
    cls.reason
    for cls in (
        UpstreamConnectError,
        UpstreamConnectTimeout,
        UpstreamPoolTimeout,
        UpstreamReadTimeout,
        UpstreamProtocolError,
    )
)


_REASON_PHRASES = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


# Header lines some refusals carry: a shed request may be retried in a second (in_flight.py).
_EXTRA_HEADERS = {"overloaded": b"retry-after: 1\r\n"}


def error_response(status: int, reason: str, close: bool, extra: bytes = b"") -> bytes:
    """A whole response the proxy makes itself, ready to write. `X-Streamproxy-Error` tells it
    apart from an answer of the app; `extra` is header lines to add (`name: value\\r\\n`)."""
    body = f"streamproxy: {reason.replace('_', ' ')}\n".encode()
    phrase = _REASON_PHRASES.get(status, b"Error")
    return b"".join(
        (
            b"HTTP/1.1 %d %b\r\n" % (status, phrase),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-streamproxy-error: %b\r\n" % reason.encode(),
            _EXTRA_HEADERS.get(reason, b""),
            extra,
            b"connection: close\r\n\r\n" if close else b"\r\n",
            body,
        )
    )
