"""Where a proxied request's time goes: py-spy on a streamproxy under wrk load.

    .venv/bin/python -m bench.profile --seconds 10
    .venv/bin/python -m bench.profile --tool pyinstrument   # call tree, in-process

Same layout as the benchmark (proxy on core 0; nginx or the Python upstream, Redis and wrk on
core 1). Writes the collapsed stacks to bench/results/profile-<target>-<scenario>.txt and prints the
functions with the most samples, self and inclusive. Needs `py-spy` (`.venv/bin/pip install
py-spy`); it samples from outside the process (`--nonblocking`), so the proxy runs unmodified.
pyinstrument runs inside the proxy (slower) and prints its call tree when the proxy exits.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.run import (
    LOAD_CORE,
    RESULTS,
    Processes,
    Redis,
    curl,
    pinned,
    start_target,
    start_upstream,
    wrk,
)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    for marker in ("site-packages/", "lib/python3.11/", "/main/"):
        if marker in path:
            path = path.rpartition(marker)[2]
            break
    return f"{name} ({path})"


def summarize(collapsed: Path, top: int) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in self_time.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="py-spy profile of streamproxy under load")
    parser.add_argument(
        "--target", default="streamproxy", help="streamproxy, or with patches: streamproxy+gc+wbuf"
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--tool",
        default="py-spy",
        choices=["py-spy", "pyinstrument"],
        help="py-spy samples from outside; pyinstrument runs inside (slower, call tree)",
    )
    parser.add_argument(
        "--scenario", default="small", choices=["small", "download"], help="wrk GETs or 1 GiB curls"
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="streamproxy-profile-"))
    workdir.chmod(0o755)
    procs = Processes(workdir)
    out = RESULTS / f"profile-{args.target}-{args.scenario}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        upstream = start_upstream(procs, 1 << 30, bool(shutil.which("nginx")))
        redis = Redis(procs)
        wrap = None
        if args.tool == "pyinstrument":
            out = out.with_suffix(".pyinstrument.txt")
            wrap = ["-m", "pyinstrument", "--renderer", "text", "--outfile", str(out)]
        target, _ = start_target(args.target, procs, upstream, redis, wrap)
        assert target.proc is not None
        url = f"http://127.0.0.1:{target.port}/small"
        wrk(url, args.connections, 1)  # warm-up
        if args.scenario == "download":
            big = f"http://127.0.0.1:{target.port}/big?bytes={1 << 30}"

            def downloads() -> None:
                deadline = time.monotonic() + args.seconds + 2
                while time.monotonic() < deadline:
                    curl(["--max-time", "20", big], 20)

            load = threading.Thread(target=downloads, daemon=True)
        else:
            load = threading.Thread(
                target=wrk, args=(url, args.connections, args.seconds + 2), daemon=True
            )
        load.start()
        time.sleep(1)
        if args.tool == "pyinstrument":
            load.join(args.seconds + 40)
            procs.stop(target.proc, timeout=60)  # pyinstrument writes its report on exit
            print(out.read_text() if out.exists() else "pyinstrument wrote nothing")
            return 0
        subprocess.run(
            pinned(
                LOAD_CORE,
                [
                    spy,
                    "record",
                    "--pid",
                    str(target.proc.pid),
                    "--rate",
                    "250",
                    "--duration",
                    str(args.seconds),
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
            ),
            capture_output=True,
            timeout=args.seconds + 60,
            check=False,
        )
        load.join(args.seconds + 40)
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    if not out.exists():
        print("py-spy wrote nothing (is it installed? ptrace allowed?)", file=sys.stderr)
        return 1
    print(summarize(out, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
