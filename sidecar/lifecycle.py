"""Process lifecycle shared by the admin port and the server: started, closing, draining, stopping.

Two flags, because a pod's termination reaches the sidecar in two steps when it is a native
sidecar (the kubelet stops the app first, the sidecar only once the app has exited):
- `closing`: every response says `Connection: close` and idle keep-alive connections are shut,
  so keep-alive clients (ingress controllers, meshes talking to pod IPs) move to other pods
  while the app still serves. Set by the app's preStop hook (`/drain` on the admin port) and by
  SIGTERM. Readiness is left alone: the endpoints controller already marks a terminating pod
  not ready, and a pod that still passes readiness stays usable as a *serving* terminating
  endpoint when no other pod is ready.
- `draining`: SIGTERM, SIGINT or /quitquitquit; readiness turns 503, the server drains and exits.
"""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger("streamproxy.lifecycle")

# The longest wait /drain accepts (the app's preStop hook): longer is a mistake, not a drain.
MAX_DRAIN_WAIT = 3600.0


class Lifecycle:
    def __init__(self) -> None:
        self.started_monotonic = time.monotonic()
        self.closing = False
        self.closing_since: float | None = None
        self.draining = False
        self._shutdown = asyncio.Event()

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic

    def begin_closing(self, reason: str) -> None:
        """From now on keep-alive connections end after their response (CONTRACT §4)."""
        if not self.closing:
            logger.info("closing keep-alive connections", extra={"reason": reason})
            self.closing = True
            self.closing_since = time.monotonic()

    def drain_left(self, drain_seconds: float) -> float:
        """What remains of a drain of `drain_seconds` that began when closing did."""
        if self.closing_since is None:
            return drain_seconds
        return max(0.0, drain_seconds - (time.monotonic() - self.closing_since))

    def begin_shutdown(self, reason: str = "signal") -> None:
        """SIGTERM, SIGINT or /quitquitquit: readiness turns 503 at once; the server drains."""
        if not self.draining:
            logger.info("shutting down", extra={"reason": reason})
        self.begin_closing(reason)
        self.draining = True
        self._shutdown.set()

    async def wait_for_shutdown(self) -> None:
        await self._shutdown.wait()
