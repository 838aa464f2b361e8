"""What every connection of the proxy port shares: the pool, the counter, metrics, the
lifecycle, the timeouts, the guard rails (sidecar.guardrails), and the set of live connections
the watchdog and shutdown walk."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sidecar.access_log import AccessLog
from sidecar.counter.base import Counter
from sidecar.guardrails import Guardrails
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import ProxyMetrics
from sidecar.settings import Settings
from sidecar.upstream.pool import Pool


class Live(Protocol):
    """A client connection or a tunnel, as the watchdog and the shutdown see it."""

    @property
    def idle(self) -> bool: ...

    def check_timeouts(self, now: float) -> None: ...

    def close(self) -> None:
        """Close now if idle, else once the response in flight ends."""

    def abort(self) -> None: ...


class ProxyContext:
    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        pool: Pool,
        counter: Counter,
        metrics: ProxyMetrics,
        lifecycle: Lifecycle,
        guards: Guardrails | None = None,
    ) -> None:
        self.loop = loop
        self.pool = pool
        self.counter = counter
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.keepalive_timeout = settings.keepalive_timeout
        self.send_timeout = settings.send_timeout
        self.read_timeout = settings.read_timeout
        # Guard rails (docs/guardrails.md), flattened: one attribute read on the request path.
        # Each is decided once here; a feature that is off is None (or False) and costs a test.
        if guards is None:  # a context made on its own (tests): never the process's log buffer
            guards = Guardrails.from_settings(settings, metrics, AccessLog())
        self.guards = guards
        self.request_ids = guards.request_ids
        self.request_id_response = guards.request_id_response
        self.trusted_peers = guards.trusted_peers
        self.in_flight = guards.in_flight
        self.body_limit = guards.body_limit
        self.max_body = guards.body_limit.max_bytes
        self.access_log = guards.access_log
        self.live: set[Live] = set()
        self.shutting_down = False
        self._all_closed: asyncio.Future[None] | None = None
        shortest = min(settings.keepalive_timeout, settings.send_timeout, settings.read_timeout)
        self._tick = max(0.05, min(1.0, shortest / 4))
        self._watchdog: asyncio.TimerHandle | None = None

    # Connections

    def add(self, live: Live) -> None:
        self.live.add(live)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._tick, self._check_timeouts)

    def remove(self, live: Live) -> None:
        self.live.discard(live)
        if not self.live and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)

    def _check_timeouts(self) -> None:
        """One periodic walk instead of a timer per request (a timer costs ~3 us)."""
        self._watchdog = None
        now = self.loop.time()
        for live in list(self.live):
            live.check_timeouts(now)
        if self.live:
            self._watchdog = self.loop.call_later(self._tick, self._check_timeouts)

    # Shutdown (CONTRACT §4)

    def close_idle(self) -> int:
        """Close the keep-alive connections that wait for a request (the end of a drain): a
        client then opens its next connection elsewhere instead of finding this pod gone."""
        idle = [live for live in self.live if live.idle]
        for live in idle:
            live.close()
        return len(idle)

    async def shut_down(self, within: float) -> None:
        """Idle connections close now; the others once their response ends, for at most
        `within` seconds; then whatever is left is reset (as a client disconnect would be)."""
        self.shutting_down = True
        for live in list(self.live):
            live.close()
        if self.live:
            self._all_closed = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_closed), within)
            except TimeoutError:
                logging.getLogger("streamproxy").warning(
                    "shutdown timeout: resetting in-flight connections",
                    extra={"connections": len(self.live)},
                )
        for live in list(self.live):
            live.abort()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
