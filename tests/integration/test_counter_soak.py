"""Soak (~60 s, `-m soak`): two counters, Redis SIGKILLed and restarted every few seconds, replies
dropped now and then, eight concurrent writers — and the exact count at the end."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from sidecar.counter.redis_store import RedisCounter
from tests.faultproxy import FaultProxy
from tests.redis_fixtures import RedisServer, counter_value, eventually, report

CounterFactory = Callable[..., Awaitable[RedisCounter]]
DURATION = 60.0


@pytest.mark.soak
@pytest.mark.timeout(180)
async def test_soak_restarts_and_lost_replies(
    redis_server: RedisServer, counter_factory: CounterFactory
) -> None:
    rng = random.Random(4)
    with FaultProxy(redis_server.port) as proxy:
        via_proxy = await counter_factory(redis_url=proxy.url, pod_name="pod-a")
        direct = await counter_factory(redis_url=redis_server.url, pod_name="pod-b")
        counters = [via_proxy, direct]
        sent = [0, 0]
        stop_at = time.monotonic() + DURATION

        async def writer(seed: int) -> None:
            local = random.Random(seed)
            while time.monotonic() < stop_at:
                which = local.randrange(2)
                for _ in range(local.randint(1, 50)):
                    counters[which].incr()
                    sent[which] += 1
                await asyncio.sleep(local.uniform(0, 0.01))  # pacing the load

        writers = [asyncio.create_task(writer(seed)) for seed in range(8)]
        restarts = drops = 0
        try:
            while time.monotonic() < stop_at:
                await asyncio.sleep(rng.uniform(2.0, 4.0))  # fault rhythm, not synchronisation
                if rng.random() < 0.5:
                    redis_server.stop()  # SIGKILL
                    await asyncio.sleep(rng.uniform(0.1, 1.5))
                    await asyncio.to_thread(redis_server.start)
                    restarts += 1
                else:
                    proxy.set_mode("drop_replies")
                    await asyncio.sleep(rng.uniform(0.2, 1.0))
                    proxy.set_mode("pass")
                    drops += 1
            await asyncio.gather(*writers)
        finally:
            for task in writers:
                task.cancel()
        await eventually(lambda: via_proxy.pending + direct.pending == 0, within=20)
        seen = counter_value(redis_server)
        report("soak", sum(sent), seen, restarts=restarts, drop_periods=drops,
               dropped_replies=proxy.dropped_replies)  # fmt: skip
        assert restarts >= 3 and drops >= 3 and proxy.dropped_replies > 0
        assert counter_value(redis_server) == sum(sent)
        with redis_server.client() as client:
            pods = client.hgetall("{streamproxy:requests}:pods")
        assert pods == {b"pod-a": str(sent[0]).encode(), b"pod-b": str(sent[1]).encode()}
