"""sidecar/guardrails.py: one bundle from Settings, wired into the metrics."""

from __future__ import annotations

import logging

from sidecar.access_log import AccessLog
from sidecar.guardrails import Guardrails
from sidecar.metrics import ProxyMetrics
from sidecar.settings import Settings


def off_log() -> AccessLog:
    logger = logging.getLogger("streamproxy.access.off-for-test")
    logger.disabled = True
    return AccessLog(logger)


def on_log() -> AccessLog:
    logger = logging.getLogger("streamproxy.access.on-for-test")
    logger.setLevel(logging.INFO)
    return AccessLog(logger)


def test_defaults() -> None:
    metrics = ProxyMetrics()
    guards = Guardrails.from_settings(Settings(), metrics, access_log=off_log())
    assert guards.request_ids is not None
    assert guards.request_id_response is False
    assert guards.trusted_peers.is_trusted("10.0.0.1")
    assert not guards.trusted_peers.is_trusted("203.0.113.1")
    assert guards.in_flight.limit == 0
    assert not guards.body_limit.enabled
    assert guards.access_log is None
    assert metrics.in_flight_limit is guards.in_flight
    assert metrics.body_limit is guards.body_limit


def test_every_option() -> None:
    settings = Settings(
        request_id=False,
        request_id_response=True,
        trusted_proxies="none",
        max_in_flight=8,
        max_request_body=1024,
    )
    log = on_log()
    guards = Guardrails.from_settings(settings, access_log=log)
    assert guards.request_ids is None
    assert guards.request_id_response is False  # nothing to return without IDs
    assert not guards.trusted_peers.is_trusted("127.0.0.1")
    assert guards.in_flight.limit == 8
    assert guards.body_limit.max_bytes == 1024
    assert guards.access_log is log
