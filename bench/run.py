"""streamproxy benchmark: `make bench`, `.venv/bin/python -m bench` or `python bench/run.py`.

Layout (docs/performance.md): the proxy under test is pinned to core 0 (`taskset -c 0`); the
load generator (wrk, curl), the upstream (nginx, else bench/upstream_py.py), the upload sink
and Redis share core 1. Everything listens on 127.0.0.1; every process started here is stopped
here, by PID. Every run is bounded in time. Results: bench/results/<stamp>.{json,md} and
bench/results/latest.{json,md}.

This is a benchmark, not a test: nothing asserts timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
PROXY_CORE = "0"
LOAD_CORE = "1"
SMALL_BYTES = 1024
POST_BYTES = 64 * 1024
SCENARIOS = ("small64", "small1", "headers64", "post64k", "download", "upload", "slow", "c2000",
             "idle10k", "ws1000")  # fmt: skip
TARGETS = ("direct", "python-floor", "streamproxy", "aiohttp-peer", "nginx")
# What a target can be asked: the aiohttp peer relays no upgrade; `direct` has no proxy process
# whose memory idle connections would show in.
SKIP = {"aiohttp-peer": {"ws1000"}, "direct": {"idle10k"}}
# wrk sends one request header (Host); a browser or a service mesh sends a dozen. The headers64
# scenario adds these, so what each header costs the proxy shows.
REQUEST_HEADERS = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/120.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Cookie", "session=0123456789abcdef0123456789abcdef; theme=dark"),
    ("Referer", "https://example.com/some/page"),
    ("X-Request-Id", "7f3c2a9e-5b1d-4c8e-9a2f-1e6d3b7c9a0f"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("Cache-Control", "no-cache"),
)  # fmt: skip


@dataclass
class Plan:
    duration: float  # seconds per wrk run
    latency_duration: float
    repeats: int
    big_bytes: int
    slow_seconds: float
    targets: list[str]
    ready_tries: int
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    many_conns: int = 2000  # c2000: concurrent keep-alive clients (wrk), one run of many_duration
    # long enough for the tail: wrk records only requests that finish within its run
    many_duration: float = 15.0
    idle_conns: int = 10000  # idle10k: idle keep-alive client connections held at once
    ws_clients: int = 1000  # ws1000: concurrent WebSocket tunnels, each echoing ws_messages
    ws_messages: int = 5
    load_timeout: float = 30.0  # bound of each phase of idle10k and ws1000


FULL = Plan(8, 5, 2, 1 << 30, 6, [], 3)
QUICK = Plan(2, 2, 1, 256 << 20, 3, [], 1, many_duration=10.0, load_timeout=20.0)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


# Processes we own


class Processes:
    """Every process the bench starts; stopped by PID (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        logfile = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=logfile, stderr=subprocess.STDOUT, env=env or _env()
        )
        logfile.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROXY_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def wait_for(check: Callable[[], bool], within: float, what: str) -> float:
    started = time.perf_counter()
    deadline = started + within
    while not check():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what} not ready within {within}s")
        time.sleep(0.005)
    return time.perf_counter() - started


# Memory


