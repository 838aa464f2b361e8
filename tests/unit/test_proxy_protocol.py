"""sidecar.proxy.protocol helpers that need no socket (the protocol itself is tested with real
sockets in tests/integration/test_wire_edges.py and test_hostile_http.py)."""

from __future__ import annotations

import pytest

from sidecar.proxy.protocol import origin_form


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/a/b?x=1", b"/a/b?x=1"),
        (b"http://evil.example/abs?q=1", b"/abs?q=1"),
        (b"HTTPS://evil.example", b"/"),
        (b"http://evil.example?q=1", b"/?q=1"),
        (b"//evil/x", b"//evil/x"),
        (b"/@evil/x", b"/@evil/x"),
    ],
)
def test_absolute_form_keeps_only_path_and_query(target: bytes, expected: bytes) -> None:
    """RFC 9112 §3.2.2: a server MUST accept absolute-form; the host it names is never used
    (the sidecar has one upstream), and an origin-form target is kept byte for byte."""
    assert origin_form(target) == expected


class _Transport:
    """Enough of a transport for the protocol: records writes, never blocks."""

    def __init__(self) -> None:
        self.written = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True


def test_a_body_tail_in_one_read_is_not_counted_as_head() -> None:
    """RFC 9112 §9.3: after a body ends the connection carries the next request; the header
    size guard (431, RFC 6585 §5) counts head bytes only, never a body's last read."""
    import asyncio

    from sidecar.counter.base import LocalCounter
    from sidecar.lifecycle import Lifecycle
    from sidecar.metrics import ProxyMetrics
    from sidecar.proxy.context import ProxyContext
    from sidecar.proxy.protocol import ClientProtocol
    from sidecar.settings import Settings
    from sidecar.upstream.connection import UpstreamConnection
    from sidecar.upstream.pool import Pool

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        settings = Settings()
        pool = Pool(settings, loop)
        ctx = ProxyContext(settings, loop, pool, LocalCounter(), ProxyMetrics(), Lifecycle())
        app, app_side = UpstreamConnection(pool), _Transport()
        app.connection_made(app_side)  # type: ignore[arg-type]
        pool._count = 1
        pool.release(app, True)
        client, client_side = ClientProtocol(ctx), _Transport()
        client.connection_made(client_side)  # type: ignore[arg-type]

        client.data_received(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n")
        client.data_received(b"b" * 200_000)  # the whole body tail in one read
        app.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        client.data_received(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        app.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        assert b"431" not in client_side.written
        assert client_side.written.endswith(b"\r\n\r\nnext")
        assert app_side.written.count(b"HTTP/1.1\r\n") == 2
        ctx.live.clear()
        await pool.aclose()

    asyncio.run(scenario())
