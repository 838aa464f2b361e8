"""The narrow seam between the forwarder and whatever speaks HTTP/1.1 to the app.

An `UpstreamClient` sends one request and returns an `UpstreamResponse` once the status line and
headers have arrived; the body is then pulled chunk by chunk, so memory stays bounded and
backpressure reaches the app. Implementations:

- must send the method, the raw target (path + query bytes, never re-encoded) and the given
  headers exactly (order, repeats, case as given; they add only `Content-Length`/
  `Transfer-Encoding: chunked` framing when the given headers don't already frame the body),
- must not keep any per-client state (no cookie jar, no auth),
- must not decompress or otherwise change body bytes,
- retry once on a fresh connection when a pooled connection fails before any response byte and
  the request body has not started streaming (the keep-alive race),
- raise only `sidecar.errors.UpstreamError` subclasses, before and during the body,
- apply `connect_timeout` to connecting and `read_timeout` to every wait for response bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from sidecar.settings import Settings
from sidecar.types import RawHeaders


class UpstreamResponse(Protocol):
    status: int
    # Response headers with lower-case names (as ASGI wants them, folded once, by the client
    # that parsed them): order and repeats kept, hop-by-hop NOT yet removed.
    headers: RawHeaders
    # True once the last body byte has been handed out by body(): the chunk just received can
    # be sent on as the final one, without another message for the end of the body.
    complete: bool

    @property
    def body_ready(self) -> bool:
        """True when body() would yield its first chunk (or end) without waiting."""

    def body(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (de-chunked, never decompressed)."""

    async def aclose(self) -> None:
        """Release the connection: back to the pool when the body was fully read, else closed."""


class UpstreamClient(Protocol):
    async def request(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        """Send one request; return when the response headers are in."""

    async def aclose(self) -> None:
        """Close every pooled connection."""


def make_upstream_client(settings: Settings) -> UpstreamClient:
    if settings.upstream_client == "h1":
        from sidecar.upstream_h1 import H1UpstreamClient

        return H1UpstreamClient(settings)
    from sidecar.upstream_aiohttp import AiohttpUpstreamClient

    return AiohttpUpstreamClient(settings)
