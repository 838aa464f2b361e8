"""`UpstreamClient` on aiohttp's client: pooled keep-alive connections to the one app.

aiohttp is set up as a proxy needs it: no cookie jar (nothing carried between clients), no
automatic decompression, no automatic `Accept*`/`User-Agent` headers, no redirects, and the raw
target is used as an already-encoded URL so `//host/x` or `%2F` reach the app byte-for-byte.
Its exceptions are translated to `sidecar.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable

import aiohttp
from yarl import URL

from sidecar.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
)
from sidecar.settings import Settings
from sidecar.types import RawHeaders

# aiohttp retries these itself on a broken pooled connection (RFC 9112 §9.3.1.1).
_RETRIED_BY_AIOHTTP = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def translate(exc: BaseException) -> UpstreamError:
    """Map an aiohttp/asyncio exception to the proxy's own error type."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamConnectTimeout(str(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, TimeoutError):
            return UpstreamConnectTimeout(str(exc))
        return UpstreamConnectError(str(exc))
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return UpstreamReadTimeout(str(exc))
    return UpstreamProtocolError(f"{type(exc).__name__}: {exc}")


async def _then(body: AsyncIterable[bytes], on_end: Callable[[], None]) -> AsyncIterator[bytes]:
    async for chunk in body:
        yield chunk
    on_end()


class AiohttpResponse:
    __slots__ = ("_read_timeout", "_response", "complete", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float | None) -> None:
        self._response = response
        self.complete = False
        # Set when aiohttp's own sock_read timeout is off for this response (uploads).
        self._read_timeout = read_timeout
        self.status = response.status
        self.headers: RawHeaders = [(name.lower(), value) for name, value in response.raw_headers]

    @property
    def body_ready(self) -> bool:
        return self._response.content.at_eof()

    async def body(self) -> AsyncIterator[bytes]:
        content = self._response.content
        read_timeout = self._read_timeout
        try:
            while True:
                if read_timeout is None:
                    chunk = await content.readany()
                else:
                    async with asyncio.timeout(read_timeout):
                        chunk = await content.readany()
                if not chunk:
                    break
                if content.at_eof():
                    self.complete = True
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate(exc) from exc
        self.complete = True

    async def aclose(self) -> None:
        if self.complete:
            self._response.release()
        else:
            # Unread body: the connection is in an unknown state and must not be reused.
            self._response.close()


class AiohttpUpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._base = settings.upstream
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        # While a request body is streaming the app is allowed to be silent: --read-timeout
        # starts once the body has been sent (like nginx's proxy_read_timeout), so uploads run
        # with aiohttp's sock_read off and the timeout applied here.
        self._upload_timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout, sock_read=None
        )
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._settings.upstream_pool_size,
            limit_per_host=0,
            keepalive_timeout=self._settings.upstream_keepalive,
            ttl_dns_cache=10,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=self._timeout,
            raise_for_status=False,
            requote_redirect_url=False,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside the running event loop.
        if self._session is None:
            self._session = self._new_session()
        return self._session

    async def request(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: AsyncIterable[bytes] | None,
    ) -> AiohttpResponse:
        url = URL(self._base + target.decode("latin-1"), encoded=True)
        str_headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
        # aiohttp already retries idempotent methods once; a request with no body can be retried
        # safely too (nothing was streamed, and the app never answered).
        if body is not None:
            return await self._upload(method, url, str_headers, body)
        attempts = 1 if method in _RETRIED_BY_AIOHTTP else 2
        for attempt in range(attempts):
            try:
                response = await self._send(method, url, str_headers, None, self._timeout)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                retriable = not isinstance(exc, aiohttp.ClientConnectorError)
                if retriable and attempt + 1 < attempts:
                    continue
                raise translate(exc) from exc
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                raise translate(exc) from exc
            return AiohttpResponse(response, None)
        raise UpstreamProtocolError("unreachable")  # pragma: no cover - loop always returns/raises

    async def _send(
        self,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        data: AsyncIterable[bytes] | None,
        timeouts: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        return await self.session.request(
            method,
            url,
            headers=headers,
            data=data,
            allow_redirects=False,
            compress=None,
            auto_decompress=False,
            timeout=timeouts,
        )

    async def _upload(
        self, method: str, url: URL, headers: list[tuple[str, str]], body: AsyncIterable[bytes]
    ) -> AiohttpResponse:
        read_timeout = self._settings.read_timeout
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                body_then_clock = _then(
                    body, lambda: deadline.reschedule(loop.time() + read_timeout)
                )
                response = await self._send(
                    method, url, headers, body_then_clock, self._upload_timeout
                )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise translate(exc) from exc
        return AiohttpResponse(response, read_timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
