"""The Redis counter: `incr()` bumps an int; a background task flushes it, exactly once.

Every flush carries this process's random id and a sequence number. One Lua script applies it
atomically: it adds the amount to the counter key and to this pod's field in the per-pod hash,
and records the sequence number in a per-process marker key, unless the marker shows that the
sequence number was already applied. A flush whose reply was lost (broken connection, timeout,
failover) is retried with the same sequence number and the same amount — never merged with newer
counts — until a reply confirms it, so it is applied once and only once.

With Sentinel, a reply from the master is not enough: a write acknowledged by a master that is
being replaced is lost with it. There a flush is confirmed only once `WAIT 1` says a replica has
it; until then it is retried (harmlessly, thanks to the marker).

Redis down or slow never reaches the caller: `incr()` does no I/O, the flush task backs off
(capped at `BACKOFF_MAX`) and every call is bounded by socket timeouts. The outage is logged once
and the recovery once. See docs/counting.md for the guarantee and the key layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import socket
import time
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from sidecar.counter.base import CounterStats, RedisState
from sidecar.counter.redis_client import build_client, key_names, parse_target
from sidecar.settings import Settings

logger = logging.getLogger("streamproxy.counter")

MARKER_TTL = 24 * 3600  # seconds: far beyond any retry of one flush
REFRESH_INTERVAL = 0.8  # re-read the shared total when idle, so total() is < 1 s old
CALL_TIMEOUT = 2.5  # upper bound on one flush (connect + script + WAIT), on top of socket timeouts
REPLICA_WAIT_MS = 500
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
CLOSE_TIMEOUT = 3.0
START_CONTACT = 0.5
TICK_SLACK = 0.05  # asyncio may wake a sleeper up to one clock tick early

# KEYS: counter, this process's marker, per-pod hash. ARGV: seq, amount, pod, marker TTL.
# Returns {applied (1|0), counter value, this pod's value}.
FLUSH_SCRIPT = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then
  return {0, tonumber(redis.call('GET', KEYS[1]) or '0'),
          tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0')}
end
local total = redis.call('INCRBY', KEYS[1], ARGV[2])
local pod = redis.call('HINCRBY', KEYS[3], ARGV[3], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
return {1, total, pod}
"""

# KEYS: counter, per-pod hash. ARGV: pod. Returns {counter value, this pod's value}.
READ_SCRIPT = """
return {tonumber(redis.call('GET', KEYS[1]) or '0'),
        tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')}
"""


class ReplicationUnconfirmed(RedisError):
    """WAIT saw no replica take the flush; it stays in flight and is retried."""


