"""A controllable upstream app for the proxy tests, served by a real uvicorn.

Run: `python -m tests.upstream_app --port N [--keep-alive S]`. Routes:

    /echo (and anything unknown)   JSON: method, raw_path, query, headers (list), body size+sha256
    /cookies                       two Set-Cookie headers and two X-Multi headers
    /hop                           response with hop-by-hop headers the proxy must strip
    /gzip                          a gzip-encoded body (the proxy must not decompress it)
    /status/NNN                    answers with that status
    /stream?bytes=N&chunked=1      N bytes in 64 KiB chunks; records progress under /stats
    /abort?bytes=N                 N bytes of a longer Content-Length, then the connection drops
    /silent                        never answers (until the client goes away)
    /silent-mid                    headers and one chunk, then silence
    /record?id=X                   reads the body; /stats "recorded"[X] says if it arrived whole
    /late-body?delay=S             headers at once, the body S seconds later (SSE, long polls)
    /hang                          never answers; counts itself in /stats while it waits
    /stats                         JSON: hanging requests now, disconnects seen, stream progress,
                                   "recent": the last 256 HTTP targets received (path?query)
    /set-cookie-once               Set-Cookie: session=..., to check no cookie jar exists
    /ws                            websocket echo; text "close:CODE" makes the app close with CODE
    /ws-refuse                     websocket handshake refused by the app (403)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from sidecar.types import Receive, Scope, Send

CHUNK = 64 * 1024
_BLOCK = b"s" * CHUNK

STATS: dict[str, Any] = {
    "hanging": 0,
    "disconnects": 0,
    "stream_sent": 0,
    "stream_done": False,
}
# Targets of the last HTTP requests that reached the app: lets tests prove what never arrived.
RECENT: deque[str] = deque(maxlen=256)


async def _read_body(receive: Receive) -> tuple[int, str, bool]:
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return size, digest.hexdigest(), True
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body", False):
            return size, digest.hexdigest(), False


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [(b"content-length", str(len(body)).encode())] + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, data: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(data).encode()
    await _respond(send, 200, body, [(b"content-type", b"application/json"), *(headers or [])])


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}

    if path != "/stats":
        raw_query = scope["query_string"].decode("latin-1")
        RECENT.append(scope["raw_path"].decode("latin-1") + ("?" + raw_query if raw_query else ""))
    if path == "/stats":
        await _json(send, {**STATS, "recent": list(RECENT)})
    elif path == "/cookies":
        await _read_body(receive)
        await _respond(
            send,
            200,
            b"cookies",
            [
                (b"set-cookie", b"a=1; Path=/"),
                (b"set-cookie", b"b=2; Path=/"),
                (b"x-multi", b"one"),
                (b"x-multi", b"two"),
            ],
        )
    elif path == "/set-cookie-once":
        await _read_body(receive)
        await _respond(send, 200, b"ok", [(b"set-cookie", b"session=secret-of-client-1; Path=/")])
    elif path == "/hop":
        await _read_body(receive)
        await _respond(
            send,
            200,
            b"hop",
            [
                (b"connection", b"x-hop-one"),
                (b"x-hop-one", b"must-go"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-authenticate", b"Basic"),
                (b"trailer", b"x-t"),
                (b"x-end-to-end", b"stays"),
            ],
        )
    elif path == "/gzip":
        await _read_body(receive)
        body = gzip.compress(b"hello compressed world" * 100)
        await _respond(send, 200, body, [(b"content-encoding", b"gzip")])
    elif path.startswith("/status/"):
        await _read_body(receive)
        status = int(path.rsplit("/", 1)[1])
        body = b"" if status in (204, 304) or status < 200 else b"status"
        if status in (204, 304):
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _respond(send, status, body)
    elif path == "/stream":
        await _read_body(receive)
        await stream(send, int(query.get("bytes", "1048576")), query.get("chunked") == "1")
    elif path == "/abort":
        await _read_body(receive)
        sent = int(query.get("bytes", str(CHUNK)))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(sent * 10).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"a" * sent, "more_body": True})
        raise RuntimeError("upstream aborts mid-body on purpose")
    elif path == "/record":
        # Remembers how the body ended, under ?id=: complete, or cut off by a disconnect.
        size, _, disconnected = await _read_body(receive)
        STATS.setdefault("recorded", {})[query.get("id", "")] = {
            "bytes": size,
            "complete": not disconnected,
        }
        if not disconnected:
            await _respond(send, 200, b"recorded")
    elif path == "/late-body":
        # Headers now, the body after a delay: like SSE or a long poll.
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(float(query.get("delay", "2")))
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/silent":
        await _read_body(receive)
        await _wait_disconnect(receive)
    elif path == "/silent-mid":
        await _read_body(receive)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
        )
        await send({"type": "http.response.body", "body": b"m" * 10, "more_body": True})
        await _wait_disconnect(receive)
    elif path == "/hang":
        await _read_body(receive)
        STATS["hanging"] += 1
        try:
            await _wait_disconnect(receive)
        finally:
            STATS["hanging"] -= 1
            STATS["disconnects"] += 1
    else:
        size, sha, _ = await _read_body(receive)
        await _json(
            send,
            {
                "method": scope["method"],
                "path": path,
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode("latin-1"),
                "headers": [
                    [n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]
                ],
                "body_bytes": size,
                "body_sha256": sha,
                "client": list(scope["client"] or ()),
            },
        )


async def stream(send: Send, total: int, chunked: bool) -> None:
    STATS["stream_sent"] = 0
    STATS["stream_done"] = False
    headers = [] if chunked else [(b"content-length", str(total).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    remaining = total
    while remaining > 0:
        chunk = _BLOCK if remaining >= CHUNK else _BLOCK[:remaining]
        remaining -= len(chunk)
        # uvicorn's send waits while the socket is paused: this is where backpressure shows.
        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        STATS["stream_sent"] += len(chunk)
    if total == 0:
        await send({"type": "http.response.body", "body": b""})
    STATS["stream_done"] = True


async def websocket_echo(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] == "/ws-refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    offered = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            STATS["ws_client_close_code"] = message.get("code")
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            await send({"type": "websocket.close", "code": int(text.split(":", 1)[1])})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keep-alive", type=float, default=5.0)
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="critical",
        timeout_keep_alive=int(args.keep_alive),
        ws="websockets-sansio",
        server_header=False,
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