def tree_pids(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += tree_pids(int(child))
    return pids


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    return sum(_status_kib(p, "VmRSS") for p in tree_pids(pid)) / 1024


def reset_peak(pid: int) -> None:
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree (robust to a noisy, shared machine)."""
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def peak_mib(pid: int) -> float:
    return sum(_status_kib(p, "VmHWM") for p in tree_pids(pid)) / 1024


# Load generators


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    connections: int,
    duration: float,
    script: Path | None = None,
    threads: int = 1,
    timeout_s: int = 2,
) -> dict[str, float]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    argv += ["--latency", f"--timeout={timeout_s}s"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(
        pinned(LOAD_CORE, [*argv, url]),
        capture_output=True,
        text=True,
        timeout=duration + timeout_s + 30,
    ).stdout
    result: dict[str, float] = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        result["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", out):
        result["requests"] = float(m.group(1))
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M):
            result[f"p{pct}_ms"] = _ms(m.group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
        result["timeouts"] = int(m.group(4))
    result["errors"] = errors
    if "rps" not in result:
        log(f"wrk gave no result for {url}: {out[-400:]!r}")
    return result


def curl(argv: list[str], timeout: float) -> dict[str, float]:
    fmt = "%{http_code} %{size_download} %{size_upload} %{time_total}"
    try:
        proc = subprocess.run(
            pinned(LOAD_CORE, ["curl", "-s", "-o", "/dev/null", "-w", fmt, *argv]),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
    except subprocess.TimeoutExpired:
        return {"status": 0}
    parts = proc.stdout.split()
    if len(parts) != 4:
        return {"status": 0}
    return {
        "status": float(parts[0]),
        "down": float(parts[1]),
        "up": float(parts[2]),
        "seconds": float(parts[3]),
        "exit": float(proc.returncode),
    }


# Redis


class Redis:
    def __init__(self, procs: Processes) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server") or str(ROOT / ".venv/bin/redis-server")
        self.proc = procs.start(
            "redis",
            pinned(
                LOAD_CORE,
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(procs.workdir),
                ],
            ),
        )
        import redis  # a dependency of streamproxy

        self.client = redis.Redis(port=self.port, socket_timeout=2)
        wait_for(self._ping, 10, "redis")

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def reset_stats(self) -> None:
        self.client.config_resetstat()

    def commands(self) -> int:
        stats: dict[str, Any] = self.client.info("commandstats")
        ours = ("cmdstat_info", "cmdstat_config", "cmdstat_ping")
        return sum(int(v["calls"]) for k, v in stats.items() if k not in ours)


# Upstream: nginx (static files) or the Python upstream; the Python sink always


NGINX_COMMON = """
worker_processes 1;
worker_rlimit_nofile 32768;
daemon off;
master_process on;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log warn;
events {{ worker_connections 24576; }}
http {{
    access_log off;
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
    fastcgi_temp_path {work}/{name}-fastcgi;
    uwsgi_temp_path {work}/{name}-uwsgi;
    scgi_temp_path {work}/{name}-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_max_body_size 0;
    {body}
}}
"""

NGINX_UPSTREAM = """
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    upstream sink {{ server 127.0.0.1:{sink}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {work}/www;
        location = /sink {{
            proxy_pass http://sink; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_request_buffering off; proxy_buffering off;
        }}
        location = /stats {{
            proxy_pass http://sink; proxy_http_version 1.1; proxy_set_header Connection "";
        }}
        location = /ws {{
            proxy_pass http://sink; proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
            proxy_read_timeout 300s;
        }}
    }}
"""

NGINX_PROXY = """
    map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 1024; }}  # as streamproxy's pool
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app; proxy_http_version 1.1;
            # Stream both ways like the Python proxies; reads of up to 256 KiB, as uvloop's.
            proxy_buffering off; proxy_request_buffering off; proxy_buffer_size 256k;
            proxy_buffers 4 256k; proxy_busy_buffers_size 512k;
            # Upgrades (WebSocket) relayed; other requests keep the upstream connection alive.
            proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 300s;
        }}
    }}
"""


def nginx_argv(workdir: Path, name: str, body: str) -> list[str]:
    conf = workdir / f"{name}.conf"
    conf.write_text(NGINX_COMMON.format(work=workdir, name=name, body=body))
    return ["nginx", "-p", str(workdir), "-e", str(workdir / f"{name}-error.log"), "-c", str(conf)]


@dataclass
class Upstream:
    port: int
    sink_port: int
    kind: str

    def sunk(self) -> int:
        status, body = http_get(f"http://127.0.0.1:{self.sink_port}/stats")
        return int(json.loads(body)["sunk"]) if status == 200 else -1


def start_upstream(procs: Processes, big_bytes: int, use_nginx: bool) -> Upstream:
    sink_port = free_port()
    procs.start(
        "sink", pinned(LOAD_CORE, [PYTHON, "-m", "bench.upstream_py", "--port", str(sink_port)])
    )
    wait_for(lambda: http_get(f"http://127.0.0.1:{sink_port}/stats")[0] == 200, 10, "sink")
    if not use_nginx:
        return Upstream(sink_port, sink_port, "python (bench/upstream_py.py)")
    www = procs.workdir / "www"
    www.mkdir(exist_ok=True)
    (www / "small").write_bytes(b"x" * SMALL_BYTES)
    with open(www / "big", "wb") as big:
        big.truncate(big_bytes)  # sparse: no disk space, served from the page cache
    port = free_port()
    argv = nginx_argv(
        procs.workdir,
        "nginx-upstream",
        NGINX_UPSTREAM.format(port=port, sink=sink_port, work=procs.workdir),
    )
    procs.start("nginx-upstream", pinned(LOAD_CORE, argv))
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/small")[0] == 200, 10, "nginx upstream")
    return Upstream(port, sink_port, "nginx " + _nginx_version())


def _nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return out.strip().rpartition("/")[2]


# Targets


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None
    ready_url: str
    counts_in_redis: bool = False
    results: dict[str, Any] = field(default_factory=dict)


# `--extra-args`: streamproxy flags added to every streamproxy target (e.g. --access-log).
STREAMPROXY_EXTRA_ARGS: list[str] = []


def start_target(
    name: str, procs: Processes, upstream: Upstream, redis: Redis, wrap: list[str] | None = None
) -> tuple[Target, float]:
    """Start a target; return it and its start -> ready time in seconds.

    `wrap`: interpreter options before streamproxy's module (e.g. `-m pyinstrument ...`)."""
    if name == "direct":
        return Target(name, upstream.port, None, ""), float("nan")
    port = free_port()
    up = f"http://127.0.0.1:{upstream.port}"
    if name == "streamproxy" or name.startswith("streamproxy+"):
        # streamproxy[+<patch>...]: patches are bench/experiments.py's
        patches = name.split("+")[1:]
        admin = free_port()
        launcher = ["-m", "sidecar"]
        if patches:
            launcher = ["-m", "bench.experiments", "--patches", ",".join(patches)]
        argv = [PYTHON, *(wrap or []), *launcher, "run", "--host", "127.0.0.1", "--port", str(port),
                "--admin-port", str(admin), "--upstream", up, "--redis-url", redis.url,
                "--log-level", "warning", *STREAMPROXY_EXTRA_ARGS]  # fmt: skip
        ready = f"http://127.0.0.1:{admin}/readyz"
        counts = True
    elif name == "aiohttp-peer":
        argv = [PYTHON, "-m", "bench.peers.aiohttp_proxy", "--port", str(port), "--upstream", up]
        ready = f"http://127.0.0.1:{port}/small"
        counts = False
    elif name == "python-floor":
        argv = [PYTHON, "-m", "bench.peers.python_floor", "--port", str(port), "--upstream", up]
        ready = f"http://127.0.0.1:{port}/small"
        counts = False
    elif name == "nginx":
        argv = nginx_argv(
            procs.workdir, "nginx-proxy", NGINX_PROXY.format(port=port, upstream=upstream.port)
        )
        ready = f"http://127.0.0.1:{port}/small"
        counts = False
    else:
        raise SystemExit(f"unknown target {name!r}")
    started = time.perf_counter()
    proc = procs.start(name, pinned(PROXY_CORE, argv))
    deadline = started + 30

    def ready_now() -> bool:
        if proc.poll() is not None:
            log_text = (procs.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited early:\n{log_text}")
        return http_get(ready, timeout=0.5)[0] == 200

    while not ready_now():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name} not ready within 30 s")
        time.sleep(0.005)
    return Target(name, port, proc, ready, counts), time.perf_counter() - started


