"""RedisCounter against a real redis-server: batching, totals, close, sharing, auth, db, TLS."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from sidecar.counter.redis_store import RedisCounter
from tests.redis_fixtures import (
    RedisServer,
    TlsFiles,
    counter_value,
    eventually,
    paced_traffic,
    report,
)

CounterFactory = Callable[..., Awaitable[RedisCounter]]
ServerFactory = Callable[..., RedisServer]


async def test_increments_are_flushed_in_batches(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url, pod_name="pod-a")
    for _ in range(1000):
        counter.incr()
    assert counter.pending == 1000
    await eventually(lambda: counter_value(redis_server) == 1000, what="1000 in Redis")
    await eventually(lambda: counter.pending == 0, what="nothing pending")
    assert await counter.total() == 1000
    assert await counter.pod_total() == 1000
    assert counter.redis_state == "up"
    with redis_server.client() as client:
        assert client.hgetall("{streamproxy:requests}:pods") == {b"pod-a": b"1000"}
        markers = client.keys("{streamproxy:requests}:flush:*")
        assert markers == [f"{{streamproxy:requests}}:flush:{counter.process_id}".encode()]
        assert 0 < client.ttl(markers[0]) <= 24 * 3600
    stats = counter.stats()
    assert stats.flushes >= 1
    assert stats.flush_failures == 0
    assert stats.last_flush_age() is not None


async def test_total_includes_other_writers_within_a_second(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url)
    await eventually(lambda: counter.redis_state == "up", what="redis up")
    with redis_server.client() as client:
        client.incrby("streamproxy:requests", 42)
    started = time.monotonic()
    await eventually(counter.total, within=3, what="total to see another writer")
    assert await counter.total() == 42
    assert time.monotonic() - started < 1.5


async def test_close_flushes_pending_counts(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url, flush_interval=3600)
    await eventually(lambda: counter.redis_state == "up", what="redis up")
    for _ in range(17):
        counter.incr()
    assert counter_value(redis_server) == 0
    await counter.close()
    report("close() flushes", 17, counter_value(redis_server))
    assert counter_value(redis_server) == 17
    assert counter.pending == 0


async def test_close_is_bounded_when_redis_is_down(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url)
    redis_server.stop()
    counter.incr()
    started = time.monotonic()
    await counter.close()
    assert time.monotonic() - started < 5
    assert counter.pending == 1


async def test_two_counters_sharing_one_key_sum_exactly(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    first = await counter_factory(redis_url=redis_server.url, pod_name="pod-a")
    second = await counter_factory(redis_url=redis_server.url, pod_name="pod-b")
    for i in range(1000):
        (first if i % 3 else second).incr()
    await eventually(lambda: counter_value(redis_server) == 1000, what="sum in Redis")
    await eventually(lambda: first.pending + second.pending == 0, what="both flushed")
    report("two counters, one key", 1000, counter_value(redis_server))
    with redis_server.client() as client:
        assert client.hgetall("{streamproxy:requests}:pods") == {b"pod-a": b"666", b"pod-b": b"334"}
    await eventually(lambda: first._shared_total == second._shared_total == 1000, within=3)
    assert await first.total() == await second.total() == 1000
    assert await first.pod_total() == 666


async def test_redis_down_keeps_counts_as_one_int_and_recovers(
    redis_server_factory: ServerFactory,
    counter_factory: CounterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamproxy.counter")
    server = redis_server_factory(start=False)  # the port is reserved, nothing listens yet
    counter = await counter_factory(redis_url=server.url)
    started = time.monotonic()
    for _ in range(200_000):
        counter.incr()
    assert time.monotonic() - started < 1.0  # no I/O on the hot path
    await eventually(lambda: counter.stats().flush_failures >= 3, what="failed flushes")
    assert counter.redis_state == "down"
    assert counter.pending == 200_000
    assert await counter.total() == 200_000
    # Memory is one int, however many counts wait
    assert isinstance(counter._pending, int)
    assert sys.getsizeof(counter._pending) <= 32
    server.start()
    await eventually(lambda: counter_value(server) == 200_000, within=10, what="recovery flush")
    await eventually(lambda: counter.redis_state == "up" and counter.pending == 0)
    report("redis down at start, 200,000 counts waiting", 200_000, counter_value(server))
    messages = [r.getMessage() for r in caplog.records if r.name == "streamproxy.counter"]
    assert sum("unavailable" in m for m in messages) == 1, messages
    assert sum("available again" in m for m in messages) == 1, messages


async def test_outage_and_recovery_are_logged_once_each(
    redis_server: RedisServer, counter_factory: CounterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamproxy.counter")
    counter = await counter_factory(redis_url=redis_server.url)
    await eventually(lambda: counter.redis_state == "up", what="redis up")
    redis_server.stop()
    for _ in range(10):
        counter.incr()
    await eventually(lambda: counter.stats().flush_failures >= 4, what="several failures")
    redis_server.start()
    await eventually(lambda: counter.pending == 0 and counter.redis_state == "up", within=10)
    assert counter_value(redis_server) == 10
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [lvl for lvl, m in levels if "unavailable" in m] == ["WARNING"], levels
    assert [lvl for lvl, m in levels if "available again" in m] == ["INFO"], levels


async def test_script_flushed_from_redis_is_reloaded(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url)
    counter.incr()
    await eventually(lambda: counter_value(redis_server) == 1)
    with redis_server.client() as client:
        client.script_flush()
    counter.incr()
    await eventually(lambda: counter_value(redis_server) == 2, what="flush after NOSCRIPT")


async def test_database_number_from_url(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=f"redis://127.0.0.1:{redis_server.port}/3")
    counter.incr()
    await eventually(lambda: counter.pending == 0)
    with redis_server.client(db=3) as client:
        assert client.get("streamproxy:requests") == b"1"
    assert counter_value(redis_server) == 0


ACL = ["--user", "counter", "on", ">s3cret", "~*", "&*", "+@all", "--user", "default", "off"]


@pytest.mark.parametrize("where", ["url", "settings", "settings-over-url"])
async def test_acl_username_and_password(
    redis_server_factory: ServerFactory, counter_factory: CounterFactory, where: str
) -> None:
    server = redis_server_factory(username="counter", password="s3cret", extra_args=ACL)
    if where == "url":
        options = {"redis_url": f"redis://counter:s3cret@127.0.0.1:{server.port}/0"}
    elif where == "settings":
        options = {"redis_url": server.url, "redis_username": "counter", "redis_password": "s3cret"}
    else:
        options = {
            "redis_url": f"redis://nobody:wrong@127.0.0.1:{server.port}/0",
            "redis_username": "counter",
            "redis_password": "s3cret",
        }
    counter = await counter_factory(**options)
    counter.incr()
    await eventually(lambda: counter_value(server) == 1, what="authenticated flush")


async def test_wrong_password_is_an_outage_not_an_error(
    redis_server_factory: ServerFactory, counter_factory: CounterFactory
) -> None:
    server = redis_server_factory(username="counter", password="s3cret", extra_args=ACL)
    counter = await counter_factory(
        redis_url=server.url, redis_username="counter", redis_password="wrong"
    )
    counter.incr()
    await eventually(lambda: counter.stats().flush_failures >= 2)
    assert counter.redis_state == "down"
    assert await counter.total() == 1


async def test_tls_with_ca_file(
    redis_server_factory: ServerFactory, tls_files: TlsFiles, counter_factory: CounterFactory
) -> None:
    server = redis_server_factory(tls=tls_files)
    assert server.url.startswith("rediss://")
    counter = await counter_factory(redis_url=server.url, redis_ca_file=tls_files.ca)
    for _ in range(25):
        counter.incr()
    await eventually(lambda: counter_value(server) == 25, what="flush over TLS")
    assert counter.redis_state == "up"


async def test_tls_with_an_unknown_ca_is_refused(
    redis_server_factory: ServerFactory, tls_files: TlsFiles, counter_factory: CounterFactory
) -> None:
    server = redis_server_factory(tls=tls_files)
    counter = await counter_factory(redis_url=server.url)  # system CAs: ours is not among them
    counter.incr()
    await eventually(lambda: counter.stats().flush_failures >= 2)
    assert counter.redis_state == "down"
    assert counter_value(server) == 0


async def test_redis_commands_per_thousand_increments_at_steady_rate(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    """Batching: at 1,000 increments/s and the default 0.2 s interval, ~5 calls per 1,000."""
    counter = await counter_factory(redis_url=redis_server.url, flush_interval=0.2)
    counter.incr()
    await eventually(lambda: counter_value(redis_server) == 1)
    with redis_server.client() as client:
        client.config_resetstat()
    await paced_traffic([counter], 3000, 3.0)
    await eventually(lambda: counter.pending == 0)
    with redis_server.client() as client:
        stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    for ours in ("config|resetstat", "config", "info", "hello", "client"):  # connection setup
        calls.pop(ours, None)
    # commandstats also counts what scripts run inside Redis; round trips are the EVALSHAs
    round_trips = calls.get("evalsha", 0) / 3
    executed = sum(calls.values()) / 3
    print(f"per 1,000 increments: {round_trips:.1f} round trips, {executed:.1f} commands {calls}")
    assert counter_value(redis_server) == 3001
    assert 1 <= round_trips <= 10, calls
    assert set(calls) <= {"evalsha", "get", "incrby", "hincrby", "set", "hget"}, calls


async def test_total_stays_fresh_with_a_long_flush_interval(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url, flush_interval=30)
    assert counter.redis_state == "up"
    with redis_server.client() as client:
        client.incrby("streamproxy:requests", 5)
    started = time.monotonic()
    await eventually(lambda: counter._shared_total == 5, within=3, what="fresh total")
    assert time.monotonic() - started < 1.5
    counter.incr()
    contact = counter._last_contact
    await eventually(lambda: counter._last_contact > contact, within=3, what="another read")
    assert await counter.total() == 6
    assert counter.pending == 1  # not flushed before its interval


async def test_redis_state_is_known_right_after_start(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url)
    assert counter.redis_state == "up"


async def test_a_clobbered_key_is_an_outage_until_repaired(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    """The key was overwritten with a non-integer: flushes fail, apply nothing, until fixed."""
    counter = await counter_factory(redis_url=redis_server.url)
    counter.incr()
    await eventually(lambda: counter_value(redis_server) == 1)
    with redis_server.client() as client:
        client.set("streamproxy:requests", "not a number")
    counter.incr()
    await eventually(lambda: counter.stats().flush_failures >= 2, what="failing flushes")
    assert counter.redis_state == "down"
    with redis_server.client() as client:
        assert client.hget("{streamproxy:requests}:pods", counter.pod) == b"1"  # not half-applied
        client.set("streamproxy:requests", 100)
    await eventually(lambda: counter.pending == 0, within=5, what="flush after the repair")
    assert counter_value(redis_server) == 101
