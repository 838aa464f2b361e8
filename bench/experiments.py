"""Run `streamproxy` with experimental hot-path patches applied at startup (benchmark only).

    python -m bench.experiments --patches cork,gc run --upstream ... (streamproxy's own flags)

Bench targets named `streamproxy+<patch>[+<patch>]` start through here, so a proposed
change to code this bench does not own can be measured before anyone edits that code:

- `cork`: uvicorn writes a response head as soon as `http.response.start` is sent, and the body
  in a second `write()` — two send() syscalls for a small response. Hold the head back and
  write it together with the first body chunk (or alone, when no body write follows).
- `gc`: `gc.freeze()` after imports (startup objects leave the young generations) and a larger
  young-generation threshold, so the collector runs less often on the request path.
- `wbuf`: a 512 KiB write-buffer high-water mark on client connections instead of asyncio's
  64 KiB, so a 256 KiB chunk does not pause the response at every write.
"""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any


def _cork() -> None:
    from uvicorn.protocols.http import httptools_impl

    cycle_class: Any = httptools_impl.RequestResponseCycle
    original = cycle_class.send

    class _Capture:
        def __init__(self, real: Any) -> None:
            self.real = real
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    class _Prepend:
        def __init__(self, real: Any, head: bytes) -> None:
            self.real = real
            self.head = head
            self.written = False

        def write(self, data: bytes) -> None:
            if not self.written:
                self.written = True
                data = self.head + data
            self.real.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    async def send(self: Any, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            real = self.transport
            capture = _Capture(real)
            self.transport = capture
            try:
                await original(self, message)
            finally:
                self.transport = real
            self._bench_head = capture.data
            return
        head = self.__dict__.pop("_bench_head", None)
        if head is None:
            await original(self, message)
            return
        real = self.transport
        prepend = _Prepend(real, head)
        self.transport = prepend
        try:
            await original(self, message)
        finally:
            self.transport = real
            if not prepend.written:
                real.write(head)

    cycle_class.send = send


def _gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _wbuf() -> None:
    from uvicorn.protocols.http import httptools_impl

    protocol_class: Any = httptools_impl.HttpToolsProtocol
    original = protocol_class.connection_made

    def connection_made(self: Any, transport: Any) -> None:
        original(self, transport)
        transport.set_write_buffer_limits(high=512 * 1024)

    protocol_class.connection_made = connection_made


PATCHES = {"cork": _cork, "gc": _gc, "wbuf": _wbuf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", default="", help=f"comma-separated: {', '.join(PATCHES)}")
    args, rest = parser.parse_known_args()
    import sidecar.cli
    import sidecar.server

    for name in filter(None, args.patches.split(",")):
        PATCHES[name]()
    sys.argv = ["streamproxy", *rest]
    raise SystemExit(sidecar.cli.main())


if __name__ == "__main__":
    main()
