"""A real three-master Redis Cluster on loopback: exact counts, also while the slot moves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis
from redis.crc import key_slot

from sidecar.counter.redis_store import RedisCounter
from tests.redis_fixtures import (
    ClusterSetup,
    RedisServer,
    ServerFactory,
    TlsFiles,
    eventually,
    paced_traffic,
    report,
    start_cluster,
)

CounterFactory = Callable[..., Awaitable[RedisCounter]]
KEY = "streamproxy:requests"


def cluster_value(cluster: ClusterSetup, key: str = KEY) -> int:
    with cluster.client() as client:
        return int(client.get(key) or 0)


def node_id(server: RedisServer) -> str:
    with server.client() as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def owner_of(cluster: ClusterSetup, slot: int) -> RedisServer:
    with cluster.nodes[0].client() as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                port = int(master[1])
                return next(n for n in cluster.nodes if n.port == port)
    raise AssertionError(f"slot {slot} is not served")


def move_slot(cluster: ClusterSetup, slot: int, source: RedisServer, target: RedisServer) -> int:
    """Migrate one slot with its keys (what `redis-cli --cluster reshard` does). Returns #keys."""
    source_id, target_id = node_id(source), node_id(target)
    moved = 0
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        for _ in range(100):
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for node in cluster.nodes:
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


async def test_cluster_counts_exactly(
    redis_cluster: ClusterSetup, counter_factory: CounterFactory
) -> None:
    first = await counter_factory(redis_url=redis_cluster.url, redis_cluster=True, pod_name="a")
    second = await counter_factory(redis_url=redis_cluster.url, redis_cluster=True, pod_name="b")
    await paced_traffic([first, second], 2000, 1.0)
    await eventually(lambda: first.pending + second.pending == 0, within=10, what="flushed")
    report("cluster, two counters", 2000, cluster_value(redis_cluster))
    assert cluster_value(redis_cluster) == 2000
    slot = key_slot(KEY.encode())
    with owner_of(redis_cluster, slot).client() as client:
        # plain GET on the owning shard, and the derived keys live on the same shard
        assert client.get(KEY) == b"2000"
        assert client.hgetall("{streamproxy:requests}:pods") == {b"a": b"1000", b"b": b"1000"}
        assert len(client.keys("{streamproxy:requests}:flush:*")) == 2


async def test_cluster_slot_moved_mid_traffic_is_exact(
    redis_cluster: ClusterSetup, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_cluster.url, redis_cluster=True)
    load = asyncio.create_task(paced_traffic([counter], 3000, 3.0))
    await eventually(lambda: cluster_value(redis_cluster) > 0, what="first flushes")
    slot = key_slot(KEY.encode())
    source = owner_of(redis_cluster, slot)
    target = next(n for n in redis_cluster.nodes if n is not source)
    moved = await asyncio.to_thread(move_slot, redis_cluster, slot, source, target)
    assert moved == 3  # counter, marker, per-pod hash
    assert owner_of(redis_cluster, slot) is target
    assert not load.done(), "the move should happen mid-traffic"
    await load
    await eventually(lambda: counter.pending == 0, within=15, what="flushed after the move")
    report("cluster slot moved", 3000, cluster_value(redis_cluster))
    with target.client() as client:
        assert client.get(KEY) == b"3000"
    with source.client() as client, pytest.raises(redis.exceptions.MovedError):
        client.get(KEY)
    assert counter.redis_state == "up"


def replica_of(cluster: ClusterSetup, master: RedisServer) -> RedisServer:
    with master.client() as client:
        lines = client.execute_command("CLUSTER", "REPLICAS", node_id(master))
    port = int(lines[0].decode().split()[1].split("@")[0].rsplit(":", 1)[1])
    return next(n for n in cluster.nodes if n.port == port)


async def test_cluster_failover_mid_traffic_is_exact(
    redis_cluster_with_replicas: ClusterSetup, counter_factory: CounterFactory
) -> None:
    cluster = redis_cluster_with_replicas
    counter = await counter_factory(redis_url=cluster.url, redis_cluster=True)
    load = asyncio.create_task(paced_traffic([counter], 3000, 3.0))
    await eventually(lambda: cluster_value(cluster) > 0, what="first flushes")
    slot = key_slot(KEY.encode())
    old_master = owner_of(cluster, slot)
    replica = replica_of(cluster, old_master)
    with replica.client() as client:
        client.execute_command("CLUSTER", "FAILOVER")  # coordinated: no acknowledged write lost
    await eventually(lambda: owner_of(cluster, slot) is replica, within=20, what="promotion")
    assert not load.done(), "the failover should happen mid-traffic"
    await load
    await eventually(lambda: counter.pending == 0, within=15, what="flushed after failover")
    report("cluster failover", 3000, cluster_value(cluster))
    with replica.client() as client:
        assert client.get(KEY) == b"3000"
    await eventually(lambda: cluster_value(cluster) == 3000, within=5)
    assert counter.stats().flushes > 0


async def test_cluster_over_tls(
    redis_server_factory: ServerFactory, tls_files: TlsFiles, counter_factory: CounterFactory
) -> None:
    cluster = start_cluster(redis_server_factory, tls=tls_files)
    assert cluster.url.startswith("rediss://")
    counter = await counter_factory(
        redis_url=cluster.url, redis_cluster=True, redis_ca_file=tls_files.ca
    )
    for _ in range(500):
        counter.incr()
    await eventually(lambda: counter.pending == 0, within=10, what="flushed over TLS")
    assert cluster_value(cluster) == 500
    assert counter.redis_state == "up"