# Scenarios


def spread(values: list[float]) -> dict[str, float]:
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
    }


def run_target(
    name: str, plan: Plan, procs: Processes, upstream: Upstream, redis: Redis
) -> dict[str, Any]:
    out: dict[str, Any] = {"target": name}
    scenarios = [s for s in plan.scenarios if s not in SKIP.get(name, ())]
    ready_times = []
    target = None
    for attempt in range(plan.ready_tries if name != "direct" else 1):
        target, ready = start_target(name, procs, upstream, redis)
        ready_times.append(ready)
        if attempt < plan.ready_tries - 1 and target.proc is not None:
            procs.stop(target.proc)
    assert target is not None
    out["ready_s"] = spread(ready_times)
    pid = target.proc.pid if target.proc else None
    base = f"http://127.0.0.1:{target.port}"
    try:
        if pid:
            time.sleep(0.5)
            out["idle_rss_mib"] = rss_mib(pid)
        log(f"{name}: warm-up")
        wrk(base + "/small", 64, 1)

        def measured(run: Callable[[], dict[str, float]]) -> dict[str, float]:
            """One run, with the proxy's peak RSS and its CPU per request over it."""
            if pid:
                reset_peak(pid)
                cpu_before = cpu_seconds(pid)
            result = run()
            if pid:
                result["peak_rss_mib"] = peak_mib(pid)
                if result.get("requests"):
                    cpu = cpu_seconds(pid) - cpu_before
                    result["cpu_us_per_req"] = 1e6 * cpu / result["requests"]
            return result

        # Small GETs at 64 connections, with wrk's one request header and with 12, run in
        # alternation (small, headers, small, headers...) so that each pair sees the same load
        # on a shared machine: what one more header costs is the difference within a pair.
        script = procs.workdir / "headers.lua"
        script.write_text(
            "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in REQUEST_HEADERS)
        )
        small_runs: list[dict[str, float]] = []
        header_runs: list[dict[str, float]] = []
        for i in range(plan.repeats):
            if "small64" in scenarios:
                # + Redis commands per 1,000 requests on the first run
                if i == 0 and target.counts_in_redis:
                    redis.reset_stats()
                result = measured(lambda: wrk(base + "/small", 64, plan.duration))
                if i == 0 and target.counts_in_redis:
                    time.sleep(1.5)  # counts are flushed within about 1 s
                    result["redis_commands"] = redis.commands()
                    if result.get("requests"):
                        out["redis_per_1000"] = 1000 * result["redis_commands"] / result["requests"]
                small_runs.append(result)
                log(
                    f"{name}: small@64 {result.get('rps', 0):,.0f} req/s"
                    f" p50 {result.get('p50_ms')} ms p99 {result.get('p99_ms')} ms"
                    f" CPU/req {result.get('cpu_us_per_req', 0):.1f} us"
                )
            if "headers64" in scenarios:
                result = measured(lambda: wrk(base + "/small", 64, plan.duration, script))
                header_runs.append(result)
                log(
                    f"{name}: headers@64 {result.get('rps', 0):,.0f} req/s"
                    f" CPU/req {result.get('cpu_us_per_req', 0):.1f} us"
                )
        if small_runs:
            out["small64"] = _summary(small_runs)
        if header_runs:
            out["headers64"] = _summary(header_runs)
        pairs = [
            (h["cpu_us_per_req"] - s["cpu_us_per_req"]) / len(REQUEST_HEADERS)
            for s, h in zip(small_runs, header_runs, strict=False)
            if "cpu_us_per_req" in s and "cpu_us_per_req" in h
        ]
        if pairs:
            out["us_per_header"] = statistics.median(pairs)
            out["us_per_header_pairs"] = pairs

        if "small1" in scenarios:
            runs = []
            for _ in range(plan.repeats):
                result = measured(lambda: wrk(base + "/small", 1, plan.latency_duration))
                runs.append(result)
                log(f"{name}: small@1 p50 {result.get('p50_ms')} ms p99 {result.get('p99_ms')} ms")
            out["small1"] = _summary(runs)

        if "post64k" in scenarios:
            script = procs.workdir / "post64k.lua"
            script.write_text(
                f'wrk.method = "POST"\nwrk.body = string.rep("a", {POST_BYTES})\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n'
            )
            runs = []
            for _ in range(plan.repeats):
                if pid:
                    reset_peak(pid)
                result = wrk(base + "/sink", 64, plan.duration, script)
                if pid:
                    result["peak_rss_mib"] = peak_mib(pid)
                runs.append(result)
                log(f"{name}: post64k@64 {result.get('rps', 0):,.0f} req/s")
            out["post64k"] = _summary(runs)

        if "download" in scenarios:
            out["download"] = _transfers(
                name,
                plan,
                pid,
                lambda: curl(["--max-time", "60", f"{base}/big?bytes={plan.big_bytes}"], 60),
                "down",
                plan.big_bytes,
            )
        if "upload" in scenarios:
            upload_file = procs.workdir / "upload.bin"
            if not upload_file.exists():
                with open(upload_file, "wb") as f:
                    f.truncate(plan.big_bytes)

            def upload() -> dict[str, float]:
                before = upstream.sunk()
                result = curl(
                    [
                        "--max-time",
                        "60",
                        "-H",
                        "Expect:",
                        "-H",
                        "Content-Type: application/octet-stream",
                        "-X",
                        "POST",
                        "-T",
                        str(upload_file),
                        f"{base}/sink",
                    ],
                    60,
                )
                time.sleep(0.2)
                result["sink_bytes"] = upstream.sunk() - before
                return result

            out["upload"] = _transfers(name, plan, pid, upload, "up", plan.big_bytes)

        if "slow" in scenarios and pid:
            out["slow_client"] = _slow_client(base, plan, pid)
            out["after_rss_mib"] = rss_mib(pid)

        # Last: the many-connection scenarios leave the proxy with more memory than it had.
        if "c2000" in scenarios:
            # Many concurrent keep-alive clients: wrk's two threads on the load core; a request
            # slower than 10 s counts as a timeout (an error). One run: it is long.
            runs = []
            for _ in range(1):
                result = measured(
                    lambda: wrk(base + "/small", plan.many_conns, plan.many_duration, None, 2, 10)
                )
                runs.append(result)
                log(
                    f"{name}: small@{plan.many_conns} {result.get('rps', 0):,.0f} req/s"
                    f" p50 {result.get('p50_ms')} ms p99 {result.get('p99_ms')} ms"
                    f" errors {result.get('errors')}"
                    f" CPU/req {result.get('cpu_us_per_req', 0):.1f} us"
                    f" peak RSS {result.get('peak_rss_mib', 0):.1f} MiB"
                )
            out["c2000"] = _summary(runs)

        # Each of these on a fresh start (and the small-GET warm-up), so that neither finds the
        # memory another scenario left behind.
        if "idle10k" in scenarios and pid:
            target, pid = _restart(target, name, procs, upstream, redis)
            out["idle10k"] = _idle_conns(name, plan, pid, target.port)

        if "ws1000" in scenarios:
            if pid:
                target, pid = _restart(target, name, procs, upstream, redis)
            out["ws1000"] = _websockets(name, plan, pid, target.port)
    finally:
        if target.proc is not None:
            procs.stop(target.proc)
    return out


