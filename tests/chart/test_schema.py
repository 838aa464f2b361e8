"""values.schema.json: bad values are rejected before anything renders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.helm import CHART, render, render_error

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"proxy": {"logLevel": "loud"}}, "/proxy/logLevel"),
    ({"proxy": {"port": 0}}, "/proxy/port"),
    ({"proxy": {"adminPort": 70000}}, "/proxy/adminPort"),
    ({"proxy": {"drainSeconds": -1}}, "/proxy/drainSeconds"),
    ({"proxy": {"connectTimeout": 0}}, "/proxy/connectTimeout"),
    ({"proxy": {"nativeSidecar": "yes"}}, "/proxy/nativeSidecar"),
    ({"proxy": {"unknownOption": 1}}, "unknownOption"),
    ({"redis": {"url": "http://not-redis:6379"}}, "/redis/url"),
    ({"redis": {"sentinels": "no-port"}}, "/redis/sentinels"),
    ({"redis": {"server": {"persistence": {"accessModes": ["Sometimes"]}}}}, "accessModes"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"repository": ""}}, "/image/repository"),
    ({"service": {"type": "Ingress"}}, "/service/type"),
    ({"service": {"nodePort": 80}}, "/service/nodePort"),
    ({"app": {"port": "8080"}}, "/app/port"),
    ({"app": {"name": "streamproxy"}}, "/app/name"),
    ({"app": {"name": "Not_A_DNS_Label"}}, "/app/name"),
    ({"replicaCount": -1}, "/replicaCount"),
    ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ({"strategy": {"type": "BlueGreen"}}, "/strategy/type"),
    ({"typoAtTheTop": True}, "typoAtTheTop"),
    ({"proxy": {"maxInFlight": -1}}, "/proxy/maxInFlight"),
    ({"proxy": {"maxRequestBody": "10Mi"}}, "/proxy/maxRequestBody"),
    ({"proxy": {"upstreamHealthPath": "healthz"}}, "/proxy/upstreamHealthPath"),
    ({"proxy": {"upstreamHealthPath": "/a b"}}, "/proxy/upstreamHealthPath"),
    ({"proxy": {"trustedProxies": "everyone"}}, "/proxy/trustedProxies"),
    ({"proxy": {"requestId": "yes"}}, "/proxy/requestId"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects(values: dict[str, Any], where: str) -> None:
    error = render_error(values=values)
    assert "schema" in error
    assert where in error


def test_schema_closes_every_object() -> None:
    """Every object with listed properties is closed, so a typo is an error, not a no-op."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, path
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")

    walk(schema, "$")


@pytest.mark.parametrize(
    "values",
    [
        {"proxy": {"flushInterval": 0.05, "drainSeconds": 2.5}},
        {"redis": {"url": "rediss://user@redis.example:6380/1", "server": {"enabled": False}}},
        {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%", "maxUnavailable": None}},
        {"strategy": {"type": "Recreate"}},
        {"proxy": {"adminHost": None, "logLevel": "warning"}},
        {"proxy": {"maxInFlight": 100, "maxRequestBody": 1048576, "upstreamHealthPath": "/ready"}},
        {"proxy": {"trustedProxies": "none", "requestId": False, "requestIdResponse": True}},
        {"proxy": {"trustedProxies": "10.0.0.0/8, fd00::/8"}},
    ],
)
def test_schema_accepts(values: dict[str, Any]) -> None:
    assert render(values=values)
