"""The one settings object: every flag, its environment variable and its invariants.

`Settings` is built once by the entrypoint (flags win over `STREAMPROXY_*` variables) and passed
into everything that needs it. Construction only validates; nothing is bound or connected here.
The same name is used everywhere: flag `--redis-url`, env `STREAMPROXY_REDIS_URL`,
`settings.redis_url`, chart value `redis.url`.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sidecar.trusted_peers import DEFAULT_TRUSTED_PROXIES, normalise_trusted_proxies

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]

MAX_HEADER_BYTES = 64 * 1024


def _split_url(value: str, schemes: tuple[str, ...]) -> SplitResult:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError("must be a " + " or ".join(f"{scheme}://" for scheme in schemes) + " URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return parts


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMPROXY_",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    # Proxying
    upstream: str = Field(
        "http://127.0.0.1:8080",
        description="The app container: scheme, host and port only.",
    )
    host: str = Field("0.0.0.0", description="Bind address of both ports.")
    port: Port = Field(15000, description="Proxy port.")
    admin_host: str | None = Field(
        None, description="Bind address of the admin port (default: --host)."
    )
    admin_port: Port = Field(15020, description="Admin port: /status, /livez, /readyz, /metrics.")
    connect_timeout: PositiveSeconds = Field(5.0, description="Seconds to connect to the app.")
    read_timeout: PositiveSeconds = Field(
        60.0, description="Max seconds of silence from the app, before headers and between chunks."
    )
    keepalive_timeout: PositiveSeconds = Field(
        75.0,
        description="Seconds an idle client keep-alive connection stays open (above LBs' 60 s).",
    )
    upstream_pool_size: Annotated[int, Field(ge=1)] = Field(
        1024, description="Max concurrent connections to the app."
    )
    upstream_keepalive: PositiveSeconds = Field(
        4.0,
        description="Seconds an idle pooled connection to the app is kept (below the app's own).",
    )
    pool_timeout: PositiveSeconds = Field(
        5.0, description="Max seconds a request waits for a free upstream connection (then 503)."
    )
    send_timeout: PositiveSeconds = Field(
        60.0, description="Max seconds a client may stop reading a response before it is dropped."
    )
    backlog: Annotated[int, Field(ge=1)] = Field(
        4096, description="Listen backlog of the proxy port (connections waiting to be accepted)."
    )
    health_interval: PositiveSeconds = Field(
        1.0, description="Seconds between background reachability checks of the app."
    )

    # Counting
    redis_url: str | None = Field(
        None, description="redis:// or rediss:// URL; unset = in-process counter."
    )
    redis_username: str | None = Field(
        None, description="Redis ACL username (overrides the URL's)."
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password (overrides the URL's)."
    )
    redis_ca_file: str | None = Field(None, description="CA bundle for rediss:// connections.")
    redis_sentinels: str | None = Field(
        None, description="Comma-separated host:port list of Redis Sentinels."
    )
    redis_sentinel_master: str | None = Field(
        None, description="Sentinel master name (with --redis-sentinels)."
    )
    redis_sentinel_auth: bool = Field(
        False, description="Send the Redis username/password to the Sentinels too."
    )
    redis_cluster: bool = Field(False, description="Treat --redis-url as a Redis Cluster node.")
    counter_key: str = Field(
        "streamproxy:requests", min_length=1, description="The shared Redis key."
    )
    flush_interval: PositiveSeconds = Field(
        0.2, description="Seconds between batched counter flushes to Redis."
    )
    pod_name: str | None = Field(
        None,
        validation_alias=AliasChoices("pod_name", "STREAMPROXY_POD_NAME", "POD_NAME"),
        description="This pod's name for the per-pod breakdown (default: $POD_NAME, the hostname).",
    )

    # Lifecycle
    drain_seconds: Seconds = Field(
        0.0, description="After SIGTERM keep serving this long before closing listeners."
    )
    shutdown_timeout: Seconds = Field(
        30.0, description="Then wait at most this long for in-flight requests."
    )
    drain_token: SecretStr | None = Field(
        None,
        description="Admin /drain from other than loopback must send it in "
        "X-Streamproxy-Drain-Token (unset = any address may).",
    )

    # Logging
    log_level: LogLevel = Field("info", description="Log level; logs are JSON lines on stderr.")
    access_log: bool = Field(False, description="Log one JSON line per proxied request.")

    # Guard rails (docs/guardrails.md)
    request_id: bool = Field(
        True,
        description="Give every request to the app an X-Request-Id: the client's when sane, "
        "else a new one.",
    )
    request_id_response: bool = Field(False, description="Also return X-Request-Id to the client.")
    trusted_proxies: str = Field(
        DEFAULT_TRUSTED_PROXIES,
        description="Comma-separated CIDRs whose X-Forwarded-Proto/-Host are kept "
        "(none = trust no peer).",
    )
    max_in_flight: Annotated[int, Field(ge=0)] = Field(
        0, description="Past this many concurrent proxied requests answer 503 (0 = unlimited)."
    )
    max_request_body: int | None = Field(
        None, ge=0, description="Max request body bytes, else 413 (unset = unlimited)."
    )
    upstream_health_path: str | None = Field(
        None,
        description="Readiness: GET this path on the app, any status below 500 "
        "(unset = a TCP connect).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        return normalise_trusted_proxies(value)

    @field_validator("drain_token")
    @classmethod
    def _check_drain_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not all("!" <= char <= "~" for char in value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces (it is sent as a header)")
        return value

    @field_validator("upstream_health_path")
    @classmethod
    def _check_upstream_health_path(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("/") or not all("!" <= char <= "~" for char in value):
            raise ValueError("must be a path starting with / (printable ASCII, no spaces)")
        if "#" in value:
            raise ValueError("must not carry a #fragment")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        parts = _split_url(value, ("http",))
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("must be scheme://host:port only (no path, query or credentials)")
        return f"http://{parts.netloc}"

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        _split_url(value, ("redis", "rediss"))
        return value

    @model_validator(mode="after")
    def _check_ports_differ(self) -> Settings:
        if self.port == self.admin_port:
            raise ValueError("admin_port: must differ from --port")
        return self

    @model_validator(mode="after")
    def _check_sentinel_pair(self) -> Settings:
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise ValueError("redis_sentinels: needs --redis-sentinel-master (and the reverse)")
        if self.redis_sentinels:
            for address in self.redis_sentinels.split(","):
                host, _, port = address.strip().rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"redis_sentinels: {address.strip()!r} is not host:port")
        return self

    # Derived values
    @property
    def upstream_host(self) -> str:
        return urlsplit(self.upstream).hostname or "127.0.0.1"

    @property
    def upstream_port(self) -> int:
        return urlsplit(self.upstream).port or 80

    @property
    def effective_admin_host(self) -> str:
        return self.admin_host or self.host
