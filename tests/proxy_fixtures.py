"""Real processes for the proxy tests: the upstream test app and `streamproxy run`.

Both run as child processes on 127.0.0.1 (a proxy in its own process is what users run, and it
lets the tests read its RSS and send it signals). Readiness is polled with a deadline, never
slept for; every process is stopped by PID at teardown, also when the test failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all are held open until all are chosen, so none comes back twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=_child_env()
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)


def _python(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROXY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Upstream(Process):
    def __init__(self, log: Path, keep_alive: float = 5.0, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                *_python("tests.upstream_app"),
                "--port",
                str(self.port),
                "--keep-alive",
                str(keep_alive),
            ],
            log,
        )
        try:
            wait_until(lambda: _answers(self.url + "/stats"), START_TIMEOUT, "the upstream app")
        except BaseException:
            self.stop()
            raise

    def stats(self) -> dict[str, object]:
        result: dict[str, object] = httpx.get(self.url + "/stats", timeout=5).json()
        return result


class Proxy(Process):
    def __init__(self, upstream: str, log: Path, *extra: str, wait_ready: bool = True) -> None:
        self.port, self.admin_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        super().__init__(
            [
                *_python("sidecar"),
                *("run", "--host", "127.0.0.1", "--upstream", upstream),
                *("--port", str(self.port), "--admin-port", str(self.admin_port)),
                *extra,
            ],
            log,
        )
        if wait_ready:
            try:
                self.wait_started()
            except BaseException:
                self.stop()  # never leave a half-started process (or its log file) behind
                raise

    def wait_started(self) -> None:
        def started() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited early:\n{self.log()}")
            return _answers(self.admin_url + "/livez") and _port_open(self.port)

        wait_until(started, START_TIMEOUT, "the proxy")

    def status(self) -> httpx.Response:
        return httpx.get(self.admin_url + "/status", timeout=5)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    server = Upstream(tmp_path_factory.mktemp("upstream") / "upstream.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A shared proxy in front of the shared upstream (tests must not stop it)."""
    server = Proxy(
        upstream.url, tmp_path_factory.mktemp("proxy") / "proxy.log", "--read-timeout", "2"
    )
    yield server
    server.stop()


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Start dedicated proxies: `proxy_factory(upstream_url, *flags)`; stopped at teardown."""
    started: list[Proxy] = []

    def start(upstream_url: str, *extra: str, wait_ready: bool = True) -> Proxy:
        server = Proxy(
            upstream_url, tmp_path / f"proxy-{len(started)}.log", *extra, wait_ready=wait_ready
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def upstream_factory(tmp_path: Path) -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def start(keep_alive: float = 5.0, port: int | None = None) -> Upstream:
        server = Upstream(tmp_path / f"upstream-{len(started)}.log", keep_alive, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
