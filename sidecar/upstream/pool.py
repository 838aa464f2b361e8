"""The pool of connections to the app: acquiring, expiring and timing out, nothing else.

The exchange itself happens on the connection (`sidecar.upstream.connection`); the pool only
hands connections out and takes them back (httpcore's connection vs pool split). Callbacks, not
awaits: `acquire` answers at once with an idle connection (the common case), or later through
`Waiter.connection_ready` / `connection_failed` once a new connection is made or a slot frees.

- LIFO: the newest idle connection is used first, so few connections stay warm.
- A pooled connection the app closes is noticed at once (EOF while idle) and never handed out.
- Idle connections expire after `upstream_keepalive` seconds, or sooner when the app's
  `Keep-Alive: timeout=N` says it will close them first.
- At most `upstream_pool_size` connections exist (upgraded ones leave the pool and don't count);
  waiting for a slot is bounded by `pool_timeout` (503 `pool_timeout` past it).
- Read timeouts: one periodic check over the busy connections instead of a timer per wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

from sidecar.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamPoolTimeout,
)
from sidecar.settings import Settings
from sidecar.upstream.connection import UpstreamConnection

# Seconds taken off the app's Keep-Alive hint: the app's timer started before ours.
_HINT_MARGIN = 1.0


class Waiter(Protocol):
    # The exchange gave up (its client left): a connection made for it goes to the pool.
    gone: bool

    def connection_ready(self, conn: UpstreamConnection) -> None: ...

    def connection_failed(self, error: UpstreamError) -> None: ...


class Pool:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._host = settings.upstream_host
        self._port = settings.upstream_port
        self._connect_timeout = settings.connect_timeout
        self._pool_timeout = settings.pool_timeout
        self.read_timeout = settings.read_timeout
        self._keepalive = settings.upstream_keepalive
        self._size = settings.upstream_pool_size
        self._idle: deque[UpstreamConnection] = deque()
        self._count = 0  # connections open or being opened
        self._waiters: deque[tuple[Waiter, asyncio.TimerHandle]] = deque()
        self._connecting: set[asyncio.Task[None]] = set()
        self._busy: set[UpstreamConnection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._tick = min(1.0, self.read_timeout / 4)
        self._closed = False
        self.slot_waits = 0  # acquisitions that had to wait for a slot (/metrics)

    @property
    def connections(self) -> int:
        """Connections open (idle or busy) or being opened."""
        return self._count

    @property
    def idle_connections(self) -> int:
        return sum(1 for conn in self._idle if not conn.closed)

    @property
    def busy_connections(self) -> int:
        return len(self._busy)

    # Acquiring

    def acquire(self, waiter: Waiter, fresh: bool = False) -> None:
        """Hand `waiter` a connection: now if one is idle (unless `fresh`), else when made."""
        if self._closed:
            waiter.connection_failed(UpstreamConnectError("the proxy is shutting down"))
            return
        if not fresh and (conn := self._pop_idle()) is not None:
            self._busy.add(conn)
            self._arm_watchdog()
            waiter.connection_ready(conn)
            return
        if self._count < self._size:
            self._count += 1
            task = self.loop.create_task(self._connect(waiter))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            return
        self.slot_waits += 1
        timer = self.loop.call_later(self._pool_timeout, self._waiter_timed_out, waiter)
        self._waiters.append((waiter, timer))

    def _pop_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since >= self._idle_limit(conn):
                conn.abort()
                continue
            return conn
        return None

    def _idle_limit(self, conn: UpstreamConnection) -> float:
        hint = conn.keepalive_hint
        if hint is None:
            return self._keepalive
        return min(self._keepalive, max(hint - _HINT_MARGIN, hint / 2))

    async def _connect(self, waiter: Waiter) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self), self._host, self._port
                )
        except TimeoutError:
            self._connect_failed(
                waiter,
                UpstreamConnectTimeout(
                    f"no connection to {self._host}:{self._port} in {self._connect_timeout:g}s"
                ),
            )
            return
        except OSError as exc:
            self._connect_failed(waiter, UpstreamConnectError(f"{self._host}:{self._port}: {exc}"))
            return
        if conn.closed:
            # connection_lost already gave the slot back
            waiter.connection_failed(UpstreamConnectError("closed on connect"))
            return
        if waiter.gone or self._closed:
            self.release(conn, True)
            return
        self._busy.add(conn)
        self._arm_watchdog()
        waiter.connection_ready(conn)

    def _connect_failed(self, waiter: Waiter, error: UpstreamError) -> None:
        self._count -= 1
        self._wake_waiter()
        if not waiter.gone:
            waiter.connection_failed(error)

    def _waiter_timed_out(self, waiter: Waiter) -> None:
        for index, (queued, _) in enumerate(self._waiters):
            if queued is waiter:
                del self._waiters[index]
                break
        if not waiter.gone:
            waiter.connection_failed(
                UpstreamPoolTimeout(
                    f"all {self._size} upstream connections busy for {self._pool_timeout:g}s"
                )
            )

    def _wake_waiter(self) -> None:
        """A connection went idle or a slot freed: serve the longest waiter still there."""
        while self._waiters:
            waiter, timer = self._waiters.popleft()
            timer.cancel()
            if waiter.gone:
                continue
            self.acquire(waiter)
            return

    # Giving back

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        self._busy.discard(conn)
        if not reusable or self._closed or conn.closed:
            conn.abort()  # connection_lost gives the slot back
            return
        # A slow client may have paused reading in the very read that ended the response: an
        # idle connection must be read (EOF noticed), and the next response must arrive.
        conn.resume_reading()
        conn.reused = True
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        if self._waiters:
            self._wake_waiter()
        self._arm_watchdog()

    def lost(self, conn: UpstreamConnection) -> None:
        """The connection closed (either side): its slot is free again."""
        self._free_slot(conn)

    def detach(self, conn: UpstreamConnection) -> None:
        """An upgraded connection leaves the pool: tunnels are limited by descriptors only."""
        self._free_slot(conn)

    def _free_slot(self, conn: UpstreamConnection) -> None:
        self._busy.discard(conn)
        if conn.counted:
            conn.counted = False
            self._count -= 1
            if self._waiters:
                self._wake_waiter()

    # Read timeouts

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._tick, self._check_timeouts)

    def _check_timeouts(self) -> None:
        self._watchdog = None
        now = self.loop.time()
        for conn in list(self._busy):
            conn.check_timeout(now, self.read_timeout)
        if self._idle:
            # Expired idle connections: closed here, or the app's keep-alive timer would find
            # them first (and a late request would race it).
            kept = [c for c in self._idle if not c.closed]
            self._idle.clear()
            for conn in kept:
                if now - conn.idle_since >= self._idle_limit(conn):
                    conn.abort()
                else:
                    self._idle.append(conn)
        if self._busy or self._idle:
            self._arm_watchdog()

    async def aclose(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._idle:
            self._idle.pop().abort()
        while self._waiters:
            waiter, timer = self._waiters.popleft()
            timer.cancel()
            if not waiter.gone:
                waiter.connection_failed(UpstreamConnectError("the proxy is shutting down"))
        for task in list(self._connecting):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
