"""`H1UpstreamClient`: a lean HTTP/1.1 connection pool to the app on asyncio protocols.

The `UpstreamClient` of the hot path (see `sidecar.upstream` for the rules it follows). One
pool to one host:port; each connection is an `H1Connection` (httptools parser, one exchange at a
time). Per request: take the newest idle connection (LIFO keeps few connections warm), write the
head in one `write()`, stream the body from a task (so an early response is seen), wait for the
headers; the body is then pulled chunk by chunk by the caller.

A connection goes back to the pool only when the response ended cleanly, the request body was
sent completely and neither side said `Connection: close`; in every other case (error, timeout,
cancellation, `aclose()` before the end) it is aborted. Idle connections are dropped after
`upstream_keepalive` seconds; at most `upstream_pool_size` connections exist at once (waiting for
one is bounded by `connect_timeout`).

Keep-alive race: when a reused connection is closed by the app before any response byte, the
request is sent again once on a new connection, provided the body is empty, untouched, or was a
single chunk already pulled (kept in memory to replay it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator

from sidecar.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
)
from sidecar.h1_connection import (
    BodySender,
    ConnectionClosed,
    H1Connection,
    encode_head,
)
from sidecar.settings import Settings
from sidecar.types import RawHeaders


class _Retry(Exception):
    def __init__(self, body: AsyncIterable[bytes] | None) -> None:
        self.body = body


class H1Response:
    __slots__ = ("_client", "_conn", "_sender", "complete", "headers", "status")

    def __init__(self, client: H1UpstreamClient, conn: H1Connection, sender: BodySender | None):
        self.status = conn.status
        self.headers = conn.headers
        # True once the last body byte has been handed out: the caller may send the chunk it
        # just got as the final one (`more_body=False`) without another round through body().
        self.complete = False
        self._client = client
        self._conn: H1Connection | None = conn
        self._sender = sender

    @property
    def body_ready(self) -> bool:
        conn = self._conn
        return conn is None or bool(conn.chunks) or conn.complete

    def body(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> H1Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            if conn.chunks:
                chunk = conn.take()
                if conn.complete and not conn.chunks:
                    self.complete = True
                    self._finish()  # the connection can serve the next request already
                return chunk
            if conn.complete:
                self.complete = True
                self._finish()
                raise StopAsyncIteration
            error = conn.error
            if error is not None:
                self._finish()
                if isinstance(error, UpstreamError):
                    raise error
                raise UpstreamProtocolError(f"request body failed: {error!r}") from error
            try:
                await conn.wait()
            except BaseException:
                self._finish()
                raise

    async def aclose(self) -> None:
        self._finish()

    def _finish(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        sender = self._sender
        reusable = conn.complete and conn.keep_alive and conn.error is None and not conn.closed
        if sender is not None and not sender.done_cleanly:
            reusable = False
            sender.task.cancel()
        self._client._release(conn, reusable)


class H1UpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self._host = settings.upstream_host
        self._port = settings.upstream_port
        self._connect_timeout = settings.connect_timeout
        self._read_timeout = settings.read_timeout
        self._keepalive = settings.upstream_keepalive
        self._size = settings.upstream_pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: deque[H1Connection] = deque()
        self._count = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        # Read timeouts: one periodic check over the busy connections instead of one timer per
        # wait (a timer costs ~3 us under uvloop, a third of this client's own per-request time).
        self._busy: set[H1Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._tick = min(1.0, self._read_timeout / 4)

    # UpstreamClient

    async def request(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: AsyncIterable[bytes] | None,
    ) -> H1Response:
        head, chunked, close = encode_head(method, target, headers, body is not None)
        head_only = method == "HEAD"
        conn = self._pop_idle() or await self._acquire(fresh=False)
        try:
            return await self._exchange(conn, head, head_only, close, body, chunked, True)
        except _Retry as retry:
            conn = await self._acquire(fresh=True)
            return await self._exchange(conn, head, head_only, close, retry.body, chunked, False)

    async def aclose(self) -> None:
        self._closed = True
        for timer in (self._sweeper, self._watchdog):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._watchdog = None
        while self._idle:
            self._idle.pop().abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def connections(self) -> int:
        """Connections open (idle or busy) or being opened."""
        return self._count

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    # One exchange

    async def _exchange(
        self,
        conn: H1Connection,
        head: bytes,
        head_only: bool,
        close: bool,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        may_retry: bool,
    ) -> H1Response:
        conn.begin(head_only)
        if close:
            conn.keep_alive = False
        sender: BodySender | None = None
        try:
            if not conn.write(head):
                raise ConnectionClosed("the app closed the connection before responding")
            if body is not None:
                sender = BodySender(conn, body, chunked)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException as exc:
            replay: AsyncIterable[bytes] | None = None
            retry = may_retry and isinstance(exc, ConnectionClosed)
            retry = retry and conn.reused and not conn.got_bytes
            if retry and sender is not None:
                replay = sender.replayable()
                retry = replay is not None
            if sender is not None:
                sender.task.cancel()
            self._release(conn, False)
            if retry:
                raise _Retry(replay) from exc
            raise
        return H1Response(self, conn, sender)

    # The pool

    async def _acquire(self, fresh: bool) -> H1Connection:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise UpstreamConnectError("the upstream client is closed")
            if not fresh and (conn := self._pop_idle()) is not None:
                return conn
            if self._count < self._size:
                self._count += 1
                try:
                    return await self._connect(loop)
                except BaseException:
                    self._count -= 1
                    self._wake_waiter()
                    raise
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_waiter()  # woken as we gave up: pass the turn on
                waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise UpstreamConnectTimeout(
                        f"all {self._size} upstream connections busy for {self._connect_timeout:g}s"
                    ) from None
                raise

    def _pop_idle(self) -> H1Connection | None:
        """The newest idle connection still usable (synchronous: the common case)."""
        idle = self._idle
        if not idle or self._loop is None:
            return None
        expired = self._loop.time() - self._keepalive
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.idle_since < expired:
                conn.abort()
                while idle:  # older ones: expired too
                    idle.pop().abort()
                return None
            conn.idle = False
            self._busy.add(conn)
            return conn
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> H1Connection:
        def factory() -> H1Connection:
            return H1Connection(loop, self._read_timeout, self._on_lost, self._arm_watchdog)

        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(factory, self._host, self._port)
        except TimeoutError:
            raise UpstreamConnectTimeout(
                f"no connection to {self._host}:{self._port} in {self._connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(f"{self._host}:{self._port}: {exc}") from None
        if conn.closed:
            raise UpstreamConnectError(f"{self._host}:{self._port}: closed on connect")
        conn.counted = True
        self._busy.add(conn)
        return conn

    def _release(self, conn: H1Connection, reusable: bool) -> None:
        self._busy.discard(conn)
        if not reusable or self._closed or conn.closed:
            conn.abort()
            return
        loop = self._loop
        assert loop is not None
        conn.reused = True
        conn.idle = True
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._keepalive, self._sweep)
        if self._waiters:
            self._wake_waiter()

    def _sweep(self) -> None:
        self._sweeper = None
        idle = self._idle
        if self._loop is None or not idle:
            return
        expired = self._loop.time() - self._keepalive
        while idle and idle[0].idle_since <= expired:
            idle.popleft().abort()
        if idle:
            next_expiry = idle[0].idle_since + self._keepalive - self._loop.time()
            self._sweeper = self._loop.call_later(max(next_expiry, 0.01), self._sweep)

    def _arm_watchdog(self) -> None:
        if self._watchdog is None and self._loop is not None:
            self._watchdog = self._loop.call_later(self._tick, self._check_timeouts)

    def _check_timeouts(self) -> None:
        self._watchdog = None
        if not self._busy or self._loop is None:
            return
        now = self._loop.time()
        for conn in list(self._busy):
            conn.check_timeout(now)
        self._watchdog = self._loop.call_later(self._tick, self._check_timeouts)

    def _on_lost(self, conn: H1Connection) -> None:
        self._busy.discard(conn)
        if not conn.counted:
            return
        conn.counted = False
        self._count -= 1
        if conn.idle:
            with contextlib.suppress(ValueError):  # already taken out by _acquire or _sweep
                self._idle.remove(conn)
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