class RedisCounter:
    def __init__(self, settings: Settings) -> None:
        self._link = build_client(settings)
        self._client = self._link.client
        self._where = (
            f"sentinel {settings.redis_sentinel_master}@{settings.redis_sentinels}"
            if settings.redis_sentinels
            else parse_target(settings).describe()
        )
        self._flush_interval = settings.flush_interval
        self._wait_for_replica = bool(settings.redis_sentinels)
        self.process_id = secrets.token_hex(8)
        self.pod = settings.pod_name or socket.gethostname()
        marker_prefix, pods_key = key_names(settings.counter_key)
        self.keys = (settings.counter_key, marker_prefix + self.process_id, pods_key)

        # Hot path state: only `incr()` touches `_pending` outside the flush task.
        self._pending = 0
        self._seq = 0
        self._inflight: tuple[int, int] | None = None  # (seq, amount) sent, not yet confirmed

        # What Redis said last
        self._shared_total = 0
        self._pod_flushed = 0
        self._last_contact = float("-inf")
        self._state: RedisState = "down"
        self._down_since: float | None = None
        self._outage_logged = False

        # Metrics
        self._flushes = 0
        self._flush_failures = 0
        self._last_flush: float | None = None

        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # Counter protocol

    def incr(self) -> None:
        self._pending += 1

    @property
    def pending(self) -> int:
        return self._pending + (self._inflight[1] if self._inflight else 0)

    @property
    def redis_state(self) -> RedisState:
        return self._state

    async def start(self) -> None:
        if self._task is None and not self._closed:
            # One quick contact first, so that `redis_state` is meaningful from the start; a
            # Redis that is down or slow delays start-up by at most START_CONTACT seconds.
            await self._step(START_CONTACT)
            self._task = asyncio.create_task(self._run(), name="streamproxy-counter-flush")

    async def close(self) -> None:
        """Stop the flush task, then flush what is left for at most CLOSE_TIMEOUT seconds."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while self.pending and time.monotonic() < deadline:
            if not await self._step(min(CALL_TIMEOUT, deadline - time.monotonic())):
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.pending:
            logger.error(
                "counter closed with unflushed counts",
                extra={"pending": self.pending, "redis": self._where},
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._link.aclose()

    async def total(self) -> int:
        return self._shared_total + self.pending

    async def pod_total(self) -> int:
        return self._pod_flushed + self.pending

    def stats(self) -> CounterStats:
        return CounterStats(
            flushes=self._flushes,
            flush_failures=self._flush_failures,
            pending=self.pending,
            last_flush_monotonic=self._last_flush,
        )

    # Flushing

    async def _run(self) -> None:
        # Wake at least every REFRESH_INTERVAL (to keep the shared total fresh) but take a new
        # batch only every flush_interval.
        tick = min(self._flush_interval, REFRESH_INTERVAL)
        next_batch = 0.0
        backoff = BACKOFF_MIN
        while True:
            now = time.monotonic()
            due = now >= next_batch
            if due:
                next_batch = now + self._flush_interval
            if await self._step(CALL_TIMEOUT, new_batch=due):
                backoff = BACKOFF_MIN
                await asyncio.sleep(tick)
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _step(self, budget: float, new_batch: bool = True) -> bool:
        """One flush (or, when idle, one read of the shared total). True when Redis answered."""
        if self._inflight is None and self._pending and new_batch:
            # Take the pending counts as one flush; from here on they are only ever sent with
            # this sequence number, however often it has to be retried.
            self._seq += 1
            self._inflight = (self._seq, self._pending)
            self._pending = 0
        try:
            async with asyncio.timeout(budget):
                if self._inflight is not None:
                    await self._flush(*self._inflight)
                elif time.monotonic() - self._last_contact >= REFRESH_INTERVAL - TICK_SLACK:
                    await self._read()
        except Exception as exc:
            # Redis errors, socket errors, timeouts — and anything unexpected from the client
            # library during a failover: the flush task must survive all of them.
            if self._inflight is not None:
                self._flush_failures += 1
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    async def _flush(self, seq: int, amount: int) -> None:
        args = (seq, amount, self.pod, MARKER_TTL)
        reply = await self._script(FLUSH_SCRIPT, self.keys, args, wait=self._wait_for_replica)
        _applied, total, pod_total = reply
        now = time.monotonic()
        self._inflight = None
        self._flushes += 1
        self._last_flush = now
        self._remember(int(total), int(pod_total), now)

    async def _read(self) -> None:
        total, pod_total = await self._script(
            READ_SCRIPT, (self.keys[0], self.keys[2]), (self.pod,)
        )
        self._remember(int(total), int(pod_total), time.monotonic())

    def _remember(self, total: int, pod_total: int, now: float) -> None:
        self._shared_total = total
        self._pod_flushed = pod_total
        self._last_contact = now

    async def _script(
        self, script: str, keys: tuple[str, ...], args: tuple[Any, ...], wait: bool = False
    ) -> list[Any]:
        """EVALSHA, loading the script on NOSCRIPT (a restarted or failed-over Redis forgets it)."""
        sha = hashlib.sha1(script.encode()).hexdigest()
        for attempt in range(2):
            try:
                if not wait:
                    return list(await self._client.evalsha(sha, len(keys), *keys, *args))
                # WAIT must run on the connection that wrote, hence one pipeline for both.
                pipe = self._client.pipeline(transaction=False)
                pipe.evalsha(sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS)
                reply, replicas = await pipe.execute()
                if int(replicas) < 1:
                    raise ReplicationUnconfirmed("no replica acknowledged the flush")
                return list(reply)
            except NoScriptError:
                if attempt:
                    raise
                await self._client.script_load(script)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # Outage logging: once down, once back up

    def _mark_down(self, exc: BaseException) -> None:
        if self._state == "down" and self._outage_logged:
            return
        self._state = "down"
        self._down_since = time.monotonic()
        self._outage_logged = True
        logger.warning(
            "redis unavailable, counting in memory until it returns",
            extra={"redis": self._where, "error": repr(exc), "pending": self.pending},
        )

    def _mark_up(self) -> None:
        if self._state == "up":
            return
        if self._outage_logged and self._down_since is not None:
            logger.info(
                "redis available again, counts flushed",
                extra={
                    "redis": self._where,
                    "outage_seconds": round(time.monotonic() - self._down_since, 3),
                },
            )
        else:
            logger.info("redis connected", extra={"redis": self._where})
        self._state = "up"
        self._outage_logged = False
        self._down_since = None
