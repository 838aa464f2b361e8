"""A byte tunnel after the app's `101`: WebSocket or any other protocol, relayed untouched.

Two pumps, one per direction, each an asyncio Protocol set on its transport
(`transport.set_protocol`): bytes read on one side are written to the other in the same
callback, and a side whose write buffer fills stops reading the other (flow control both ways).
No frame is parsed, so extensions and close codes pass as they are; no timeout applies (a
WebSocket may be quiet for hours); nothing but file descriptors limits how many are open. A
tunnel keeps the `--max-in-flight` slot of the request that opened it until it closes.

Half-close: an EOF from one side is passed on as an EOF (`write_eof`) to the other, which may
still answer; the tunnel closes once both sides have ended, or at once when one side is lost.
"""

from __future__ import annotations

import asyncio

from sidecar.proxy.context import ProxyContext


class _Pump(asyncio.Protocol):
    __slots__ = ("eof", "peer", "transport", "tunnel")

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.peer: _Pump = self
        self.eof = False

    def data_received(self, data: bytes) -> None:
        peer = self.peer.transport
        if not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer.eof:
            self.tunnel.close()
            return False
        if peer.transport.can_write_eof() and not peer.transport.is_closing():
            peer.transport.write_eof()
        return True  # keep our writing side open: the peer may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.lost(self, exc)

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()


class Tunnel:
    def __init__(
        self, ctx: ProxyContext, client: asyncio.Transport, app: asyncio.Transport
    ) -> None:
        self.ctx = ctx
        self.client = _Pump(self, client)
        self.app = _Pump(self, app)
        self.client.peer = self.app
        self.app.peer = self.client
        self._open = True

    def start(self, client_bytes: bytes, app_bytes: bytes) -> None:
        """Switch both transports over; bytes already read on either side go first."""
        metrics = self.ctx.metrics
        metrics.tunnels_open += 1
        metrics.tunnels_opened += 1
        self.ctx.add(self)
        self.client.transport.set_protocol(self.client)
        self.app.transport.set_protocol(self.app)
        if client_bytes:
            self.app.transport.write(client_bytes)
        if app_bytes:
            self.client.transport.write(app_bytes)
        self.app.transport.resume_reading()

    def lost(self, side: _Pump, exc: Exception | None) -> None:
        peer = side.peer.transport
        if exc is not None:
            peer.abort()  # a reset passes on as a reset
        elif not peer.is_closing():
            peer.close()  # after what is buffered for it
        self._closed()

    def close(self) -> None:
        for transport in (self.client.transport, self.app.transport):
            if not transport.is_closing():
                transport.close()
        self._closed()

    def _closed(self) -> None:
        if self._open:
            self._open = False
            metrics = self.ctx.metrics
            metrics.tunnels_open -= 1
            metrics.tunnels_closed += 1
            self.ctx.in_flight.release()  # the upgrade request's slot, held while open
            self.ctx.remove(self)

    # Live (watchdog and shutdown)

    @property
    def idle(self) -> bool:
        return False

    def check_timeouts(self, now: float) -> None:
        return None

    def abort(self) -> None:
        for transport in (self.client.transport, self.app.transport):
            transport.abort()
        self._closed()
