from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.counter.base import LocalCounter
from sidecar.metrics import ProxyMetrics, make_registry


def scrape(metrics: ProxyMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = make_registry(metrics, LocalCounter(), lambda: True, lambda: False)
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            families.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return families


def test_requests_are_counted_by_method_and_status_class() -> None:
    metrics = ProxyMetrics()
    metrics.observe("GET", 200, 0.002)
    metrics.observe("GET", 204, 0.002)
    metrics.observe("BREW", 418, 0.5)
    metrics.observe("POST", 502, 70.0)
    families = scrape(metrics)
    requests = families["streamproxy_requests_total"]
    assert requests[(("code", "2xx"), ("method", "GET"))] == 2
    assert requests[(("code", "4xx"), ("method", "OTHER"))] == 1
    assert requests[(("code", "5xx"), ("method", "POST"))] == 1


def test_latency_histogram_is_cumulative() -> None:
    metrics = ProxyMetrics()
    for seconds in (0.0001, 0.003, 0.003, 2.0, 100.0):
        metrics.observe("GET", 200, seconds)
    buckets = scrape(metrics)["streamproxy_request_duration_seconds_bucket"]
    assert buckets[(("le", "0.0005"),)] == 1
    assert buckets[(("le", "0.005"),)] == 3
    assert buckets[(("le", "2.5"),)] == 4
    assert buckets[(("le", "+Inf"),)] == 5


def test_upstream_errors_and_gauges_are_exposed() -> None:
    metrics = ProxyMetrics()
    metrics.upstream_error("connect_refused")
    metrics.upstream_error("connect_refused")
    families = scrape(metrics)
    assert families["streamproxy_upstream_errors_total"][(("reason", "connect_refused"),)] == 2
    assert families["streamproxy_upstream_errors_total"][(("reason", "read_timeout"),)] == 0
    assert families["streamproxy_upstream_up"][()] == 1
    assert families["streamproxy_ready"][()] == 0
    assert families["streamproxy_counter_pending"][()] == 0


# Guard rails and app timing (docs/guardrails.md)


class FakePool:
    idle_connections = 3
    busy_connections = 2
    slot_waits = 7


def test_upstream_duration_histogram() -> None:
    metrics = ProxyMetrics()
    for seconds in (0.0002, 0.004, 3.0):
        metrics.observe_upstream(seconds)
    families = scrape(metrics)
    buckets = families["streamproxy_upstream_duration_seconds_bucket"]
    assert buckets[(("le", "0.0005"),)] == 1
    assert buckets[(("le", "0.005"),)] == 2
    assert buckets[(("le", "+Inf"),)] == 3
    assert families["streamproxy_upstream_duration_seconds_count"][()] == 3
    assert abs(families["streamproxy_upstream_duration_seconds_sum"][()] - 3.0042) < 1e-9


def test_guard_rail_series_default_to_zero() -> None:
    families = scrape(ProxyMetrics())
    assert families["streamproxy_requests_shed_total"][()] == 0
    assert families["streamproxy_requests_too_large_total"][()] == 0
    assert families["streamproxy_tunnels_open"][()] == 0
    assert families["streamproxy_max_in_flight"][()] == 0
    assert "streamproxy_upstream_pool_idle_connections" not in families  # no pool attached


def test_in_flight_shed_and_too_large_come_from_the_gates() -> None:
    from sidecar.body_limit import BodyLimit
    from sidecar.in_flight import InFlightLimit

    metrics = ProxyMetrics()
    metrics.in_flight_limit = InFlightLimit(2)
    metrics.body_limit = BodyLimit(10)
    for _ in range(3):
        metrics.in_flight_limit.try_acquire()
    metrics.body_limit.declared_too_large(11)
    metrics.tunnels_open = 4
    families = scrape(metrics)
    assert families["streamproxy_in_flight_requests"][()] == 2
    assert families["streamproxy_requests_shed_total"][()] == 1
    assert families["streamproxy_max_in_flight"][()] == 2
    assert families["streamproxy_requests_too_large_total"][()] == 1
    assert families["streamproxy_tunnels_open"][()] == 4


def test_pool_gauges() -> None:
    metrics = ProxyMetrics()
    metrics.pool = FakePool()
    families = scrape(metrics)
    assert families["streamproxy_upstream_pool_idle_connections"][()] == 3
    assert families["streamproxy_upstream_pool_busy_connections"][()] == 2
    assert families["streamproxy_upstream_pool_waits_total"][()] == 7
