"""The bench's own load for what wrk cannot do: many idle connections, WebSocket tunnels.

    python -m bench.load idle --port P --conns 10000
        opens the connections (at most 256 connecting at once), sends one keep-alive GET /small
        on each and reads its response, then prints {"opened": n, "failed": f, ...} and waits
        for a line on stdin (the bench reads the proxy's RSS meanwhile); then prints
        {"still_open": n} (connections the proxy has not closed) and closes them all.

    python -m bench.load ws --port P --clients 1000 --messages 5
        opens the WebSockets (GET /ws, Upgrade), holds them all open at once, then each sends
        its messages one by one and waits for each echo; prints what succeeded.

Every phase is bounded by --timeout; what did not finish in time is counted, not waited for.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
from typing import Any

import uvloop

REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
CONNECTING = 256


class Conn(asyncio.Protocol):
    """One client connection: a byte buffer and a future for the next thing awaited."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        if self.closed:
            raise ConnectionError("closed by the server")
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter

    async def read_head(self) -> tuple[int, dict[bytes, bytes]]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self.wait()
        head = bytes(self.buffer[:end]).split(b"\r\n")
        del self.buffer[: end + 4]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(head[0].split()[1]), headers

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self.wait()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


async def connect(port: int) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, "127.0.0.1", port)
    return conn


# Idle keep-alive connections


async def one_idle(port: int, gate: asyncio.Semaphore, conns: list[Conn]) -> None:
    async with gate:
        conn = await connect(port)
        conns.append(conn)
        assert conn.transport is not None
        conn.transport.write(REQUEST)
        status, headers = await conn.read_head()
        await conn.read_exactly(int(headers.get(b"content-length", b"0")))
        if status != 200:
            raise ConnectionError(f"status {status}")


async def idle(args: argparse.Namespace) -> None:
    gate = asyncio.Semaphore(CONNECTING)
    conns: list[Conn] = []
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(one_idle(args.port, gate, conns)) for _ in range(args.conns)]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task in pending:
        task.cancel()
    failed = [t for t in done if t.exception() is not None]
    errors = sorted({type(t.exception()).__name__ for t in failed})
    opened = len(done) - len(failed)
    report = {"opened": opened, "failed": len(failed) + len(pending), "errors": errors,
              "open_s": round(time.perf_counter() - started, 3)}  # fmt: skip
    print(json.dumps(report), flush=True)
    # The bench reads the proxy's RSS now, then tells us to go on (or closes our stdin).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"still_open": sum(1 for c in conns if not c.closed)}), flush=True)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0.1)


# WebSockets


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame: FIN, masked (RFC 6455 §5.3)."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    repeated = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return head + key + masked


async def read_frame(conn: Conn) -> tuple[int, bytes]:
    first = await conn.read_exactly(2)
    size = first[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await conn.read_exactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await conn.read_exactly(8), "big")
    if first[1] & 0x80:
        raise ValueError("masked frame from the server")
    return first[0] & 0x0F, await conn.read_exactly(size)


async def read_data_frame(conn: Conn) -> tuple[int, bytes]:
    """The next frame that is not a ping or a pong; pings are answered (a server may ping a
    client that has been waiting, as the websockets library does every 20 s)."""
    while True:
        opcode, payload = await read_frame(conn)
        if opcode == 0x9 and conn.transport is not None:
            conn.transport.write(frame(0xA, payload))
        elif opcode != 0xA:
            return opcode, payload


class WsClient:
    def __init__(self) -> None:
        self.stage = "connect"
        self.rtts: list[float] = []
        self.conn: Conn | None = None

    async def open(self, port: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            self.conn = conn = await connect(port)
            key = base64.b64encode(os.urandom(16))
            assert conn.transport is not None
            conn.transport.write(
                b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            self.stage = "handshake"
            status, _ = await conn.read_head()
            if status != 101:
                raise ConnectionError(f"status {status}")
            self.stage = "open"

    async def talk(self, messages: int) -> None:
        conn = self.conn
        assert conn is not None and conn.transport is not None
        for i in range(messages):
            payload = b"message %d from a bench client, 64 bytes long.................." % i
            started = time.perf_counter()
            conn.transport.write(frame(0x1, payload[:64]))
            opcode, echoed = await read_data_frame(conn)
            if opcode != 0x1 or echoed != payload[:64]:
                raise ValueError("wrong echo")
            self.rtts.append(time.perf_counter() - started)
        self.stage = "echoed"
        conn.transport.write(frame(0x8, b"\x03\xe8"))  # close, 1000
        opcode, _ = await read_data_frame(conn)
        self.stage = "closed" if opcode == 0x8 else "echoed"


async def ws(args: argparse.Namespace) -> None:
    gate = asyncio.Semaphore(CONNECTING)
    clients = [WsClient() for _ in range(args.clients)]
    started = time.perf_counter()
    opening = [asyncio.ensure_future(c.open(args.port, gate)) for c in clients]
    await asyncio.wait(opening, timeout=args.timeout)
    open_s = time.perf_counter() - started
    concurrent = sum(1 for c in clients if c.stage == "open" and not c.conn.closed)  # type: ignore[union-attr]
    talking = [asyncio.ensure_future(c.talk(args.messages)) for c in clients if c.stage == "open"]
    if talking:
        await asyncio.wait(talking, timeout=args.timeout)
    stages: dict[str, int] = {}
    for client in clients:
        stages[client.stage] = stages.get(client.stage, 0) + 1
    rtts = sorted(rtt for c in clients for rtt in c.rtts)
    report: dict[str, Any] = {
        "clients": args.clients,
        "concurrent_open": concurrent,
        "echoed": stages.get("echoed", 0) + stages.get("closed", 0),
        "closed_cleanly": stages.get("closed", 0),
        "stages": stages,
        "open_s": round(open_s, 3),
        "total_s": round(time.perf_counter() - started, 3),
        "messages": len(rtts),
    }
    if rtts:
        report["rtt_p50_ms"] = round(1000 * statistics.median(rtts), 3)
        report["rtt_p99_ms"] = round(1000 * rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], 3)
    for task in opening + talking:
        task.cancel()
    for client in clients:
        if client.conn is not None and client.conn.transport is not None:
            client.conn.transport.abort()
    print(json.dumps(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p_idle = sub.add_parser("idle")
    p_idle.add_argument("--port", type=int, required=True)
    p_idle.add_argument("--conns", type=int, default=10000)
    p_idle.add_argument("--timeout", type=float, default=60)
    p_ws = sub.add_parser("ws")
    p_ws.add_argument("--port", type=int, required=True)
    p_ws.add_argument("--clients", type=int, default=1000)
    p_ws.add_argument("--messages", type=int, default=5)
    p_ws.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(idle(args) if args.what == "idle" else ws(args))


if __name__ == "__main__":
    main()
