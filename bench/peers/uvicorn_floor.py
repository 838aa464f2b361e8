"""The floor under any proxy built on uvicorn: uvicorn's httptools protocol with no upstream.

uvicorn (its httptools protocol, uvloop, no access log, no server/date headers) in front of an
ASGI app that answers `/small` from memory with the 1 KiB body and the headers the bench's nginx
upstream sends. What this costs per request (CPU, latency at one connection) is what uvicorn and
the event loop take before a proxy has done any proxying. (streamproxy's proxy port no longer
runs on uvicorn: this is now a peer, not streamproxy's own floor.) Small-GET scenarios only.
"""

from __future__ import annotations

import argparse

import uvicorn

from sidecar.types import Receive, Scope, Send

BODY = b"x" * 1024
# What nginx 1.22 sends for the bench's /small file (values of the same lengths).
HEADERS = [
    (b"server", b"nginx/1.22.1"),
    (b"date", b"Tue, 01 Dec 2026 18:00:00 GMT"),
    (b"content-type", b"application/octet-stream"),
    (b"content-length", b"1024"),
    (b"last-modified", b"Tue, 01 Dec 2026 18:00:00 GMT"),
    (b"etag", b'"6929a3c0-400"'),
    (b"accept-ranges", b"bytes"),
]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
END = {"type": "http.response.body", "body": BODY, "more_body": False}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(START)
    await send(END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        http="httptools",
        ws="none",
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        backlog=4096,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
