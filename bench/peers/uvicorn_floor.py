"""The floor under any proxy built on uvicorn: streamproxy's server side with no upstream.

The proxy port's own protocol (`ProxyHttpProtocol`, the same uvicorn options, uvloop) in front
of an ASGI app that answers `/small` from memory with the 1 KiB body and the headers the bench's
nginx upstream sends. What this costs per request (CPU, latency at one connection) is what
uvicorn and the event loop take before a proxy has done any proxying; streamproxy minus this is
what the forwarding itself costs. A reference point for the small-GET scenarios only.
"""

from __future__ import annotations

import argparse

import uvicorn

from sidecar.http_protocol import ProxyHttpProtocol
from sidecar.response_cycle import CORK_KEY
from sidecar.server import _uvicorn_config  # the proxy port's options, kept in step
from sidecar.settings import Settings
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
    scope[CORK_KEY] = True  # as the forwarder does for a body that is already in
    await send(START)
    await send(END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = _uvicorn_config(
        app,
        Settings(),
        http=ProxyHttpProtocol,
        ws="none",
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
