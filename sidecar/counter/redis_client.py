"""Build the asyncio Redis client the counter talks to, from `Settings`.

Three topologies, one result type:

- plain: `redis://[user:pass@]host:port/db` or `rediss://…` (TLS, CA bundle from `redis_ca_file`);
- Sentinel: `redis_sentinels` ("h:p,h:p") + `redis_sentinel_master`; `redis_url`, when given,
  only contributes scheme (TLS), credentials and db — its host is ignored;
- Cluster: `redis_cluster=True`, `redis_url` names any one node (db must be 0).

`redis_username` / `redis_password` win over the URL's credentials, so a chart can take them from
a Secret. Every socket operation is bounded (`SOCKET_TIMEOUT`) and the library's own retries are
off: the counter retries with its own backoff and must never sit in a hidden retry loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedSSLConnection
from redis.backoff import NoBackoff
from redis.crc import key_slot

from sidecar.settings import Settings

SOCKET_TIMEOUT = 1.0

RedisClient = Redis | RedisCluster


@dataclass(frozen=True)
class RedisTarget:
    """What the URL and the separate options say, merged (separate options win)."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None

    def describe(self) -> str:
        """For logs: never includes the password."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}/{self.db}"


def parse_target(settings: Settings) -> RedisTarget:
    parts = urlsplit(settings.redis_url or "redis://127.0.0.1:6379/0")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"redis_url: database {path!r} is not a number")
    password = (
        settings.redis_password.get_secret_value()
        if settings.redis_password is not None
        else (unquote(parts.password) if parts.password is not None else None)
    )
    username = settings.redis_username or (unquote(parts.username) if parts.username else None)
    return RedisTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=username,
        password=password,
    )


def key_names(counter_key: str) -> tuple[str, str]:
    """(marker prefix, per-pod hash) derived from the counter key, on the counter key's slot.

    The counter key itself is used verbatim (readable with a plain `GET`). The derived keys carry
    a hash tag so that Redis Cluster puts all three on one slot, which the flush script needs:
    `{<counter_key>}:flush:` and `{<counter_key>}:pods`, or `<counter_key>:flush:` and
    `<counter_key>:pods` when the counter key already has a hash tag of its own.
    """
    start = counter_key.find("{")
    end = counter_key.find("}", start + 1) if start != -1 else -1
    base = counter_key if start != -1 and end > start + 1 else "{" + counter_key + "}"
    marker, pods = f"{base}:flush:", f"{base}:pods"
    wanted = key_slot(counter_key.encode())
    if key_slot(marker.encode()) != wanted or key_slot(pods.encode()) != wanted:
        raise ValueError(
            f"counter_key {counter_key!r}: cannot derive same-slot key names; "
            "use a key without '}' or with a hash tag such as '{streamproxy}:requests'"
        )
    return marker, pods


def _common_kwargs(target: RedisTarget, settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    if target.tls:
        kwargs["ssl_ca_certs"] = settings.redis_ca_file
    return kwargs


@dataclass(frozen=True)
class RedisLink:
    """The client to use plus what else must be closed with it (Sentinel's own clients)."""

    client: RedisClient
    others: tuple[Redis, ...] = ()

    async def aclose(self) -> None:
        for client in (self.client, *self.others):
            with contextlib.suppress(Exception):  # closing is best effort, never an error
                await client.aclose()


def build_client(settings: Settings) -> RedisLink:
    """A client; nothing connects until the first command."""
    target = parse_target(settings)
    kwargs = _common_kwargs(target, settings)
    if settings.redis_sentinels:
        sentinels = []
        for address in settings.redis_sentinels.split(","):
            host, _, port = address.strip().rpartition(":")
            sentinels.append((host, int(port)))
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
        }
        if settings.redis_sentinel_auth:
            # Sentinels with `requirepass` (e.g. Bitnami's auth.sentinel) share Redis's password.
            sentinel_kwargs.update(username=target.username, password=target.password)
        if target.tls:
            # A TLS deployment is TLS throughout: the sentinels are asked over TLS as well.
            kwargs["connection_class"] = SentinelManagedSSLConnection
            sentinel_kwargs.update(ssl=True, ssl_ca_certs=settings.redis_ca_file)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels, sentinel_kwargs=sentinel_kwargs, db=target.db, **kwargs
        )
        master: Redis = sentinel.master_for(settings.redis_sentinel_master or "")
        return RedisLink(master, tuple(sentinel.sentinels))
    if settings.redis_cluster:
        if target.db != 0:
            raise ValueError("redis_url: Redis Cluster has only database 0")
        if target.tls:
            kwargs["ssl"] = True
        # Cluster redirections (MOVED/ASK) are handled inside the client whatever `retry` says.
        return RedisLink(RedisCluster(host=target.host, port=target.port, **kwargs))
    if target.tls:
        kwargs["ssl"] = True
    return RedisLink(Redis(host=target.host, port=target.port, db=target.db, **kwargs))
