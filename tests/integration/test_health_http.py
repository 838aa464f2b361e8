"""HTTP readiness (`--upstream-health-path`): real apps on loopback answering 200, 503, nothing.

In process: `UpstreamHealth.check_once` against small asyncio servers, one per behaviour. Then
end to end: a proxy process whose /status follows what the test app answers on that path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from sidecar.health import UpstreamHealth, health_request, status_of
from sidecar.settings import Settings
from tests.proxy_fixtures import Proxy, Upstream, free_port, wait_until

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def app(handler: Handler) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback server running `handler` per connection; yields its port and the requests."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, requests
    finally:
        server.close()
        await server.wait_closed()


def answering(head: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()

    return handler


async def never_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    return None


def health(port: int, path: str | None = "/healthz", **extra: Any) -> UpstreamHealth:
    settings = Settings(upstream=f"http://127.0.0.1:{port}", upstream_health_path=path, **extra)
    return UpstreamHealth(settings)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_200_is_up_and_the_request_is_a_plain_get_of_the_path() -> None:
    async with app(answering(OK)) as (port, requests):
        assert await health(port, "/healthz?deep=1").check_once() is True
    request = requests[0]
    assert request.startswith(b"GET /healthz?deep=1 HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{port}\r\n".encode() in request
    assert b"\r\nConnection: close\r\n" in request


async def test_503_is_down() -> None:
    async with app(answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")) as (port, _):
        assert await health(port).check_once() is False


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",  # the app serves HTTP
        b"HTTP/1.1 401 Unauthorized\r\n\r\n",
        b"HTTP/1.0 301 Moved\r\nLocation: /x\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 499\r\n\r\n",  # no reason phrase
    ],
)
async def test_any_status_below_500_is_up(head: bytes) -> None:
    async with app(answering(head)) as (port, _):
        assert await health(port).check_once() is True


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
        b"HTTP/1.1 504 Gateway Timeout\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",  # something that is not HTTP
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n",
        b"HTTP/1.1 " + b"9" * 2000 + b"\r\n",
    ],
)
async def test_5xx_and_non_http_answers_are_down(head: bytes) -> None:
    async with app(answering(head)) as (port, _):
        assert await health(port).check_once() is False


async def test_an_app_that_accepts_but_never_answers_is_down_within_the_timeout() -> None:
    async with app(never_answering) as (port, _):
        check = health(port, connect_timeout=0.3)
        started = time.monotonic()
        assert await check.check_once() is False
        assert time.monotonic() - started < 1.0


async def test_an_app_that_closes_without_answering_is_down() -> None:
    async with app(closing) as (port, _):
        assert await health(port).check_once() is False


async def test_a_refused_connection_is_down() -> None:
    assert await health(free_port()).check_once() is False


async def test_without_a_path_the_tcp_check_is_kept() -> None:
    # An app that accepts and never answers is "up" for the TCP check: it accepted.
    async with app(never_answering) as (port, requests):
        assert await health(port, None).check_once() is True
    assert requests == []  # nothing was sent


async def test_the_background_check_follows_the_app() -> None:
    answer = {"head": b"HTTP/1.1 503 Not Ready\r\n\r\n"}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer["head"])
        await writer.drain()

    async with app(handler) as (port, _):
        check = health(port, health_interval=0.05)
        check.start()
        try:
            await check.wait_first_check(within=2)
            assert check.up is False
            answer["head"] = OK
            for _ in range(100):
                if check.up:
                    break
                await asyncio.sleep(0.02)
            assert check.up is True
        finally:
            await check.stop()


def test_health_request_brackets_ipv6_hosts() -> None:
    assert b"\r\nHost: [::1]:8080\r\n" in health_request("/h", "::1", 8080)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/1.0 503 Service Unavailable\r\n", 503),
        (b"HTTP/1.1 204\r\n", 204),
        (b"HTTP/1.1 204", 204),
        (b"HTTP/1.1 20 OK\r\n", None),
        (b"HTTP/1.1 2000\r\n", None),
        (b"HTTP/1.1 099 Low\r\n", None),
        (b"HTTP/1.1 600 High\r\n", None),
        (b"HTTP/3 200\r\n", None),
        (b"", None),
    ],
)
def test_status_of(line: bytes, status: int | None) -> None:
    assert status_of(line) == status


# End to end: the proxy's /status follows the app's health path.


@pytest.mark.parametrize(
    ("path", "ready"),
    [("/status/200", True), ("/status/404", True), ("/status/503", False), ("/hang", False)],
)
def test_proxy_readiness_follows_the_health_path(
    upstream: Upstream, proxy_factory: Callable[..., Proxy], path: str, ready: bool
) -> None:
    proxy = proxy_factory(upstream.url, "--upstream-health-path", path)
    expected = 200 if ready else 503
    wait_until(lambda: proxy.status().status_code == expected, 5, f"/status {expected}")
    time.sleep(1.5)  # a few more checks: the verdict holds
    response = proxy.status()
    assert response.status_code == expected
    assert response.json()["upstream"] == ("up" if ready else "down")
    assert httpx.get(proxy.admin_url + "/readyz").status_code == expected
