"""Run `streamproxy` with experimental hot-path patches applied at startup (benchmark only).

    python -m bench.experiments --patches gc,wbuf run --upstream ... (streamproxy's own flags)

Bench targets named `streamproxy+<patch>[+<patch>]` start through here, so a proposed change
can be measured side by side with the code as it is before anyone edits that code:

- `gc`: `gc.freeze()` after imports (startup objects leave the young generations) and a larger
  young-generation threshold, so the collector runs less often on the request path.
- `wbuf`: a 1 MiB write-buffer high-water mark on client connections instead of the event
  loop's 64 KiB, so a 256 KiB read from the app does not pause the app's connection at every
  write of a download (fewer pause/resume round trips, more memory per slow client).

(`cork`, the patch of uvicorn's response cycle that wrote a small response's head and body in
one write, retired with uvicorn on the proxy port: `Exchange.response_body` does that now.)
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

WBUF_HIGH = 1024 * 1024


def _gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _wbuf() -> None:
    from sidecar.proxy.protocol import ClientProtocol

    protocol_class: Any = ClientProtocol
    original = protocol_class.connection_made

    def connection_made(self: Any, transport: Any) -> None:
        original(self, transport)
        transport.set_write_buffer_limits(high=WBUF_HIGH)

    protocol_class.connection_made = connection_made


def _memtop() -> None:
    import atexit
    import tempfile
    import threading
    import time
    import tracemalloc

    tracemalloc.start(1)
    best: list[Any] = [0, None]

    def sample() -> None:
        while True:
            time.sleep(0.5)
            current, _peak = tracemalloc.get_traced_memory()
            if current > best[0]:
                best[:] = [current, tracemalloc.take_snapshot()]

    def report() -> None:
        if best[1] is None:
            return
        stats = best[1].statistics("lineno")
        lines = [f"{best[0] / 2**20:.1f} MiB traced at the sampled peak"]
        lines += [str(stat) for stat in stats[:25]]
        out = Path(tempfile.gettempdir()) / "streamproxy-memtop.txt"
        out.write_text("\n".join(lines) + "\n")

    threading.Thread(target=sample, daemon=True).start()
    atexit.register(report)


PATCHES = {"gc": _gc, "wbuf": _wbuf, "memtop": _memtop}


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
