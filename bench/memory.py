"""Where streamproxy's idle RSS goes: what each library costs once imported.

    .venv/bin/python -m bench.memory

Each row is a fresh interpreter that imports the row's modules and every row's before it (in
the order `streamproxy run` imports them), runs an asyncio loop and reads its own
/proc/self/status. The last row is a real `streamproxy run` with Redis counting on, idle, for
comparison. RSS = anonymous memory (Python objects, mostly code objects of imported modules) +
file-backed pages of the shared libraries touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Processes, Redis, free_port, http_get, rss_mib, wait_for

# Cumulative steps, in the order the runtime imports them.
STEPS: list[tuple[str, str]] = [
    ("python + asyncio (+ ssl)", "import asyncio"),
    ("+ uvloop", "import uvloop"),
    ("+ pydantic", "import pydantic"),
    # pydantic builds its model machinery on the first model class: any settings class pays it.
    (
        "+ a pydantic model defined",
        "from pydantic import BaseModel\nclass _Model(BaseModel):\n    x: int = 0",
    ),
    ("+ pydantic-settings", "import pydantic_settings"),
    ("+ uvicorn (+ click) + httptools", "import uvicorn, httptools"),
    ("+ starlette", "import starlette.applications"),
    ("+ prometheus_client", "import prometheus_client"),
    ("+ redis.asyncio", "import redis.asyncio"),
    (
        "+ streamproxy's own modules",
        "import sidecar.cli, sidecar.server, sidecar.upstream.pool, sidecar.counter.redis_store",
    ),
]

# A plain asyncio loop, so that uvloop's cost shows in its own row.
_PROBE = """
import asyncio, json
async def probe():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    keys = ("VmRSS", "RssAnon", "RssFile")
    print(json.dumps({key: int(status[key].split()[0]) / 1024 for key in keys}))
asyncio.run(probe())
"""


def measure(imports: list[str]) -> dict[str, float]:
    code = "\n".join(imports) + _PROBE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def running_proxy_mib() -> float:
    workdir = Path(tempfile.mkdtemp(prefix="streamproxy-memory-"))
    procs = Processes(workdir)
    try:
        redis = Redis(procs)
        port, admin = free_port(), free_port()
        proxy = procs.start(
            "streamproxy",
            [sys.executable, "-m", "sidecar", "run", "--host", "127.0.0.1", "--port", str(port),
             "--admin-port", str(admin), "--redis-url", redis.url, "--log-level", "warning"],
        )  # fmt: skip
        ready = f"http://127.0.0.1:{admin}/livez"
        wait_for(lambda: http_get(ready, timeout=0.5)[0] == 200, 30, "streamproxy live")
        time.sleep(0.5)  # the moment the bench's "idle RSS" is read
        return rss_mib(proxy.pid)
    finally:
        procs.stop_all()


def main() -> int:
    imports: list[str] = []
    previous = 0.0
    print("| step (cumulative) | RSS MiB | + MiB | anon MiB | file MiB |")
    print("|---|---|---|---|---|")
    for label, statement in STEPS:
        imports.append(statement)
        m = measure(imports)
        print(
            f"| {label} | {m['VmRSS']:.1f} | {m['VmRSS'] - previous:+.1f} | "
            f"{m['RssAnon']:.1f} | {m['RssFile']:.1f} |"
        )
        previous = m["VmRSS"]
    print(f"| `streamproxy run`, Redis counting on, idle | {running_proxy_mib():.1f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
