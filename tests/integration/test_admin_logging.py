"""`GET /logging` and `POST /logging?level=...` on a real admin server (uvicorn, real sockets).

The loopback rule is tested with a real non-loopback peer: the admin server listens on
0.0.0.0 (as in a pod) and the client connects from this machine's own non-loopback address,
so the server sees that address as the peer, exactly as it would see a pod on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import uvicorn

from sidecar.admin import AdminState, create_admin_app
from sidecar.counter.base import LocalCounter
from sidecar.health import UpstreamHealth
from sidecar.lifecycle import Lifecycle
from sidecar.logs import current_level
from sidecar.metrics import ProxyMetrics, make_registry
from sidecar.settings import Settings
from tests.proxy_fixtures import Proxy, Upstream, free_port


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (eth0's, docker0's, ...)."""
    candidates: list[str] = []
    if shutil.which("ip"):
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
        ).stdout
        candidates += re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)
    with contextlib.suppress(OSError):
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    for candidate in candidates:
        if ipaddress.ip_address(candidate).is_loopback:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((candidate, 0))
            except OSError:
                continue
        return candidate
    return None


@pytest.fixture
def restore_logging() -> Iterator[None]:
    ours = logging.getLogger("streamproxy")
    level = ours.level
    yield
    ours.setLevel(level)


@pytest.fixture
async def admin_server(restore_logging: None) -> AsyncIterator[int]:
    """The admin app on 0.0.0.0:<port> in a real uvicorn server; yields the port."""
    settings = Settings(upstream=f"http://127.0.0.1:{free_port()}")
    counter = LocalCounter()
    registry = make_registry(ProxyMetrics(), counter, lambda: True, lambda: True)
    state = AdminState(counter, UpstreamHealth(settings), Lifecycle(), registry)
    port = free_port()
    config = uvicorn.Config(
        create_admin_app(state), host="0.0.0.0", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "the admin server did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def client(source: str) -> httpx.AsyncClient:
    """A client whose connections leave from `source` (the peer the server sees)."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=source), timeout=5)


async def test_get_shows_the_level_and_post_from_loopback_changes_it(admin_server: int) -> None:
    logging.getLogger("streamproxy").setLevel(logging.INFO)
    url = f"http://127.0.0.1:{admin_server}/logging"
    async with client("127.0.0.1") as http:
        response = await http.get(url)
        assert response.status_code == 200
        assert response.json()["level"] == "info"
        assert response.json()["levels"] == ["critical", "error", "warning", "info", "debug"]

        response = await http.post(url, params={"level": "debug"})
        assert response.status_code == 200, response.text
        assert response.json() == {"level": "debug", "previous": "info"}
        assert current_level() == "debug"
        assert logging.getLogger("streamproxy.counter").isEnabledFor(logging.DEBUG)
        assert (await http.get(url)).json()["level"] == "debug"

        response = await http.post(url, params={"level": "WARNING"})
        assert response.json() == {"level": "warning", "previous": "debug"}


@pytest.mark.parametrize("query", [{"level": "loud"}, {"level": ""}, {}])
async def test_post_with_a_bad_level_is_400_and_changes_nothing(
    admin_server: int, query: dict[str, str]
) -> None:
    before = current_level()
    async with client("127.0.0.1") as http:
        response = await http.post(f"http://127.0.0.1:{admin_server}/logging", params=query)
    assert response.status_code == 400
    assert "level" in response.json()["error"]
    assert current_level() == before


async def test_post_from_a_non_loopback_address_is_refused(admin_server: int) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    before = current_level()
    url = f"http://{address}:{admin_server}/logging"
    async with client(address) as http:
        response = await http.post(url, params={"level": "debug"})
        assert response.status_code == 403
        assert "loopback only" in response.text
        assert current_level() == before
        # Reading the level is harmless, like /status: allowed from anywhere.
        assert (await http.get(url)).status_code == 200
    # The same server, the same request from loopback: allowed.
    async with client("127.0.0.1") as http:
        response = await http.post(
            f"http://127.0.0.1:{admin_server}/logging", params={"level": "debug"}
        )
    assert response.status_code == 200


def test_logging_endpoint_on_a_running_proxy(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    proxy = proxy_factory(upstream.url, "--log-level", "warning")
    assert httpx.get(proxy.admin_url + "/logging").json()["level"] == "warning"
    response = httpx.post(proxy.admin_url + "/logging", params={"level": "debug"})
    assert response.json() == {"level": "debug", "previous": "warning"}
    assert httpx.get(proxy.admin_url + "/logging").json()["level"] == "debug"
    assert '"msg":"log level changed"' in proxy.log()
