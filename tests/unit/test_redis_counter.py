"""RedisCounter and redis_connect logic that needs no Redis: key names, URL parsing, bookkeeping."""

from __future__ import annotations

import socket

import pytest
from redis.crc import key_slot

from sidecar.counter.base import make_counter
from sidecar.counter.redis_client import key_names, parse_target
from sidecar.counter.redis_store import RedisCounter
from sidecar.settings import Settings

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connecting fails at once


@pytest.mark.parametrize(
    ("key", "marker", "pods"),
    [
        ("streamproxy:requests", "{streamproxy:requests}:flush:", "{streamproxy:requests}:pods"),
        ("{app}:requests", "{app}:requests:flush:", "{app}:requests:pods"),
        ("a{b", "{a{b}:flush:", "{a{b}:pods"),
    ],
)
def test_derived_keys_share_the_counter_keys_slot(key: str, marker: str, pods: str) -> None:
    assert key_names(key) == (marker, pods)
    assert key_slot(marker.encode()) == key_slot(pods.encode()) == key_slot(key.encode())


@pytest.mark.parametrize("key", ["a}b", "{}x"])
def test_key_that_cannot_share_a_slot_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="same-slot"):
        key_names(key)


def test_target_from_url() -> None:
    target = parse_target(Settings(redis_url="rediss://us%40er:p%3Ass@redis.example:6380/4"))
    assert (target.host, target.port, target.db, target.tls) == ("redis.example", 6380, 4, True)
    assert (target.username, target.password) == ("us@er", "p:ss")
    assert "p:ss" not in target.describe()
    assert target.describe() == "rediss://us@er@redis.example:6380/4"


def test_separate_credentials_win_over_the_url() -> None:
    settings = Settings(
        redis_url="redis://old:oldpw@h:1/0", redis_username="new", redis_password="newpw"
    )
    target = parse_target(settings)
    assert (target.username, target.password) == ("new", "newpw")


def test_password_only_url_and_defaults() -> None:
    target = parse_target(Settings(redis_url="redis://:pw@h"))
    assert (target.username, target.password, target.port, target.db) == (None, "pw", 6379, 0)
    assert target.tls is False


def test_non_numeric_database_is_refused() -> None:
    with pytest.raises(ValueError, match="database"):
        parse_target(Settings(redis_url="redis://h:1/zero"))


def test_cluster_has_only_database_zero() -> None:
    with pytest.raises(ValueError, match="database 0"):
        RedisCounter(Settings(redis_url="redis://h:1/2", redis_cluster=True))


def test_make_counter_picks_redis_when_a_url_is_set() -> None:
    assert isinstance(make_counter(Settings(redis_url=CLOSED)), RedisCounter)


def test_identity_pod_and_keys() -> None:
    first = RedisCounter(Settings(redis_url=CLOSED, pod_name="web-0", counter_key="k"))
    second = RedisCounter(Settings(redis_url=CLOSED, pod_name="web-0", counter_key="k"))
    assert first.process_id != second.process_id
    assert first.pod == "web-0"
    assert first.keys == ("k", f"{{k}}:flush:{first.process_id}", "{k}:pods")


def test_pod_name_falls_back_to_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POD_NAME", "STREAMPROXY_POD_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert RedisCounter(Settings(redis_url=CLOSED)).pod == socket.gethostname()


async def test_counts_before_any_flush() -> None:
    counter = RedisCounter(Settings(redis_url=CLOSED))
    for _ in range(5):
        counter.incr()
    assert counter.pending == 5
    assert await counter.total() == 5
    assert await counter.pod_total() == 5
    assert counter.redis_state == "down"
    stats = counter.stats()
    assert (stats.flushes, stats.flush_failures, stats.pending) == (0, 0, 5)
    assert stats.last_flush_age() is None


async def test_unconfirmed_flush_is_retried_unchanged_and_not_merged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sidecar.counter.redis_store.CLOSE_TIMEOUT", 0.3)
    counter = RedisCounter(Settings(redis_url=CLOSED))
    for _ in range(3):
        counter.incr()
    assert await counter._step(1.0) is False
    assert counter._inflight == (1, 3)
    for _ in range(4):
        counter.incr()
    assert await counter._step(1.0) is False
    assert counter._inflight == (1, 3)  # same seq, same amount: the 4 new counts wait
    assert counter._pending == 4
    assert counter.pending == 7
    assert counter.stats().flush_failures == 2
    await counter.close()
    assert counter.pending == 7  # nothing pretended flushed


def test_log_location_names_the_sentinels_and_never_the_password() -> None:
    sentinel = RedisCounter(
        Settings(
            redis_sentinels="s1:26379,s2:26379",
            redis_sentinel_master="main",
            redis_password="hunter2",
        )
    )
    assert sentinel._where == "sentinel main@s1:26379,s2:26379"
    plain = RedisCounter(Settings(redis_url="redis://u:hunter2@h:1/0"))
    assert plain._where == "redis://u@h:1/0"
