"""Proxy metrics: plain integers on the request path, Prometheus families at scrape time.

prometheus-client's `Counter.inc()` takes a lock per call; a sidecar pays that on every request
of every pod. Here the forwarder bumps ints and list slots (one event loop, no threads), and a
custom collector turns them into metric families only when /metrics is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sidecar.body_limit import BodyLimit
from sidecar.counter.base import Counter
from sidecar.errors import UPSTREAM_ERROR_REASONS
from sidecar.in_flight import InFlightLimit

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "WEBSOCKET"}
)
_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class ProxyMetrics:
    """Request-path counters. Every method is O(1) and allocation-free in the common case."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.request_bytes = 0
        self.response_bytes = 0
        self.upstream_errors = dict.fromkeys(UPSTREAM_ERROR_REASONS, 0)
        self.in_flight = 0
        # Byte tunnels after a 101 (WebSocket or any other upgrade)
        self.tunnels_open = 0
        self.tunnels_opened = 0
        self.tunnels_closed = 0
        # Guard rails and app timing (docs/guardrails.md), fed by the proxy-port protocol:
        # `observe_upstream(seconds)` when the app's response head arrives; `in_flight_limit`,
        # `body_limit` and `pool` are attached once at startup and read only at scrape time.
        self.upstream_latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.upstream_latency_sum = 0.0
        self.in_flight_limit: InFlightLimit | None = None
        self.body_limit: BodyLimit | None = None
        self.pool: PoolStats | None = None

    def observe(self, method: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:
            method = "OTHER"
        status_class = _STATUS_CLASSES[status // 100 - 1] if 100 <= status < 600 else "5xx"
        key = (method, status_class)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def upstream_error(self, reason: str) -> None:
        self.upstream_errors[reason] = self.upstream_errors.get(reason, 0) + 1

    def observe_upstream(self, seconds: float) -> None:
        """Time from the request's head sent to the app to the app's response head."""
        self.upstream_latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.upstream_latency_sum += seconds


class PoolStats(Protocol):
    """What the upstream pool shows /metrics (read at scrape time only)."""

    @property
    def idle_connections(self) -> int: ...  # open, kept for reuse

    @property
    def busy_connections(self) -> int: ...  # carrying a request now

    @property
    def slot_waits(self) -> int: ...  # acquisitions that waited for a free slot (a total)


def _histogram(counts: list[int]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", cumulative + counts[-1]))
    return buckets


def guardrail_families(m: ProxyMetrics) -> Iterator[Metric]:
    """The metrics of docs/guardrails.md; the in-flight gauge comes from the limit when set."""
    yield HistogramMetricFamily(
        "streamproxy_upstream_duration_seconds",
        "Time from the request sent to the app to the app's response head.",
        buckets=_histogram(m.upstream_latency_counts),
        sum_value=m.upstream_latency_sum,
    )
    limit = m.in_flight_limit
    yield CounterMetricFamily(
        "streamproxy_requests_shed",
        "Requests refused with 503 overloaded past --max-in-flight.",
        value=limit.shed if limit else 0,
    )
    yield GaugeMetricFamily(
        "streamproxy_max_in_flight",
        "The --max-in-flight limit (0 = unlimited).",
        value=limit.limit if limit else 0,
    )
    yield CounterMetricFamily(
        "streamproxy_requests_too_large",
        "Requests refused with 413 past --max-request-body.",
        value=m.body_limit.refused if m.body_limit else 0,
    )
    if m.pool is not None:
        yield GaugeMetricFamily(
            "streamproxy_upstream_pool_idle_connections",
            "Open connections to the app kept for reuse.",
            value=m.pool.idle_connections,
        )
        yield GaugeMetricFamily(
            "streamproxy_upstream_pool_busy_connections",
            "Connections to the app carrying a request now.",
            value=m.pool.busy_connections,
        )
        yield CounterMetricFamily(
            "streamproxy_upstream_pool_waits",
            "Requests that waited for a free connection slot (--upstream-pool-size).",
            value=m.pool.slot_waits,
        )


class _Collector(Collector):
    def __init__(
        self,
        metrics: ProxyMetrics,
        counter: Counter,
        upstream_up: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        self._metrics = metrics
        self._counter = counter
        self._upstream_up = upstream_up
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "streamproxy_requests",
            "Requests forwarded, by method and status class.",
            labels=("method", "code"),
        )
        for (method, status_class), value in sorted(m.requests.items()):
            requests.add_metric((method, status_class), value)
        yield requests

        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, m.latency_counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        cumulative += m.latency_counts[-1]
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily(
            "streamproxy_request_duration_seconds",
            "Time from request start to the end of the response body.",
            buckets=buckets,
            sum_value=m.latency_sum,
        )
        yield CounterMetricFamily(
            "streamproxy_request_bytes",
            "Request body bytes sent to the app.",
            value=m.request_bytes,
        )
        yield CounterMetricFamily(
            "streamproxy_response_bytes",
            "Response body bytes sent to clients.",
            value=m.response_bytes,
        )
        errors = CounterMetricFamily(
            "streamproxy_upstream_errors",
            "Requests the app could not serve, by reason.",
            labels=("reason",),
        )
        for reason, value in sorted(m.upstream_errors.items()):
            errors.add_metric((reason,), value)
        yield errors
        in_flight = m.in_flight_limit.in_flight if m.in_flight_limit else m.in_flight
        yield GaugeMetricFamily(
            "streamproxy_in_flight_requests", "Requests being forwarded now.", value=in_flight
        )
        yield from guardrail_families(m)
        yield GaugeMetricFamily(
            "streamproxy_tunnels_open",
            "Upgraded connections (WebSocket or other) relayed now.",
            value=m.tunnels_open,
        )
        yield CounterMetricFamily(
            "streamproxy_tunnels_opened",
            "Upgraded connections opened (after the app's 101).",
            value=m.tunnels_opened,
        )
        yield CounterMetricFamily(
            "streamproxy_tunnels_closed", "Upgraded connections closed.", value=m.tunnels_closed
        )
        yield GaugeMetricFamily(
            "streamproxy_upstream_up", "1 when the app accepts connections.",
            value=1 if self._upstream_up() else 0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "streamproxy_ready", "1 when /readyz answers 200.", value=1 if self._ready() else 0
        )

        stats = self._counter.stats()
        yield CounterMetricFamily(
            "streamproxy_counter_flushes",
            "Successful counter flushes to Redis.",
            value=stats.flushes,
        )
        yield CounterMetricFamily(
            "streamproxy_counter_flush_failures",
            "Counter flushes that failed (retried later).",
            value=stats.flush_failures,
        )
        yield GaugeMetricFamily(
            "streamproxy_counter_pending",
            "Requests counted here and not yet flushed to Redis.",
            value=self._counter.pending,
        )
        age = stats.last_flush_age()
        if age is not None:
            yield GaugeMetricFamily(
                "streamproxy_counter_last_flush_age_seconds",
                "Seconds since the last successful flush.",
                value=age,
            )


def make_registry(
    metrics: ProxyMetrics,
    counter: Counter,
    upstream_up: Callable[[], bool],
    ready: Callable[[], bool],
) -> CollectorRegistry:
    """A registry of our own (never the global one), so tests and processes don't collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, counter, upstream_up, ready))
    return registry
