"""Exactly-once under faults: lost replies, stalls, refusals and a killed Redis.

Traffic is paced (an increment every few hundred microseconds) so that it spans the fault; the
end state is checked by polling, never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from sidecar.counter.redis_store import RedisCounter
from tests.faultproxy import FaultProxy, Mode
from tests.redis_fixtures import RedisServer, counter_value, eventually, paced_traffic, report

CounterFactory = Callable[..., Awaitable[RedisCounter]]


@pytest.fixture
def fault_proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.port) as proxy:
        yield proxy


async def test_lost_replies_are_neither_dropped_nor_doubled(
    redis_server: RedisServer, fault_proxy: FaultProxy, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=fault_proxy.url)
    load = asyncio.create_task(paced_traffic([counter], 1000, 3.0))
    await eventually(lambda: counter_value(redis_server) > 0, what="first flushes")
    fault_proxy.set_mode("drop_replies")
    applied_before = counter_value(redis_server)
    # Replies are dropped after Redis applied the flush: the value moves, the counter never hears
    await eventually(lambda: fault_proxy.dropped_replies >= 5, what="dropped replies")
    await eventually(
        lambda: counter_value(redis_server) > applied_before, what="applied-but-unconfirmed"
    )
    failures_during = counter.stats().flush_failures
    assert failures_during >= 5
    fault_proxy.set_mode("pass")
    await load
    await eventually(lambda: counter.pending == 0, within=10, what="all confirmed")
    report("lost replies", 1000, counter_value(redis_server),
           dropped_replies=fault_proxy.dropped_replies, failed_flushes=failures_during)  # fmt: skip
    assert counter_value(redis_server) == 1000
    assert await counter.total() == 1000
    with redis_server.client() as client:
        assert client.hget("{streamproxy:requests}:pods", counter.pod) == b"1000"


@pytest.mark.parametrize("mode", ["stall", "refuse"])
async def test_stalled_or_refusing_redis_never_blocks_counting(
    redis_server: RedisServer, fault_proxy: FaultProxy, counter_factory: CounterFactory, mode: Mode
) -> None:
    counter = await counter_factory(redis_url=fault_proxy.url)
    counter.incr()
    await eventually(lambda: counter_value(redis_server) == 1)
    fault_proxy.set_mode(mode)
    started = time.monotonic()
    for _ in range(999):
        counter.incr()
    assert await counter.total() >= 1000
    assert time.monotonic() - started < 0.5
    await eventually(lambda: counter.redis_state == "down", within=5, what="outage noticed")
    # The event loop stays responsive while a flush hangs on the stalled socket
    ticks = 0
    loop_started = time.monotonic()
    while time.monotonic() - loop_started < 0.3:
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 10
    fault_proxy.set_mode("pass")
    await eventually(lambda: counter.pending == 0, within=10, what="flush after healing")
    report(f"redis {mode}", 1000, counter_value(redis_server))
    assert counter_value(redis_server) == 1000
    assert counter.redis_state == "up"


async def test_redis_killed_and_restarted_mid_paced_traffic(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    counter = await counter_factory(redis_url=redis_server.url)
    load = asyncio.create_task(paced_traffic([counter], 5000, 3.0))

    def flushed(target: int) -> Callable[[], bool]:
        return lambda: counter.stats().flushes >= target

    for _ in range(3):
        await eventually(flushed(counter.stats().flushes + 3), what="flushes")
        redis_server.stop()  # SIGKILL
        await eventually(lambda: counter.redis_state == "down", within=5)
        redis_server.start()
    await load
    await eventually(lambda: counter.pending == 0, within=10, what="all flushed")
    report("redis SIGKILLed and restarted 3 times", 5000, counter_value(redis_server))
    assert counter_value(redis_server) == 5000


async def test_connections_cut_repeatedly(
    redis_server: RedisServer, fault_proxy: FaultProxy, counter_factory: CounterFactory
) -> None:
    first = await counter_factory(redis_url=fault_proxy.url, pod_name="pod-a")
    second = await counter_factory(redis_url=redis_server.url, pod_name="pod-b")
    load = asyncio.create_task(paced_traffic([first, second], 4000, 2.0))
    while not load.done():
        fault_proxy.cut()
        await asyncio.sleep(0.03)  # cutting rhythm (fault injection), not synchronisation
    await load
    await eventually(lambda: first.pending + second.pending == 0, within=10)
    report("connections cut every 30 ms, two counters", 4000, counter_value(redis_server),
           failed_flushes=first.stats().flush_failures)  # fmt: skip
    assert counter_value(redis_server) == 4000


async def test_start_is_quick_when_redis_stalls(
    fault_proxy: FaultProxy, counter_factory: CounterFactory
) -> None:
    fault_proxy.set_mode("stall")
    started = time.monotonic()
    counter = await counter_factory(redis_url=fault_proxy.url)
    assert time.monotonic() - started < 1.0
    assert counter.redis_state == "down"
    counter.incr()
    fault_proxy.set_mode("pass")
    await eventually(lambda: counter.pending == 0, within=10, what="flush after the stall")
