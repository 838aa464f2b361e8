"""Is the app reachable? A background check, cached, so probes never cost a request.

By default readiness needs only "does the app accept connections": a TCP connect says that
without assuming any path on the app. With `--upstream-health-path PATH` the check is
`GET PATH` instead, and the app is up when it answers any status below 500 (a 404 or 401 still
proves the app serves HTTP; a 503 is the app saying it is not ready). The check runs every
`health_interval` seconds and each attempt, connect and answer together, is bounded by
`connect_timeout` capped at 1 s (the kubelet's default probe timeout), so a change shows within
about 2 s. The check talks to the app directly: it is not proxied and never counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sidecar import __version__
from sidecar.settings import Settings

logger = logging.getLogger("streamproxy.health")
# Longest status line read from the app; anything longer is not HTTP.
MAX_STATUS_LINE = 1024


def health_request(path: str, host: str, port: int) -> bytes:
    """The probe's request: HTTP/1.1, closed after one answer."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n"
        f"User-Agent: streamproxy-health/{__version__}\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")


def status_of(status_line: bytes) -> int | None:
    """`b"HTTP/1.1 204 No Content\\r\\n"` -> 204; None when it is not an HTTP/1.x status line."""
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        return None
    if rest[3:4] not in (b" ", b"\r", b"\n", b""):
        return None
    status = int(code)
    return status if 100 <= status <= 599 else None


class UpstreamHealth:
    def __init__(self, settings: Settings) -> None:
        self._host = settings.upstream_host
        self._port = settings.upstream_port
        self._interval = settings.health_interval
        self._timeout = min(settings.connect_timeout, 1.0)
        self._path = settings.upstream_health_path
        self.up = False
        self._checked_once = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        try:
            return await asyncio.wait_for(self._attempt(), self._timeout)
        except (TimeoutError, OSError):
            return False

    async def _attempt(self) -> bool:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            if self._path is None:
                return True
            writer.write(health_request(self._path, self._host, self._port))
            await writer.drain()
            while True:
                line = await reader.readline()
                status = status_of(line) if len(line) <= MAX_STATUS_LINE else None
                if status is None or status >= 200:
                    return status is not None and status < 500
                # An interim answer (103 Early Hints): skip its headers, read the final one.
                while (await reader.readline()).strip():
                    pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _run(self) -> None:
        while True:
            up = await self.check_once()
            if up != self.up:
                logger.info(
                    "app is reachable" if up else "app is unreachable",
                    extra={"upstream": f"{self._host}:{self._port}", "up": up},
                )
            self.up = up
            self._checked_once.set()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_first_check(self, within: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._checked_once.wait(), within)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