def _restart(
    target: Target, name: str, procs: Processes, upstream: Upstream, redis: Redis
) -> tuple[Target, int]:
    if target.proc is not None:
        procs.stop(target.proc)
    target, _ = start_target(name, procs, upstream, redis)
    assert target.proc is not None
    wrk(f"http://127.0.0.1:{target.port}/small", 64, 1)
    return target, target.proc.pid


def _idle_conns(name: str, plan: Plan, pid: int, port: int) -> dict[str, Any]:
    """Idle keep-alive client connections: the proxy's RSS before, and with all of them open."""
    time.sleep(0.5)
    before = rss_mib(pid)
    reset_peak(pid)
    argv = [PYTHON, "-m", "bench.load", "idle", "--port", str(port), "--conns",
            str(plan.idle_conns), "--timeout", str(plan.load_timeout)]  # fmt: skip
    proc = subprocess.Popen(
        pinned(LOAD_CORE, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=_env(),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    result: dict[str, Any] = {"conns": plan.idle_conns, "rss_before_mib": before}
    try:
        line = _readline(proc, plan.load_timeout + 30)
        result.update(json.loads(line) if line else {"opened": 0, "failed": plan.idle_conns})
        time.sleep(1.0)  # let the proxy settle (buffers freed after the responses)
        result["rss_with_mib"] = rss_mib(pid)
        result["peak_rss_mib"] = peak_mib(pid)
        proc.stdin.write("\n")
        proc.stdin.flush()
        line = _readline(proc, 30)
        result.update(json.loads(line) if line else {})
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    opened = result.get("opened") or 0
    if opened:
        result["kib_per_conn"] = (result["rss_with_mib"] - before) * 1024 / opened
    log(
        f"{name}: {opened:,} of {plan.idle_conns:,} idle connections open"
        f" ({result.get('still_open', '?')} still open at the end);"
        f" RSS {before:.1f} -> {result.get('rss_with_mib', 0):.1f} MiB"
        f" = {result.get('kib_per_conn', float('nan')):.2f} KiB each"
    )
    return result


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or "" if none comes within timeout (or it exits)."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


def _websockets(name: str, plan: Plan, pid: int | None, port: int) -> dict[str, Any]:
    """Concurrent WebSocket tunnels to the upstream's echo, all open at once, then echoing."""
    if pid:
        reset_peak(pid)
    argv = [PYTHON, "-m", "bench.load", "ws", "--port", str(port), "--clients",
            str(plan.ws_clients), "--messages", str(plan.ws_messages), "--timeout",
            str(plan.load_timeout)]  # fmt: skip
    try:
        run = subprocess.run(
            pinned(LOAD_CORE, argv), capture_output=True, text=True, env=_env(),
            timeout=2 * plan.load_timeout + 30,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as exc:
        result = {"clients": plan.ws_clients, "echoed": 0, "error": repr(exc)[:200]}
    if pid:
        result["peak_rss_mib"] = peak_mib(pid)
        time.sleep(0.5)
        result["rss_after_mib"] = rss_mib(pid)
    log(
        f"{name}: websockets {result.get('concurrent_open', 0)} of {plan.ws_clients} open at"
        f" once, {result.get('echoed', 0)} echoed {plan.ws_messages} messages"
        f" (p50 {result.get('rtt_p50_ms')} ms, p99 {result.get('rtt_p99_ms')} ms),"
        f" stages {result.get('stages')}, peak RSS {result.get('peak_rss_mib', 0):.1f} MiB"
    )
    return result


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    keys = sorted({k for run in runs for k in run})
    summary = {k: spread([run.get(k, float("nan")) for run in runs]) for k in keys}
    summary["runs"] = runs
    return summary


def _transfers(
    name: str,
    plan: Plan,
    pid: int | None,
    action: Callable[[], dict[str, float]],
    key: str,
    size: int,
) -> dict[str, Any]:
    runs = []
    for _ in range(plan.repeats):
        if pid:
            reset_peak(pid)
            cpu_before = cpu_seconds(pid)
        result = action()
        if pid:
            result["peak_rss_mib"] = peak_mib(pid)
            result["cpu_s_per_gib"] = (cpu_seconds(pid) - cpu_before) * (1 << 30) / size
        seconds = result.get("seconds") or float("nan")
        result["mb_s"] = (
            result.get(key, 0) / seconds / 1e6 if result.get(key) == size else float("nan")
        )
        runs.append(result)
        log(
            f"{name}: {key} {result.get(key, 0) / 2**20:.0f} MiB in {seconds:.2f}s"
            f" = {result['mb_s']:.0f} MB/s, peak RSS {result.get('peak_rss_mib', 0):.1f} MiB"
            f", proxy CPU {result.get('cpu_s_per_gib', 0):.2f} s/GiB"
            + (f", sink got {result['sink_bytes']}" if "sink_bytes" in result else "")
        )
    return _summary(runs)


def _slow_client(base: str, plan: Plan, pid: int) -> dict[str, Any]:
    """A client reading at 2 MB/s from a 1 GiB response: the proxy's RSS must stay flat."""
    argv = pinned(
        LOAD_CORE,
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--limit-rate",
            "2M",
            "--max-time",
            str(plan.slow_seconds),
            f"{base}/big?bytes={1 << 30}",
        ],
    )
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    try:
        deadline = time.monotonic() + plan.slow_seconds + 5
        time.sleep(0.5)
        while proc.poll() is None and time.monotonic() < deadline:
            samples.append(rss_mib(pid))
            time.sleep(0.25)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    if not samples:
        return {}
    return {
        "first_mib": samples[0],
        "max_mib": max(samples),
        "last_mib": samples[-1],
        "growth_mib": max(samples) - samples[0],
        "samples": len(samples),
    }


# Report


def _fmt(stat: dict[str, float] | None, digits: int = 0, scale: float = 1.0) -> str:
    if not stat or stat.get("n", 0) == 0:
        return "-"
    med, lo, hi = (stat["median"] * scale, stat["min"] * scale, stat["max"] * scale)
    if stat["n"] == 1 or f"{lo:.{digits}f}" == f"{hi:.{digits}f}":
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def _num(value: float | None, digits: int) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def _median(t: dict[str, Any], scenario: str, key: str) -> float | None:
    stat = (t.get(scenario) or {}).get(key)
    if isinstance(stat, dict):
        value = stat.get("median")
        return None if value is None or value != value else float(value)
    return None if stat is None else float(stat)


def max_peak_mib(t: dict[str, Any]) -> float | None:
    """The highest peak RSS the target reached in any scenario (every run) but idle10k, whose
    10,000 connections have a bound of their own (4 KiB each, 40 MiB over the idle RSS)."""
    peaks = []
    for scenario in SCENARIOS:
        if scenario == "idle10k":
            continue
        data = t.get(scenario) or {}
        peaks += [run.get("peak_rss_mib") for run in data.get("runs", [])]
        peaks.append(data.get("peak_rss_mib") if not isinstance(data.get("peak_rss_mib"), dict)
                     else None)  # fmt: skip
    clean = [p for p in peaks if isinstance(p, (int, float)) and p == p and p > 0]
    return max(clean) if clean else None


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's targets, each for every streamproxy target of the run, against the same run's
    python-floor and nginx: [{"target", "goal", "value", "bound", "pass", "floor", "nginx"}]."""
    by_name = {t["target"]: t for t in report["targets"] if "error" not in t}
    floor, nginx = by_name.get("python-floor", {}), by_name.get("nginx", {})
    meta = report["meta"]
    rows: list[dict[str, Any]] = []

    def add(goal: str, value: Any, bound: Any, ok: bool, refs: tuple[Any, Any]) -> None:
        rows.append(
            {"target": name, "goal": goal, "value": value, "bound": bound, "pass": ok,
             "floor": refs[0], "nginx": refs[1]}
        )  # fmt: skip

    def refs(scenario: str, key: str) -> tuple[float | None, float | None]:
        return _median(floor, scenario, key), _median(nginx, scenario, key)

    def relative(goal: str, scenario: str, key: str, factor: float, ref: str, most: bool) -> None:
        """value <= (most) or >= factor x the reference's (ref: "floor" or "nginx")."""
        value, pair = _median(t, scenario, key), refs(scenario, key)
        base = pair[0] if ref == "floor" else pair[1]
        if value is not None and base is not None:
            bound = factor * base
            add(goal, value, bound, value <= bound if most else value >= bound, pair)

    for name, t in by_name.items():
        if not name.startswith("streamproxy"):
            continue
        cpu, pair = _median(t, "small64", "cpu_us_per_req"), refs("small64", "cpu_us_per_req")
        bounds = [b for b in (pair[0] and 1.3 * pair[0], pair[1] and 2 * pair[1]) if b]
        if cpu is not None and bounds:
            add("proxy CPU µs per small GET ≤ 1.3x floor, ≤ 2x nginx", cpu, min(bounds),
                cpu <= min(bounds), pair)  # fmt: skip
        relative("req/s at 64 connections ≥ 0.75x floor", "small64", "rps", 0.75, "floor", False)
        relative("p50 ms at one connection ≤ 1.15x floor", "small1", "p50_ms", 1.15, "floor", True)
        if (per_header := t.get("us_per_header")) is not None:
            add("µs per extra request header ≤ 0.5", per_header, 0.5, per_header <= 0.5,
                (floor.get("us_per_header"), nginx.get("us_per_header")))  # fmt: skip
        relative("1 GiB download MB/s ≥ 0.9x nginx", "download", "mb_s", 0.9, "nginx", False)
        relative("1 GiB upload MB/s ≥ 0.9x nginx", "upload", "mb_s", 0.9, "nginx", False)
        if runs := (t.get("c2000") or {}).get("runs", []):
            errors = sum(run.get("errors", 0) for run in runs)
            answered = all("rps" in run for run in runs)
            add(f"{meta.get('many_conns')} concurrent clients: errors = 0", errors, 0,
                answered and errors == 0, refs("c2000", "errors"))  # fmt: skip
            ratios = [
                r["p99_ms"] / r["p50_ms"] for r in runs if r.get("p50_ms") and r.get("p99_ms")
            ]
            worst = max(ratios) if ratios else None
            ref_ratios = tuple(
                _ratio(x.get("c2000")) for x in (floor, nginx)
            )  # fmt: skip
            add(f"{meta.get('many_conns')} concurrent clients: p99/p50 ≤ 10", worst, 10.0,
                worst is not None and worst <= 10, ref_ratios)  # fmt: skip
        if idle := t.get("idle10k"):
            kib = idle.get("kib_per_conn")
            ok = kib is not None and kib <= 4 and idle.get("opened") == idle.get("conns")
            add(f"{idle.get('conns')} idle keep-alive connections: KiB of RSS each ≤ 4", kib,
                4.0, ok, tuple((x.get("idle10k") or {}).get("kib_per_conn")
                               for x in (floor, nginx)))  # fmt: skip
        if ws := t.get("ws1000"):
            ok = ws.get("echoed") == ws.get("clients") == ws.get("concurrent_open")
            add(f"{ws.get('clients')} concurrent WebSocket tunnels echoing (all)",
                ws.get("echoed"), ws.get("clients"), ok,
                tuple((x.get("ws1000") or {}).get("echoed") for x in (floor, nginx)))  # fmt: skip
        if (idle_rss := t.get("idle_rss_mib")) is not None:
            add("idle RSS MiB ≤ 45", idle_rss, 45.0, idle_rss <= 45,
                (floor.get("idle_rss_mib"), nginx.get("idle_rss_mib")))  # fmt: skip
        if (peak := max_peak_mib(t)) is not None:
            add("peak RSS MiB ≤ 64 in every scenario (idle10k apart)", peak, 64.0, peak <= 64,
                (max_peak_mib(floor), max_peak_mib(nginx)))  # fmt: skip
    return rows


def _ratio(c2000: dict[str, Any] | None) -> float | None:
    ratios = [r["p99_ms"] / r["p50_ms"] for r in (c2000 or {}).get("runs", [])
              if r.get("p50_ms") and r.get("p99_ms")]  # fmt: skip
    return max(ratios) if ratios else None


def goals_markdown(report: dict[str, Any]) -> list[str]:
    rows = goals(report)
    if not rows:
        return []
    lines = [
        "Issue 11's targets (streamproxy against python-floor and nginx of this run; a goal "
        "whose reference target did not run is left out):",
        "",
        "| target | goal | value | bound | result | python-floor | nginx |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = {True: "**pass**", False: "**FAIL**", None: "-"}[row["pass"]]
        lines.append(
            f"| {row['target']} | {row['goal']} | {_num(row['value'], 2)} "
            f"| {_num(row['bound'], 2)} | {verdict} | {_num(row['floor'], 2)} "
            f"| {_num(row['nginx'], 2)} |"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        f"# streamproxy benchmark — {meta['stamp']}",
        "",
        f"`{meta['command']}` on {meta['machine']}; upstream: {meta['upstream']}; "
        f"{meta['repeats']} run(s) per figure, shown as median (min-max); "
        f"wrk runs of {meta['duration']} s; big transfers of {meta['big_bytes'] // 2**20} MiB.",
        "Proxy on core 0, load + upstream + sink + Redis on core 1 (`taskset`). "
        "Shared 2-core machine: numbers are noisy.",
        "",
        "| target | small GET @64 req/s | p50 ms | p99 ms | proxy CPU µs/req "
        "| @1 conn p50 ms | @1 p99 ms | 12-header GET @64 req/s | its CPU µs/req "
        "| µs per extra header (pairs) | 64 KiB POST @64 req/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        s64, s1, post = t.get("small64", {}), t.get("small1", {}), t.get("post64k", {})
        h64 = t.get("headers64", {})
        lines.append(
            f"| {t['target']} | {_fmt(s64.get('rps'))} | {_fmt(s64.get('p50_ms'), 3)} "
            f"| {_fmt(s64.get('p99_ms'), 3)} | {_fmt(s64.get('cpu_us_per_req'), 1)} "
            f"| {_fmt(s1.get('p50_ms'), 3)} "
            f"| {_fmt(s1.get('p99_ms'), 3)} | {_fmt(h64.get('rps'))} "
            f"| {_fmt(h64.get('cpu_us_per_req'), 1)} "
            f"| {_fmt(spread(t.get('us_per_header_pairs') or []), 2)} "
            f"| {_fmt(post.get('rps'))} |"
        )
    lines += [
        "",
        "| target | download MB/s | CPU s/GiB | peak RSS MiB | upload MB/s | CPU s/GiB "
        "| bytes at sink | peak RSS MiB "
        "| small GET peak RSS MiB | slow client RSS growth MiB | idle RSS MiB | ready s "
        "| Redis cmds / 1k req |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        down, up, s64 = t.get("download", {}), t.get("upload", {}), t.get("small64", {})
        slow = t.get("slow_client") or {}
        idle, per_k = t.get("idle_rss_mib"), t.get("redis_per_1000")
        cells = [
            t["target"],
            _fmt(down.get("mb_s")),
            _fmt(down.get("cpu_s_per_gib"), 2),
            _fmt(down.get("peak_rss_mib"), 1),
            _fmt(up.get("mb_s")),
            _fmt(up.get("cpu_s_per_gib"), 2),
            _fmt(up.get("sink_bytes")),
            _fmt(up.get("peak_rss_mib"), 1),
            _fmt(s64.get("peak_rss_mib"), 1),
            f"{slow['growth_mib']:.1f}" if slow else "-",
            f"{idle:.1f}" if idle is not None else "-",
            _fmt(t.get("ready_s"), 3),
            f"{per_k:.2f}" if per_k is not None else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    many, idle_n, ws_n = (report["meta"].get(k, "?") for k in ("many_conns", "idle_conns",
                                                                "ws_clients"))  # fmt: skip
    lines += [
        "",
        f"| target | {many} clients req/s | p50 ms | p99 ms | errors | CPU µs/req | peak RSS MiB "
        f"| {idle_n} idle conns open | KiB each | RSS with them MiB "
        f"| {ws_n} WebSockets open at once | echoed | peak RSS MiB "
        "| max peak RSS, any scenario but idle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        c2k, idle, ws = t.get("c2000", {}), t.get("idle10k") or {}, t.get("ws1000") or {}
        cells = [
            t["target"],
            _fmt(c2k.get("rps")),
            _fmt(c2k.get("p50_ms"), 2),
            _fmt(c2k.get("p99_ms"), 2),
            _fmt(c2k.get("errors")),
            _fmt(c2k.get("cpu_us_per_req"), 1),
            _fmt(c2k.get("peak_rss_mib"), 1),
            _num(idle.get("opened"), 0),
            _num(idle.get("kib_per_conn"), 2),
            _num(idle.get("rss_with_mib"), 1),
            _num(ws.get("concurrent_open"), 0),
            _num(ws.get("echoed"), 0),
            _num(ws.get("peak_rss_mib"), 1),
            _num(max_peak_mib(t), 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *goals_markdown(report)]
    lines += [
        "",
        "RSS figures are the proxy's whole process tree (nginx: master + worker); peak RSS is "
        "VmHWM, reset before each run. `direct` has no proxy, so no proxy memory.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="streamproxy benchmark (see docs/performance.md)")
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated: %(default)s (and streamproxy+<patch>..., bench/experiments.py)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: %(default)s"
    )
    parser.add_argument("--repeats", type=int, help="runs per measurement")
    parser.add_argument("--duration", type=float, help="seconds per wrk run")
    parser.add_argument("--big-mib", type=int, help="size of the big download/upload")
    parser.add_argument("--no-nginx", action="store_true", help="use the Python upstream")
    parser.add_argument("--many-conns", type=int, help="clients of c2000 (default 2000)")
    parser.add_argument("--idle-conns", type=int, help="connections of idle10k (default 10000)")
    parser.add_argument("--ws-clients", type=int, help="WebSockets of ws1000 (default 1000)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--extra-args",
        default="",
        help="streamproxy flags for every streamproxy target, e.g. --extra-args='--access-log'",
    )
    args = parser.parse_args(argv)
    STREAMPROXY_EXTRA_ARGS[:] = shlex.split(args.extra_args)

    plan = QUICK if args.quick else FULL
    plan = Plan(**{**plan.__dict__})
    plan.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    plan.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if unknown := set(plan.scenarios) - set(SCENARIOS):
        raise SystemExit(f"bench: unknown scenario(s) {sorted(unknown)}")
    if args.repeats:
        plan.repeats = args.repeats
    if args.duration:
        plan.duration = plan.many_duration = args.duration
    if args.big_mib:
        plan.big_bytes = args.big_mib << 20
    plan.many_conns = args.many_conns or plan.many_conns
    plan.idle_conns = args.idle_conns or plan.idle_conns
    plan.ws_clients = args.ws_clients or plan.ws_clients
    # Thousands of connections: file descriptors for the proxy, wrk and the clients (inherited).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (limit := resource.getrlimit(resource.RLIMIT_NOFILE)[0]) < plan.idle_conns + 1000:
        log(f"open files limited to {limit}: idle10k may fail (ulimit -n)")
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is required (apt-get install {tool})")
    use_nginx = bool(shutil.which("nginx")) and not args.no_nginx
    if not use_nginx:
        plan.targets = [t for t in plan.targets if t != "nginx"]
        log("nginx not installed (or --no-nginx): Python upstream, no nginx target")

    workdir = Path(tempfile.mkdtemp(prefix="streamproxy-bench-"))
    workdir.chmod(0o755)  # nginx workers may run as nobody
    procs = Processes(workdir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {
        "meta": {
            "stamp": stamp,
            "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs,"
            f" Python {platform.python_version()}",
            "repeats": plan.repeats,
            "scenarios": plan.scenarios,
            "duration": plan.duration,
            "big_bytes": plan.big_bytes,
            "many_conns": plan.many_conns,
            "idle_conns": plan.idle_conns,
            "ws_clients": plan.ws_clients,
            "ws_messages": plan.ws_messages,
            "layout": {
                "proxy": f"taskset -c {PROXY_CORE}",
                "load+upstream+redis": f"taskset -c {LOAD_CORE}",
            },
        },
        "targets": [],
    }
    try:
        # The image ships compiled bytecode; a work tree under PYTHONDONTWRITEBYTECODE would
        # compile streamproxy's modules at every start (slower ready, +0.7 MiB idle RSS).
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "sidecar")], check=True)
        upstream = start_upstream(procs, plan.big_bytes, use_nginx)
        report["meta"]["upstream"] = upstream.kind
        redis = Redis(procs)
        for name in plan.targets:
            log(f"== {name}")
            try:
                report["targets"].append(run_target(name, plan, procs, upstream, redis))
            except Exception as exc:  # one broken target must not lose the others' numbers
                log(f"{name} failed: {exc}")
                report["targets"].append({"target": name, "error": str(exc)})
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    for stem in (stamp, "latest"):
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
