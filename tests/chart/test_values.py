"""values.yaml: every key documented, one name per setting, schema and docs in step."""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import pytest
import yaml

from sidecar import __version__
from sidecar.k8s.sidecar import chart_file, chart_value
from sidecar.settings import Settings
from tests.chart.helm import CHART
from tests.chart.values_doc import BEGIN, DOC, END, VALUES, documented_keys, leaves, table

# Settings the chart sets another way: upstream from app.port, the pod name from the Downward
# API, the password from redis.existingSecret.
NOT_VALUES = {"upstream", "pod_name", "redis_password"}
# Where the chart's default deliberately differs from the binary's.
CHART_DEFAULTS = {"drain_seconds": 5, "redis_url": ""}


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def chart_key(field: str) -> str:
    """`redis_url` -> `redis.url`, `drain_seconds` -> `proxy.drainSeconds`."""
    key = chart_value(field)
    assert key in (f"redis.{camel(field[6:])}", f"proxy.{camel(field)}"), key
    return key


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def test_every_value_is_documented() -> None:
    documented = documented_keys(VALUES.read_text())
    for leaf in leaves(values()):
        parts = leaf.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        assert ancestors & documented.keys(), f"{leaf} has no '# --' comment"
    assert all(documented.values()), "empty '# --' description"


@pytest.mark.parametrize("field", [f for f in Settings.model_fields if f not in NOT_VALUES])
def test_every_setting_is_a_chart_value_of_the_same_name(field: str) -> None:
    group, key = chart_key(field).split(".")
    chart_values = values()
    assert key in chart_values[group], f"Settings.{field} has no chart value {group}.{key}"
    default = Settings.model_fields[field].default
    expected = CHART_DEFAULTS.get(field, default)
    assert chart_values[group][key] == expected
    comment = documented_keys(VALUES.read_text())[f"{group}.{key}"]
    assert f"`STREAMPROXY_{field.upper()}`" in comment


def test_schema_enums_match_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    proxy = schema["properties"]["proxy"]["properties"]
    for field, key in (("log_level", "logLevel"),):
        annotation = Settings.model_fields[field].annotation
        assert proxy[key]["enum"] == list(get_args(annotation)), field


def test_schema_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for leaf in leaves(values()):
        node = schema
        for part in leaf.split("."):
            if "properties" not in node:
                break  # a free-form object (resources, securityContext, ...)
            assert part in node["properties"], f"{leaf} is not in values.schema.json"
            node = node["properties"][part]


def test_sidecar_definition_file_is_current() -> None:
    """files/sidecar.yaml is what sidecar/k8s/sidecar.py defines (`make manifests` writes it)."""
    current = (CHART / "files" / "sidecar.yaml").read_text()
    assert current == chart_file(), "charts/streamproxy/files/sidecar.yaml is stale: make manifests"


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def test_docs_values_table_is_current() -> None:
    doc = DOC.read_text()
    assert BEGIN in doc and END in doc
    current = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == table().strip(), (
        "docs/kubernetes.md is stale: run .venv/bin/python -m tests.chart.values_doc --write"
    )


def test_values_table_lists_key_settings() -> None:
    rows = table()
    for key in ("redis.url", "proxy.drainSeconds", "proxy.nativeSidecar", "app.image.repository"):
        assert re.search(rf"^\| `{re.escape(key)}` \|", rows, re.M), key
