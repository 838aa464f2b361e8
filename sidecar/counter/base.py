"""The request counter seam: what the proxy and the admin port need from a counter.

Each request that reaches the forwarder calls `incr()` once: a plain integer increment, never
I/O. A counter that talks to Redis flushes those increments from a background task (see
`sidecar.counter.redis_store`). With no Redis URL, `LocalCounter` counts in this process only.
"""

from __future__ import annotations

import time
from typing import Literal, Protocol

from sidecar.settings import Settings

RedisState = Literal["up", "down", "disabled"]


class Counter(Protocol):
    def incr(self) -> None:
        """Count one request. O(1), no I/O, never raises."""

    @property
    def pending(self) -> int:
        """Requests counted here and not yet flushed to the shared store."""

    @property
    def redis_state(self) -> RedisState: ...

    async def start(self) -> None:
        """Start background flushing. Must not fail when Redis is down."""

    async def close(self) -> None:
        """Flush what is pending (bounded in time) and stop."""

    async def total(self) -> int:
        """Cluster-wide total: shared total (cached at most ~1 s) plus `pending`."""

    async def pod_total(self) -> int:
        """This pod's own total (flushed + pending)."""

    def stats(self) -> CounterStats:
        """Figures for /metrics."""


class CounterStats:
    __slots__ = ("flush_failures", "flushes", "last_flush_monotonic", "pending")

    def __init__(
        self,
        flushes: int = 0,
        flush_failures: int = 0,
        pending: int = 0,
        last_flush_monotonic: float | None = None,
    ) -> None:
        self.flushes = flushes
        self.flush_failures = flush_failures
        self.pending = pending
        self.last_flush_monotonic = last_flush_monotonic

    def last_flush_age(self) -> float | None:
        if self.last_flush_monotonic is None:
            return None
        return time.monotonic() - self.last_flush_monotonic


class LocalCounter:
    """In-process counter: the embedded default when no Redis URL is configured."""

    def __init__(self) -> None:
        self._count = 0

    def incr(self) -> None:
        self._count += 1

    @property
    def pending(self) -> int:
        return 0

    @property
    def redis_state(self) -> RedisState:
        return "disabled"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def total(self) -> int:
        return self._count

    async def pod_total(self) -> int:
        return self._count

    def stats(self) -> CounterStats:
        return CounterStats()


def make_counter(settings: Settings) -> Counter:
    if settings.redis_url is None and settings.redis_sentinels is None:
        return LocalCounter()
    from sidecar.counter.redis_store import RedisCounter

    return RedisCounter(settings)
