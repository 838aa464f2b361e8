"""A TCP fault proxy between a client and a server (Redis) on loopback, for fault tests.

It runs its own event loop in a thread, so it keeps working while the test's loop is busy.
Modes (switch at any time with `set_mode`):

- `pass`: relay both ways;
- `drop_replies`: relay client→server, but when the server answers, cut both connections
  instead of relaying the reply — the server applied the command, the client never hears it;
- `stall`: accept and hold: nothing is relayed either way (a hung Redis);
- `refuse`: stop listening (connection refused) and cut every open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "drop_replies", "stall", "refuse"]
T = TypeVar("T")


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode = "pass"
        self.dropped_replies = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._flowing: asyncio.Event | None = None  # set unless stalled; made on the proxy loop

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        self._call(self._set_mode(mode))

    def cut(self) -> None:
        """Abort every open connection (the mode is unchanged)."""
        self._call(self._cut())

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Running on the proxy's loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        assert self._flowing is not None
        if mode == "stall":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
            await self._cut()
        elif previous == "refuse" and mode != "refuse":
            await self._listen()

    async def _cut(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "refuse":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, pair, reply=False)),
            asyncio.create_task(self._pump(up_reader, writer, pair, reply=True)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for transport in pair:
                transport.abort()
                self._transports.discard(transport)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.WriteTransport, ...],
        *,
        reply: bool,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await src.read(65536)
                if not data:
                    return
                assert self._flowing is not None
                await self._flowing.wait()  # a stall holds the bytes here
                if reply and self.mode == "drop_replies":
                    self.dropped_replies += 1
                    return  # the caller aborts both sides: the reply is never relayed
                dst.write(data)
                await dst.drain()
