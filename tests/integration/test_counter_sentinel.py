"""Redis Sentinel: one master, one replica, one sentinel, a forced failover mid-traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sidecar.counter.redis_store import RedisCounter
from tests.redis_fixtures import (
    SentinelSetup,
    ServerFactory,
    TlsFiles,
    counter_value,
    eventually,
    paced_traffic,
    report,
    start_sentinel_setup,
)

CounterFactory = Callable[..., Awaitable[RedisCounter]]


async def test_sentinel_counts_through_the_current_master(
    redis_sentinel: SentinelSetup, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(
        redis_sentinels=redis_sentinel.sentinels, redis_sentinel_master=redis_sentinel.master_name
    )
    for _ in range(100):
        counter.incr()
    await eventually(lambda: counter.pending == 0, what="flushed through sentinel")
    assert counter_value(redis_sentinel.master) == 100
    await eventually(lambda: counter_value(redis_sentinel.replica) == 100, what="replicated")


async def test_forced_failover_mid_traffic_is_exact(
    redis_sentinel: SentinelSetup, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(
        redis_sentinels=redis_sentinel.sentinels, redis_sentinel_master=redis_sentinel.master_name
    )
    load = asyncio.create_task(paced_traffic([counter], 3000, 4.0))
    await eventually(lambda: counter_value(redis_sentinel.master) > 0, what="first flushes")
    new_port = await asyncio.to_thread(redis_sentinel.failover)
    assert new_port == redis_sentinel.replica.port
    new_master = redis_sentinel.replica
    await load
    await eventually(lambda: counter.pending == 0, within=20, what="all flushed")
    report("sentinel failover", 3000, counter_value(new_master),
           failed_flushes=counter.stats().flush_failures)  # fmt: skip
    assert counter_value(new_master) == 3000
    # The old master rejoins as a replica of the new one and agrees
    await eventually(lambda: counter_value(redis_sentinel.master) == 3000, within=20)
    with new_master.client() as client:
        assert client.hget("{streamproxy:requests}:pods", counter.pod) == b"3000"


async def test_sentinel_over_tls(
    redis_server_factory: ServerFactory, tls_files: TlsFiles, counter_factory: CounterFactory
) -> None:
    setup = start_sentinel_setup(redis_server_factory, tls=tls_files)
    counter = await counter_factory(
        redis_url="rediss://ignored-host:1/0",
        redis_ca_file=tls_files.ca,
        redis_sentinels=setup.sentinels,
        redis_sentinel_master=setup.master_name,
    )
    for _ in range(50):
        counter.incr()
    await eventually(lambda: counter.pending == 0, within=10, what="flushed over TLS")
    assert counter_value(setup.master) == 50


async def test_master_killed_mid_traffic_is_exact(
    redis_sentinel: SentinelSetup, counter_factory: CounterFactory
) -> None:
    """A crash, not a handover: the sentinel promotes the replica after down-after-milliseconds.

    Flushes are confirmed only once a replica has them, so nothing the dead master acknowledged
    is lost; while the new master has no replica yet, counts wait in memory. The old master is
    restarted and rejoins as a replica, and the waiting counts are flushed.
    """
    counter = await counter_factory(
        redis_sentinels=redis_sentinel.sentinels, redis_sentinel_master=redis_sentinel.master_name
    )
    load = asyncio.create_task(paced_traffic([counter], 3000, 4.0))
    await eventually(lambda: counter_value(redis_sentinel.master) > 0, what="first flushes")
    redis_sentinel.master.stop()  # SIGKILL
    await eventually(
        lambda: redis_sentinel.current_master_port() == redis_sentinel.replica.port,
        within=30,
        what="the sentinel to promote the replica",
    )
    await asyncio.to_thread(redis_sentinel.master.start)  # rejoins as the new replica
    await load
    await eventually(lambda: counter.pending == 0, within=30, what="all flushed")
    report("sentinel master killed", 3000, counter_value(redis_sentinel.replica),
           failed_flushes=counter.stats().flush_failures)  # fmt: skip
    assert counter_value(redis_sentinel.replica) == 3000
    await eventually(lambda: counter_value(redis_sentinel.master) == 3000, within=20)


async def test_sentinels_with_requirepass_need_sentinel_auth(
    redis_server_factory: ServerFactory, counter_factory: CounterFactory
) -> None:
    secret = "s3cret"
    auth = ["--requirepass", secret, "--masterauth", secret]
    master = redis_server_factory(password=secret, extra_args=auth)
    replica = redis_server_factory(
        password=secret, extra_args=[*auth, "--replicaof", "127.0.0.1", str(master.port)]
    )
    conf = (
        f"requirepass {secret}\n"
        f"sentinel monitor locked 127.0.0.1 {master.port} 1\n"
        f"sentinel auth-pass locked {secret}\n"
        "sentinel down-after-milliseconds locked 2000\n"
        f"sentinel known-replica locked 127.0.0.1 {replica.port}\n"
    )
    sentinel = redis_server_factory(sentinel_conf=conf, persistent=False, password=secret)

    def replica_synced() -> bool:
        with replica.client() as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    await eventually(replica_synced, what="the replica to sync")
    common = {
        "redis_url": f"redis://:{secret}@127.0.0.1:{master.port}/0",
        "redis_sentinels": f"127.0.0.1:{sentinel.port}",
        "redis_sentinel_master": "locked",
    }
    without = await counter_factory(**common)
    with_auth = await counter_factory(**common, redis_sentinel_auth=True)
    for _ in range(50):
        without.incr()
        with_auth.incr()
    await eventually(lambda: with_auth.pending == 0, what="flushed with sentinel auth")
    assert counter_value(master) == 50  # only the counter that may ask the sentinels got through
    assert without.pending == 50 and without.redis_state == "down"
