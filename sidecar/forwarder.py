"""The proxy port's ASGI app: forward each request to the app and stream the answer back.

Pure ASGI on purpose (no Starlette request/response objects, no middleware stack): this runs on
every request of every pod. Per request it does one pass over the headers each way and one
`send` per body chunk, awaited, so uvicorn's flow control carries backpressure to the app.

Failure handling, in one place:
- the app can't be reached or is silent before headers -> 502/504 with `X-Streamproxy-Error`;
- the app fails mid-body -> the client connection is reset (never a clean, truncated response);
- the client goes away -> the connection protocol cancels this task, the upstream response is
  closed in `finally`, so its connection is released, not returned to the pool half-read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from sidecar.counting import Counter
from sidecar.errors import ClientDisconnected, UpstreamError, error_response
from sidecar.headers import request_headers, strip_hop_by_hop
from sidecar.http_protocol import ABORT_KEY, GONE_KEY
from sidecar.metrics import ProxyMetrics
from sidecar.response_cycle import CORK_KEY
from sidecar.types import Receive, Scope, Send
from sidecar.upstream import UpstreamClient

if TYPE_CHECKING:
    from sidecar.websocket import WebSocketProxy

access_logger = logging.getLogger("streamproxy.access")

_END_OF_BODY = {"type": "http.response.body", "body": b"", "more_body": False}


async def send_error(send: Send, status: int, reason: str) -> None:
    status, headers, body = error_response(status, reason)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Forwarder:
    def __init__(
        self,
        client: UpstreamClient,
        counter: Counter,
        metrics: ProxyMetrics,
        websockets: Callable[[], Awaitable[WebSocketProxy]],
    ) -> None:
        self._client = client
        self._counter = counter
        self._metrics = metrics
        # Made on the first websocket: its client library costs ~10 MiB the HTTP path never needs.
        self._make_websockets = websockets
        self._websockets: WebSocketProxy | None = None
        # Read once: logging is configured before the forwarder is made and never changes
        # after, and asking the logger costs a call and a cache lookup on every request.
        self._access_log = access_logger.disabled is False and access_logger.isEnabledFor(
            logging.INFO
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.forward_http(scope, receive, send)
        elif kind == "websocket":
            self._counter.incr()
            if self._websockets is None:
                websockets = await self._make_websockets()
                # Two first websockets may both have waited: keep one (it holds no session yet).
                if self._websockets is None:
                    self._websockets = websockets
            await self._websockets.forward(scope, receive, send)

    async def aclose(self) -> None:
        if self._websockets is not None:
            await self._websockets.aclose()

    async def forward_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._counter.incr()
        metrics = self._metrics
        metrics.in_flight += 1
        started = time.perf_counter()
        status = 499  # nginx's "client closed request", if the client leaves first
        try:
            status = await self._exchange(scope, receive, send)
        except asyncio.CancelledError:
            if not scope.get(GONE_KEY):
                raise
            # The client disconnected: nothing left to answer; cleanup already ran.
        finally:
            metrics.in_flight -= 1
            elapsed = time.perf_counter() - started
            metrics.observe(scope["method"], status, elapsed)
            if self._access_log:
                access_logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["raw_path"].decode("latin-1"),
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": (scope.get("client") or ("",))[0],
                    },
                )

    async def _exchange(self, scope: Scope, receive: Receive, send: Send) -> int:
        method: str = scope["method"]
        raw_path: bytes = scope["raw_path"]
        if method == "CONNECT":
            await send_error(send, 405, "connect_not_supported")
            return 405
        if not raw_path.startswith(b"/"):
            await send_error(send, 400, "bad_request_target")
            return 400
        query: bytes = scope["query_string"]
        target = raw_path + b"?" + query if query else raw_path
        client = scope.get("client")
        headers, has_body = request_headers(scope["headers"], client[0] if client else None)
        body = self._request_body(receive) if has_body else None

        metrics = self._metrics
        try:
            response = await self._client.request(method, target, headers, body)
        except UpstreamError as exc:
            metrics.upstream_error(exc.reason)
            await send_error(send, exc.status, exc.reason)
            return exc.status

        if response.body_ready:
            # The body (or its end) is already here: the head can go out in the same write.
            # A response whose body is still to come gets its head at once (SSE, long polls).
            scope[CORK_KEY] = True
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": strip_hop_by_hop(response.headers),
                }
            )
            last_sent = False
            async for chunk in response.body():
                metrics.response_bytes += len(chunk)
                # The client learns of the end with the last chunk: one message (and, for a
                # small response, one write) less than a separate end-of-body message.
                last_sent = response.complete
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": not last_sent}
                )
            if not last_sent:
                await send(_END_OF_BODY)
        except UpstreamError as exc:
            metrics.upstream_error(exc.reason)
            scope[ABORT_KEY]()
        finally:
            await response.aclose()
        return response.status

    async def _request_body(self, receive: Receive) -> AsyncIterator[bytes]:
        metrics = self._metrics
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # http.disconnect. Returning would end the body cleanly (a chunked upload would
                # get its terminator): the app must see a broken request instead.
                raise ClientDisconnected("client disconnected during the request body")
            chunk: bytes = message.get("body", b"")
            if chunk:
                metrics.request_bytes += len(chunk)
                yield chunk
            if not message.get("more_body", False):
                return
