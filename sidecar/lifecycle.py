"""Process lifecycle shared by the admin port and the server: started, draining, stopping."""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger("streamproxy.lifecycle")


class Lifecycle:
    def __init__(self) -> None:
        self.started_monotonic = time.monotonic()
        self.draining = False
        self._shutdown = asyncio.Event()

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic

    def begin_shutdown(self, reason: str = "signal") -> None:
        """SIGTERM, SIGINT or /quitquitquit: readiness turns 503 at once; the server drains."""
        if not self.draining:
            logger.info("shutting down", extra={"reason": reason})
        self.draining = True
        self._shutdown.set()

    async def wait_for_shutdown(self) -> None:
        await self._shutdown.wait()
