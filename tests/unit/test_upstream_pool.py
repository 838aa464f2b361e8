"""sidecar.upstream: the Keep-Alive hint and the idle limit it sets (no sockets needed)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.settings import Settings
from sidecar.upstream.connection import UpstreamConnection, _keepalive_hint
from sidecar.upstream.pool import Pool


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"timeout=5", 5.0), (b"timeout=5, max=100", 5.0), (b"max=10,Timeout=2", 2.0),
     (b"max=10", None), (b"timeout=soon", None)],
)  # fmt: skip
def test_keep_alive_timeout_parameter(value: bytes, seconds: float | None) -> None:
    """The Keep-Alive header's `timeout` parameter (RFC 2068 §19.7.1.1), case-insensitive."""
    assert _keepalive_hint(value) == seconds


@pytest.mark.parametrize(("hint", "limit"), [(None, 4.0), (10.0, 4.0), (3.0, 2.0), (1.0, 0.5)])
def test_idle_limit_stays_under_the_apps_own(hint: float | None, limit: float) -> None:
    """RFC 9112 §9.3.1: the app may close an idle connection at any time; told when, the
    pool retires it a margin before (never later than --upstream-keepalive)."""
    loop = asyncio.new_event_loop()
    try:
        pool = Pool(Settings(upstream_keepalive=4.0), loop)
        conn = UpstreamConnection(pool)
        conn.keepalive_hint = hint
        assert pool._idle_limit(conn) == limit
    finally:
        loop.close()
