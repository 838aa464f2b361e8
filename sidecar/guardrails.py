"""The guard rails of docs/guardrails.md, built once from `Settings` for the proxy-port protocol.

Startup (server.py) makes one bundle and hands it to the proxy port's shared context:

    guards = Guardrails.from_settings(settings, metrics, ACCESS_LOG)
    ctx = ProxyContext(settings, loop, pool, counter, metrics, lifecycle, guards)

and the proxy port (sidecar/proxy/, through the context's flattened attributes) reads only
these, each documented in its own module: `request_ids` (sidecar/request_id.py, None when
`--no-request-id`), `request_id_response`, `trusted_peers` (sidecar/trusted_peers.py),
`in_flight` (sidecar/in_flight.py), `body_limit` (sidecar/body_limit.py) and `access_log`
(sidecar/access_log.py, None when the log is off, so the per-request test is
`if ctx.access_log is not None`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.access_log import AccessLog
from sidecar.body_limit import BodyLimit
from sidecar.in_flight import InFlightLimit
from sidecar.metrics import ProxyMetrics
from sidecar.request_id import RequestIds
from sidecar.settings import Settings
from sidecar.trusted_peers import TrustedPeers


@dataclass(frozen=True, slots=True)
class Guardrails:
    request_ids: RequestIds | None
    request_id_response: bool
    trusted_peers: TrustedPeers
    in_flight: InFlightLimit
    body_limit: BodyLimit
    access_log: AccessLog | None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: ProxyMetrics | None = None,
        access_log: AccessLog | None = None,
    ) -> Guardrails:
        """Call after logging is configured: whether the access log is on is read here, once."""
        log = access_log or AccessLog()
        guards = cls(
            request_ids=RequestIds() if settings.request_id else None,
            request_id_response=settings.request_id and settings.request_id_response,
            trusted_peers=TrustedPeers.from_setting(settings.trusted_proxies),
            in_flight=InFlightLimit(settings.max_in_flight),
            body_limit=BodyLimit(settings.max_request_body),
            access_log=log if log.enabled else None,
        )
        if metrics is not None:
            metrics.in_flight_limit = guards.in_flight
            metrics.body_limit = guards.body_limit
        return guards
