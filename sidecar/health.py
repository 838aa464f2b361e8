"""Is the app reachable? A background TCP check, cached, so probes never cost a request.

Readiness needs only "does the app accept connections": a TCP connect says that without
assuming any path on the app. The check runs every `health_interval` seconds with a
`connect_timeout`-bounded attempt (at most 1 s), so a change shows within about 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sidecar.settings import Settings

logger = logging.getLogger("streamproxy.health")


class UpstreamHealth:
    def __init__(self, settings: Settings) -> None:
        self._host = settings.upstream_host
        self._port = settings.upstream_port
        self._interval = settings.health_interval
        self._timeout = min(settings.connect_timeout, 1.0)
        self.up = False
        self._checked_once = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), self._timeout
            )
        except (TimeoutError, OSError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

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
