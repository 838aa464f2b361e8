"""Where one request's latency goes inside streamproxy, at one connection (benchmark only).

    .venv/bin/python -m bench.critical_path [--seconds 5]

Same layout as the benchmark (proxy on core 0; nginx upstream, Redis and `wrk -c1` on core 1).
The proxy starts through this module (`--launch`), which wraps four hot-path methods to take a
`perf_counter_ns()` timestamp on entry and exit; with one connection there is one request in
flight, so consecutive timestamps belong to the same request. Printed: the median of each
segment over the run (the first 10 % dropped as warm-up), in µs:

    client bytes in  -> request written to the app      (parse, ASGI task, forwarder, h1 head)
    write() to the app                                   (the syscall, waking the app's core)
    write done       -> app's bytes in                   (the app's turn, two wake-ups)
    app's bytes in   -> response written to the client   (parse, task wake-up, head encoding)
    write() to the client                                (the syscall, waking wrk's core)

The wrappers cost ~1 µs per segment; the figures are for comparing segments, not for the table
of `make bench`.
"""

from __future__ import annotations

import argparse
import atexit
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEGMENTS = (
    ("client_in", "app_write", "client bytes in -> request written to the app"),
    ("app_write", "app_write_done", "write() to the app"),
    ("app_write_done", "app_in", "write done -> app's bytes in (the app's turn)"),
    ("app_in", "client_write", "app's bytes in -> response written to the client"),
    ("client_write", "client_write_done", "write() to the client"),
)


def _instrument() -> None:
    from sidecar.proxy.protocol import ClientProtocol
    from sidecar.upstream.connection import UpstreamConnection

    now = time.perf_counter_ns
    stamps: dict[str, int] = {}
    rows: list[dict[str, int]] = []
    client_in: Any = ClientProtocol.data_received
    app_write: Any = UpstreamConnection.write
    app_in: Any = UpstreamConnection.data_received
    client_write: Any = ClientProtocol.write

    def timed_client_in(self: Any, data: bytes) -> None:
        stamps["client_in"] = now()
        client_in(self, data)

    def timed_app_write(self: Any, data: bytes) -> bool:
        stamps["app_write"] = now()
        ok: bool = app_write(self, data)
        stamps["app_write_done"] = now()
        return ok

    def timed_app_in(self: Any, data: bytes) -> None:
        stamps["app_in"] = now()
        app_in(self, data)

    def timed_client_write(self: Any, data: bytes) -> None:
        stamps["client_write"] = now()
        client_write(self, data)
        stamps["client_write_done"] = now()
        rows.append(dict(stamps))

    ClientProtocol.data_received = timed_client_in  # type: ignore[method-assign]
    UpstreamConnection.write = timed_app_write  # type: ignore[method-assign]
    UpstreamConnection.data_received = timed_app_in  # type: ignore[method-assign]
    ClientProtocol.write = timed_client_write  # type: ignore[method-assign]

    def report() -> None:
        kept = rows[len(rows) // 10 :]
        if not kept:
            print("critical_path: no requests recorded", file=sys.stderr)
            return
        print(f"critical_path: {len(kept)} requests, median µs per segment:", file=sys.stderr)
        for start, end, label in SEGMENTS:
            median = statistics.median((row[end] - row[start]) / 1000 for row in kept)
            print(f"critical_path: {median:8.1f}  {label}", file=sys.stderr)

    atexit.register(report)


def _launch(argv: list[str]) -> int:
    _instrument()
    from sidecar.cli import main

    return main(argv)


def main() -> int:
    if sys.argv[1:2] == ["--launch"]:
        return _launch(sys.argv[2:])
    parser = argparse.ArgumentParser(description="latency segments of one request, 1 connection")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    from bench.run import (
        PROXY_CORE,
        PYTHON,
        Processes,
        Redis,
        free_port,
        http_get,
        pinned,
        start_upstream,
        wait_for,
        wrk,
    )

    workdir = Path(tempfile.mkdtemp(prefix="streamproxy-critical-path-"))
    workdir.chmod(0o755)  # nginx workers may run as nobody
    procs = Processes(workdir)
    try:
        upstream = start_upstream(procs, 1 << 20, use_nginx=True)
        redis = Redis(procs)
        port, admin = free_port(), free_port()
        argv = [PYTHON, "-m", "bench.critical_path", "--launch", "run", "--host", "127.0.0.1",
                "--port", str(port), "--admin-port", str(admin),
                "--upstream", f"http://127.0.0.1:{upstream.port}", "--redis-url", redis.url,
                "--log-level", "warning"]  # fmt: skip
        proxy = procs.start("streamproxy", pinned(PROXY_CORE, argv))
        ready = f"http://127.0.0.1:{admin}/readyz"
        wait_for(lambda: http_get(ready, timeout=0.5)[0] == 200, 30, "streamproxy ready")
        direct = wrk(f"http://127.0.0.1:{upstream.port}/small", 1, args.seconds)
        result = wrk(f"http://127.0.0.1:{port}/small", 1, args.seconds)
        procs.stop(proxy)
        print(f"wrk -c1: direct p50 {direct.get('p50_ms')} ms, through streamproxy p50 "
              f"{result.get('p50_ms')} ms ({result.get('requests', 0):.0f} requests)")  # fmt: skip
        log = (workdir / "streamproxy.log").read_text(errors="replace")
        print("\n".join(line for line in log.splitlines() if line.startswith("critical_path")))
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
