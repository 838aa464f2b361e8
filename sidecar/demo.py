"""The built-in echo app (`streamproxy echo-app`) and the one-command demo (`streamproxy demo`).

The echo app is what the Helm chart runs when no app image is given, so a fresh `helm install`
shows a working pod. It answers every request with JSON describing what it received, and
`/stream?bytes=N` streams N bytes (to see streaming through the proxy).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs

import uvicorn

from sidecar.settings import Settings
from sidecar.types import Receive, Scope, Send

_MAX_STREAM = 1 << 40
_CHUNK = 64 * 1024


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _echo_websocket(receive, send)
        return
    if scope["type"] != "http":
        return
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body", False):
            break
    query = parse_qs(scope["query_string"].decode("latin-1"))
    if scope["path"] == "/stream":
        await _stream(send, min(int(query.get("bytes", ["1048576"])[0]), _MAX_STREAM))
        return
    body = (
        json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode("latin-1"),
                "headers": [
                    [n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]
                ],
                "body_bytes": size,
                "body_sha256": digest.hexdigest(),
                "hostname": os.uname().nodename,
            },
            indent=1,
        ).encode()
        + b"\n"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, total: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(total).encode()),
            ],
        }
    )
    block = b"x" * _CHUNK
    remaining = total
    while remaining > 0:
        chunk = block if remaining >= _CHUNK else block[:remaining]
        remaining -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    if total == 0:
        await send({"type": "http.response.body", "body": b""})


async def _echo_websocket(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def run_echo_app(host: str, port: int) -> int:
    uvicorn.run(
        echo_app,
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        server_header=False,
        timeout_keep_alive=75,
    )
    return 0


_APP_START_TIMEOUT = 30.0


def _wait_until_listening(app: subprocess.Popen[bytes], port: int) -> bool:
    """Poll the echo app's port until it accepts (False if it exits or never does): the proxy
    starts after it, so a newcomer's first curl is answered by the app, not a 502."""
    deadline = time.monotonic() + _APP_START_TIMEOUT
    while time.monotonic() < deadline and app.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def run_demo(settings: Settings, app_port: int) -> int:
    """The echo app in a child process, the proxy in front of it, until Ctrl-C."""
    from sidecar.server import run

    if "upstream" not in settings.model_fields_set:
        settings = settings.model_copy(update={"upstream": f"http://127.0.0.1:{app_port}"})
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar",
            "echo-app",
            "--host",
            "127.0.0.1",
            "--port",
            str(app_port),
        ]
    )
    if not _wait_until_listening(app, app_port):
        print(f"streamproxy demo: the echo app did not start on :{app_port}", file=sys.stderr)
        app.kill()
        app.wait(timeout=10)
        return 1
    shown_host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    print(
        f"streamproxy demo: echo app on :{app_port}, proxy on :{settings.port}, "
        f"admin on :{settings.admin_port}. Try:\n"
        f"  curl -s http://{shown_host}:{settings.port}/hello?name=world\n"
        f"  curl -s http://{shown_host}:{settings.admin_port}/status\n"
        "Ctrl-C stops both.",
        file=sys.stderr,
        flush=True,
    )
    try:
        return run(settings)
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.kill()
