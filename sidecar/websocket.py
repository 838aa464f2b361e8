"""WebSocket upgrades: one upstream WebSocket per client WebSocket, frames relayed both ways.

The upstream handshake happens first, so the client is accepted with the subprotocol the app
chose, or refused with the app's own status when the server supports the ASGI
`websocket.http.response` extension. Text stays text, binary stays binary, and a close code from
either side is passed on to the other. Read timeouts don't apply: a websocket may be quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from yarl import URL

from sidecar.errors import UpstreamError, error_response
from sidecar.headers import request_headers
from sidecar.metrics import ProxyMetrics
from sidecar.settings import Settings
from sidecar.types import Receive, Scope, Send
from sidecar.upstream_aiohttp import translate

_ABNORMAL_CLOSURE = 1006
_INTERNAL_ERROR = 1011


class WebSocketProxy:
    def __init__(self, settings: Settings, metrics: ProxyMetrics) -> None:
        self._base = "ws://" + settings.upstream.removeprefix("http://")
        self._connect_timeout = settings.connect_timeout
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        started = time.perf_counter()
        raw_path: bytes = scope["raw_path"]
        query: bytes = scope["query_string"]
        target = raw_path + b"?" + query if query else raw_path
        client = scope.get("client")
        headers, _ = request_headers(
            scope["headers"], client[0] if client else None, websocket=True
        )
        try:
            upstream = await self.session.ws_connect(
                URL(self._base + target.decode("latin-1"), encoded=True),
                protocols=tuple(scope.get("subprotocols") or ()),
                headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                autoping=True,
                heartbeat=None,
                compress=0,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            self._observe(exc.status, started)
            await self._refuse(scope, send, exc.status, "websocket_rejected")
            return
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = translate(exc)
            self._metrics.upstream_error(error.reason)
            self._observe(error.status, started)
            await self._refuse(scope, send, error.status, error.reason)
            return

        self._metrics.websockets_open += 1
        try:
            self._observe(101, started)
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            await self._relay(receive, send, upstream)
        finally:
            self._metrics.websockets_open -= 1
            await upstream.close()

    def _observe(self, status: int, started: float) -> None:
        # One request per handshake, timed to its answer: a session's length is not latency.
        self._metrics.observe("WEBSOCKET", status, time.perf_counter() - started)

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            status, headers, body = error_response(status, reason)
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": _INTERNAL_ERROR})

    async def _relay(
        self, receive: Receive, send: Send, upstream: aiohttp.ClientWebSocketResponse
    ) -> None:
        to_app = asyncio.ensure_future(self._client_to_app(receive, upstream))
        to_client = asyncio.ensure_future(self._app_to_client(send, upstream))
        try:
            done, _ = await asyncio.wait({to_app, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_app, to_client):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        for task in done:
            with contextlib.suppress(asyncio.CancelledError):
                exc = task.exception()
                if exc is not None and not isinstance(exc, (UpstreamError, OSError)):
                    raise exc

    async def _client_to_app(
        self, receive: Receive, upstream: aiohttp.ClientWebSocketResponse
    ) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await upstream.send_str(text)
                else:
                    await upstream.send_bytes(message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                code = int(message.get("code", 1000))
                # 1005/1006 are "no code"/"abnormal": never sent on the wire.
                await upstream.close(code=code if code not in (1005, 1006) else 1000)
                return

    async def _app_to_client(self, send: Send, upstream: aiohttp.ClientWebSocketResponse) -> None:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            elif message.type == aiohttp.WSMsgType.ERROR:
                break
        code = upstream.close_code
        if code is None or code in (1005, _ABNORMAL_CLOSURE):
            code = 1000 if code == 1005 else _INTERNAL_ERROR
        await send({"type": "websocket.close", "code": code, "reason": ""})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
