from __future__ import annotations

import httpx

from tests.proxy_fixtures import Proxy


def test_get_reaches_the_app(proxy: Proxy) -> None:
    response = httpx.get(proxy.url + "/hello?x=1")
    assert response.status_code == 200
    assert response.json()["raw_path"] == "/hello"
