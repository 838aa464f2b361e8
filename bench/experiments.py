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


PATCHES = {"gc": _gc, "wbuf": _wbuf}


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
