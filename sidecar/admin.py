"""The admin port: /status, /livez, /readyz, /metrics, /logging, /drain and POST /quitquitquit.

Starlette is fine here: probes and scrapes are rare, and none of this is on the proxy path.
Readiness comes from cached state (the background upstream check and the draining flag), so a
probe never causes a request to the app. Redis never decides readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import math
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sidecar import __version__
from sidecar.counter.base import Counter
from sidecar.health import UpstreamHealth
from sidecar.lifecycle import MAX_DRAIN_WAIT, Lifecycle
from sidecar.logs import LEVELS, current_level, set_level

logger = logging.getLogger("streamproxy.admin")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # On a dual-stack listener an IPv4 client shows as ::ffff:a.b.c.d, which Python < 3.13
    # does not call loopback.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_ready(health: UpstreamHealth, lifecycle: Lifecycle) -> bool:
    """The readiness verdict of /status, /readyz and the `streamproxy_ready` gauge."""
    return health.up and not lifecycle.draining


class AdminState:
    """What the admin endpoints read; all of it maintained elsewhere."""

    def __init__(
        self,
        counter: Counter,
        health: UpstreamHealth,
        lifecycle: Lifecycle,
        registry: CollectorRegistry,
        close_idle: Callable[[], int] = lambda: 0,
        drain_token: str | None = None,
    ) -> None:
        self.counter = counter
        self.health = health
        self.lifecycle = lifecycle
        self.registry = registry
        self.close_idle = close_idle  # ProxyContext.close_idle
        self.drain_token = drain_token

    def ready(self) -> bool:
        return is_ready(self.health, self.lifecycle)


def create_admin_app(state: AdminState) -> Starlette:
    async def status(request: Request) -> Response:
        ready = state.ready()
        body: dict[str, Any] = {
            "counter": await state.counter.total(),
            "pod_counter": await state.counter.pod_total(),
            "uptime": round(state.lifecycle.uptime, 3),
            "upstream": "up" if state.health.up else "down",
            "redis": state.counter.redis_state,
            "pending": state.counter.pending,
            "draining": state.lifecycle.draining,
            "closing": state.lifecycle.closing,
            "version": __version__,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if state.ready():
            return PlainTextResponse("ready\n")
        reason = "draining" if state.lifecycle.draining else "upstream down"
        return PlainTextResponse(f"not ready: {reason}\n", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    async def quitquitquit(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not _is_loopback(client):
            return PlainTextResponse("forbidden: loopback only\n", status_code=403)
        state.lifecycle.begin_shutdown("quitquitquit")
        return PlainTextResponse("shutting down\n")

    async def drain(request: Request) -> Response:
        # The app container's preStop hook (an httpGet, run by the kubelet: works in distroless
        # images). A native sidecar hears of the pod's end only once the app has exited; this
        # tells it while the app still serves: keep-alive clients are sent `Connection: close`
        # for `seconds`, then the idle ones are closed, and only then does the kubelet stop
        # the app. The worst a stranger can do with it is make clients reconnect: a token
        # (--drain-token) shuts even that off.
        client = request.client.host if request.client else None
        token = state.drain_token
        if not _is_loopback(client) and token is not None:
            sent = request.headers.get("x-streamproxy-drain-token", "")
            if not hmac.compare_digest(sent.encode(), token.encode()):
                return PlainTextResponse("forbidden: drain token\n", status_code=403)
        try:
            seconds = float(request.query_params.get("seconds", "0"))
        except ValueError:
            seconds = math.nan
        if not 0 <= seconds <= MAX_DRAIN_WAIT:
            return JSONResponse(
                {"error": f"seconds: a number from 0 to {MAX_DRAIN_WAIT}"}, status_code=400
            )
        state.lifecycle.begin_closing(f"/drain from {client}")
        if seconds:
            # SIGTERM meanwhile (a classic sidecar hears it with the app): stop waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.lifecycle.wait_for_shutdown(), seconds)
        closed = state.close_idle()
        return JSONResponse({"closing": True, "waited": seconds, "idle_closed": closed})

    async def get_logging(request: Request) -> Response:
        return JSONResponse({"level": current_level(), "levels": list(LEVELS)})

    async def post_logging(request: Request) -> Response:
        # Like Envoy's /logging and Linkerd's /proxy-log-level: debug logs can carry request
        # details, so only someone on the pod (kubectl exec, port-forward) may turn them on.
        client = request.client.host if request.client else None
        if not _is_loopback(client):
            return PlainTextResponse("forbidden: loopback only\n", status_code=403)
        level = request.query_params.get("level", "")
        try:
            previous = set_level(level)
        except ValueError as exc:
            return JSONResponse({"error": f"level: {exc}"}, status_code=400)
        logger.warning("log level changed", extra={"level": current_level(), "previous": previous})
        return JSONResponse({"level": current_level(), "previous": previous})

    return Starlette(
        routes=[
            Route("/logging", get_logging, methods=["GET"]),
            Route("/logging", post_logging, methods=["POST"]),
            Route("/status", status, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/quitquitquit", quitquitquit, methods=["POST"]),
            Route("/drain", drain, methods=["GET", "POST"]),
        ]
    )
