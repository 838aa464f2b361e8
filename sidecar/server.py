"""Entrypoint of `streamproxy run`: wire the parts together and run the lifecycle.

The proxy port is our own protocol (`sidecar.proxy.protocol.ClientProtocol`) on a plain
`loop.create_server`; the admin port is Starlette on uvicorn, where their cost doesn't matter.
Both share one event loop. Signals are ours, because shutdown is a sequence (CONTRACT §4):

    GET /drain?seconds=N (the app's preStop hook; a native sidecar is stopped after the app)
      -> every response with `Connection: close` (Lifecycle.closing), idle ones closed after N s
    SIGTERM / SIGINT / POST /quitquitquit
      -> readiness 503 at once (Lifecycle.draining)
      -> keep serving for --drain-seconds (less what /drain already drained), every response
         with `Connection: close`
      -> proxy listener closes, idle keep-alive connections close,
         in-flight requests finish (at most --shutdown-timeout), the rest are reset
      -> pending counts flushed -> admin port closes -> exit 0
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Generator
from typing import Any

import uvicorn

from sidecar.access_log import ACCESS_LOG
from sidecar.admin import AdminState, create_admin_app, is_ready
from sidecar.counter.base import make_counter
from sidecar.guardrails import Guardrails
from sidecar.health import UpstreamHealth
from sidecar.lifecycle import Lifecycle
from sidecar.logs import configure_logging
from sidecar.metrics import ProxyMetrics, make_registry
from sidecar.proxy.context import ProxyContext
from sidecar.proxy.protocol import ClientProtocol
from sidecar.settings import Settings
from sidecar.upstream.pool import Pool

logger = logging.getLogger("streamproxy")

EXIT_BIND_ERROR = 1
# The admin port's backlog: probes and scrapes only.
ADMIN_BACKLOG = 128


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the lifecycle here owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """Bind before anything else starts, so a taken port fails fast with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listen at once: with SO_REUSEADDR, two sockets that are bound but not yet listening
        # may share a port, and --admin-port equal to --port would then split the traffic.
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _admin_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        # h11 bounds a request head (16 KiB) on its own: an endless header on the admin port
        # can't grow the process's memory either.
        http="h11",
        ws="none",
        timeout_keep_alive=int(max(settings.keepalive_timeout, 1)),
        backlog=ADMIN_BACKLOG,
    )


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this is a fallback
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def serve(settings: Settings, proxy_sock: socket.socket, admin_sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    lifecycle = Lifecycle()
    metrics = ProxyMetrics()
    counter = make_counter(settings)
    health = UpstreamHealth(settings)
    pool = Pool(settings, loop)
    metrics.pool = pool
    # Logging is configured (run()): whether the access log is on is read here, once.
    guards = Guardrails.from_settings(settings, metrics, ACCESS_LOG)
    ctx = ProxyContext(settings, loop, pool, counter, metrics, lifecycle, guards)

    registry = make_registry(
        metrics, counter, lambda: health.up, lambda: is_ready(health, lifecycle)
    )
    admin = _Server(
        _admin_config(
            create_admin_app(
                AdminState(
                    counter,
                    health,
                    lifecycle,
                    registry,
                    close_idle=ctx.close_idle,
                    drain_token=(
                        settings.drain_token.get_secret_value() if settings.drain_token else None
                    ),
                )
            ),
            settings,
        )
    )

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.begin_shutdown, signal.Signals(sig).name)

    await counter.start()
    health.start()
    await health.wait_first_check(within=1.0)
    # Everything made so far lives as long as the process: keep the collector from walking it
    # again, and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    proxy = await loop.create_server(
        lambda: ClientProtocol(ctx), sock=proxy_sock, backlog=settings.backlog
    )
    admin_task = loop.create_task(admin.serve(sockets=[admin_sock]))
    logger.info(
        "streamproxy started",
        extra={
            "proxy": f"{settings.host}:{settings.port}",
            "admin": f"{settings.effective_admin_host}:{settings.admin_port}",
            "upstream": settings.upstream,
            "redis": counter.redis_state,
        },
    )

    shutdown = loop.create_task(lifecycle.wait_for_shutdown())
    done, _ = await asyncio.wait({shutdown, admin_task}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if shutdown not in done:
        # The admin server stopped by itself: that is a failure, not a shutdown request.
        lifecycle.begin_shutdown("server stopped")
        exit_code = 1
    shutdown.cancel()

    # Every response now says `Connection: close` (Lifecycle.closing); a drain begun earlier by
    # the app's preStop hook (/drain) counts towards --drain-seconds.
    drain_left = lifecycle.drain_left(settings.drain_seconds)
    if drain_left > 0:
        logger.info("draining", extra={"seconds": round(drain_left, 3)})
        await asyncio.sleep(drain_left)

    proxy.close()
    await ctx.shut_down(settings.shutdown_timeout)
    ACCESS_LOG.flush()
    await pool.aclose()
    await health.stop()
    await counter.close()
    admin.should_exit = True
    with contextlib.suppress(Exception):
        await admin_task
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    logger.info("streamproxy stopped", extra={"exit_code": exit_code})
    return exit_code


def run(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.access_log)
    try:
        proxy_sock = bind_socket(settings.host, settings.port, settings.backlog)
    except OSError as exc:
        print(
            f"streamproxy: error: --port {settings.port}: cannot bind: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_BIND_ERROR
    try:
        admin_sock = bind_socket(settings.effective_admin_host, settings.admin_port, ADMIN_BACKLOG)
    except OSError as exc:
        proxy_sock.close()
        print(
            f"streamproxy: error: --admin-port {settings.admin_port}: cannot bind: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_BIND_ERROR
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(settings, proxy_sock, admin_sock))
