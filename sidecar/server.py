"""Entrypoint of `streamproxy run`: wire the parts together and run the lifecycle.

Two uvicorn servers share one event loop: the proxy port and the admin port. Signals are ours,
not uvicorn's, because shutdown is a sequence (CONTRACT §4):

    SIGTERM / SIGINT / POST /quitquitquit
      -> readiness 503 at once (Lifecycle.draining)
      -> keep serving for --drain-seconds
      -> proxy listener closes, idle keep-alive connections close,
         in-flight requests finish (at most --shutdown-timeout)
      -> pending counts flushed -> admin port closes -> exit 0
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import socket
import sys
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import uvicorn

from sidecar.admin import AdminState, create_admin_app, is_ready
from sidecar.counting import make_counter
from sidecar.forwarder import Forwarder
from sidecar.health import UpstreamHealth
from sidecar.http_protocol import ProxyHttpProtocol
from sidecar.lifecycle import Lifecycle
from sidecar.logs import configure_logging
from sidecar.metrics import ProxyMetrics, make_registry
from sidecar.settings import Settings
from sidecar.types import ASGIApp
from sidecar.upstream import make_upstream_client

if TYPE_CHECKING:
    from sidecar.websocket import WebSocketProxy

logger = logging.getLogger("streamproxy")

EXIT_BIND_ERROR = 1
BACKLOG = 2048
# Extra seconds uvicorn waits after --shutdown-timeout before cancelling tasks itself.
_SHUTDOWN_BACKSTOP = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the lifecycle here owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before anything else starts, so a taken port fails fast with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listen at once: with SO_REUSEADDR, two sockets that are bound but not yet listening
        # may share a port, and --admin-port equal to --port would then split the traffic.
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "lifespan": "off",
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "date_header": False,
        "timeout_keep_alive": settings.keepalive_timeout,  # int() would make 0.5 "close at once"
        # Seconds as given: int() would turn 0.5 into 0, which uvicorn reads as "no limit".
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "backlog": BACKLOG,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _websocket_server_protocol(**kwargs: Any) -> asyncio.Protocol:
    """uvicorn's websocket protocol, imported on the first upgrade, not at startup: with the
    websockets library it costs ~0.5 MiB of idle RSS that a proxy which never sees a websocket
    would carry in every pod. uvicorn takes a class or any callable with its keyword arguments."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    return WebSocketsSansIOProtocol(**kwargs)


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
    client = make_upstream_client(settings)

    async def websockets() -> WebSocketProxy:
        # aiohttp takes ~130 ms to import: in a thread, or the first websocket would stall every
        # request on the loop for that long. (The server side's protocol, ~20 ms, can't wait:
        # uvicorn needs it inside the callback that sees the upgrade.)
        await asyncio.to_thread(importlib.import_module, "sidecar.websocket")
        from sidecar.websocket import WebSocketProxy

        return WebSocketProxy(settings, metrics)

    registry = make_registry(
        metrics, counter, lambda: health.up, lambda: is_ready(health, lifecycle)
    )
    admin_state = AdminState(counter, health, lifecycle, registry)

    forwarder = Forwarder(client, counter, metrics, websockets)
    proxy = _Server(
        _uvicorn_config(
            forwarder,
            settings,
            http=ProxyHttpProtocol,
            ws=_websocket_server_protocol,
            # Only a backstop: _finish_in_flight ends what is left at --shutdown-timeout.
            timeout_graceful_shutdown=settings.shutdown_timeout + _SHUTDOWN_BACKSTOP,
        )
    )
    # The admin port gets the same connection guards: an endless header there would grow the
    # memory of the whole process just the same.
    admin = _Server(
        _uvicorn_config(create_admin_app(admin_state), settings, http=ProxyHttpProtocol, ws="none")
    )

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.begin_shutdown, signal.Signals(sig).name)

    await counter.start()
    health.start()
    await health.wait_first_check(within=1.0)
    # Everything made so far lives as long as the process: keep the collector from walking it
    # again, and collect the young generation less often (each request allocates a scope, a task
    # and header lists; ~15 % of a small request's CPU went to collections).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    proxy_task = loop.create_task(proxy.serve(sockets=[proxy_sock]))
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
    done, _ = await asyncio.wait(
        {shutdown, proxy_task, admin_task}, return_when=asyncio.FIRST_COMPLETED
    )
    exit_code = 0
    if shutdown not in done:
        # A server stopped by itself: that is a failure, not a shutdown request.
        lifecycle.begin_shutdown("server stopped")
        exit_code = 1
    shutdown.cancel()

    if settings.drain_seconds > 0 and not proxy_task.done():
        logger.info("draining", extra={"seconds": settings.drain_seconds})
        await asyncio.sleep(settings.drain_seconds)

    proxy.should_exit = True
    await _finish_in_flight(proxy, proxy_task, settings.shutdown_timeout)
    await client.aclose()
    await forwarder.aclose()
    await health.stop()
    await counter.close()
    admin.should_exit = True
    with contextlib.suppress(Exception):
        await admin_task
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    logger.info("streamproxy stopped", extra={"exit_code": exit_code})
    return exit_code


async def _finish_in_flight(server: _Server, task: asyncio.Task[None], within: float) -> None:
    """Let in-flight requests finish for at most `within` seconds, then reset their connections.

    uvicorn's own timeout cancels the request tasks, and the client then gets a made-up `500`
    that looks like the app's. A reset instead ends each request as a client disconnect does:
    the client sees the connection end, and the upstream request is released.
    """
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        connections = list(server.server_state.connections)
        logger.warning(
            "shutdown timeout: resetting in-flight connections",
            extra={"connections": len(connections)},
        )
        for connection in connections:
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
    with contextlib.suppress(Exception):
        await task


def run(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.access_log)
    try:
        proxy_sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        print(
            f"streamproxy: error: --port {settings.port}: cannot bind: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_BIND_ERROR
    try:
        admin_sock = bind_socket(settings.effective_admin_host, settings.admin_port)
    except OSError as exc:
        proxy_sock.close()
        print(
            f"streamproxy: error: --admin-port {settings.admin_port}: cannot bind: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_BIND_ERROR
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(settings, proxy_sock, admin_sock))
