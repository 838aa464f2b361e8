"""One sidecar: the chart's container equals the injector's for the same settings.

Each scenario is written once, as settings; it becomes chart values (by the naming rule
`redis_url` -> `redis.url`, `drain_seconds` -> `proxy.drainSeconds`) and injector options
(`--redis-url`, `--drain-seconds`), and both rendered containers must be equal.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.k8s.sidecar import chart_value
from sidecar.settings import Settings
from tests.chart.helm import render, sidecar
from tests.chart.test_values import NOT_VALUES
from tests.inject.runner import run_inject

POD = """apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: app, image: example/app:1}]
"""

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {"settings": {}},
    "in-chart-redis": {
        "settings": {"redis_url": "redis://demo-streamproxy-redis:6379/0"},
        "in_chart_redis": True,
    },
    "classic": {"settings": {"drain_seconds": 10.0}, "native": False},
    "external-redis-secret": {
        "settings": {
            "redis_url": "rediss://r.example:6380/2",
            "redis_username": "sp",
            "redis_ca_file": "/ca/ca.crt",
            "counter_key": "shop:requests",
        },
        "secret": ("redis-auth", "password"),
    },
    "every-setting": {
        "settings": {
            "upstream_port": 3000,
            "host": "::",
            "port": 16000,
            "admin_host": "0.0.0.0",
            "admin_port": 16020,
            "connect_timeout": 2.5,
            "read_timeout": 1e6,
            "keepalive_timeout": 30.0,
            "upstream_pool_size": 64,
            "upstream_keepalive": 0.5,
            "pool_timeout": 1.5,
            "send_timeout": 20.0,
            "backlog": 8192,
            "health_interval": 0.25,
            "redis_url": "redis://r:6379",
            "redis_sentinels": "s1:26379,s2:26379",
            "redis_sentinel_master": "main",
            "redis_sentinel_auth": True,
            "redis_cluster": True,
            "flush_interval": 0.05,
            "drain_seconds": 0.0,
            "shutdown_timeout": 12.5,
            "log_level": "debug",
            "access_log": True,
            "request_id": False,
            "request_id_response": True,
            "trusted_proxies": "10.42.0.0/16,fd00::/8",
            "max_in_flight": 500,
            "max_request_body": 10485760,
            "upstream_health_path": "/healthz?full=1",
            "drain_token": "d-r-a-i-n",
        },
        "native": False,
        "image": ("reg.example/streamproxy", "9.9.9"),
        "pull_policy": "Always",
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
    },
}


def chart_values(scenario: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {"proxy": {}, "redis": {"server": {"enabled": False}}, "app": {}}
    for field, value in scenario["settings"].items():
        if field == "upstream_port":
            values["app"]["port"] = value
            continue
        if field == "redis_url" and scenario.get("in_chart_redis"):
            values["redis"]["server"]["enabled"] = True  # the chart makes this URL itself
            continue
        group, key = chart_value(field).split(".")
        values[group][key] = value
    values["proxy"]["nativeSidecar"] = scenario.get("native", True)
    if "secret" in scenario:
        name, key = scenario["secret"]
        values["redis"] |= {"existingSecret": name, "existingSecretPasswordKey": key}
    if "image" in scenario:
        values["image"] = {"repository": scenario["image"][0], "tag": scenario["image"][1]}
    if "pull_policy" in scenario:
        values.setdefault("image", {})["pullPolicy"] = scenario["pull_policy"]
    if "resources" in scenario:
        values["proxy"]["resources"] = scenario["resources"]
    return values


def injector_args(scenario: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for field, value in scenario["settings"].items():
        flag = "--" + field.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            args += [flag, str(value)]
    if not scenario.get("native", True):
        args.append("--classic")
    if "secret" in scenario:
        args += ["--redis-password-secret", ":".join(scenario["secret"])]
    if "image" in scenario:
        args += ["--image", ":".join(scenario["image"])]
    if "pull_policy" in scenario:
        args += ["--image-pull-policy", scenario["pull_policy"]]
    if "resources" in scenario:
        for kind, quantities in scenario["resources"].items():
            for resource, quantity in quantities.items():
                args += [f"--{resource}-{kind.removesuffix('s')}", quantity]
    return args


def injected_container(args: list[str]) -> dict[str, Any]:
    result = run_inject(*args, "-", stdin=POD)
    assert result.code == 0, result.stderr
    spec = yaml.safe_load(result.stdout)["spec"]
    found = [
        c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "streamproxy"
    ]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("name", SCENARIOS)
def test_chart_and_injector_render_the_same_sidecar(name: str) -> None:
    scenario = SCENARIOS[name]
    from_chart = sidecar(render(values=chart_values(scenario)))
    from_injector = injected_container(injector_args(scenario))
    assert from_injector == from_chart


def test_every_setting_scenario_covers_every_setting() -> None:
    covered = set(SCENARIOS["every-setting"]["settings"]) | {"upstream"}
    assert covered | NOT_VALUES | {"counter_key", "redis_username", "redis_ca_file"} >= set(
        Settings.model_fields
    ), "a new setting: add it to the chart (values, schema, _sidecar.tpl) and to this scenario"
