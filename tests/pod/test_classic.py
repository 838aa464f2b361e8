"""The chart's switch for older clusters (`proxy.nativeSidecar=false`): the sidecar as a classic
second container. Same pod otherwise; it must become Ready, proxy, and count."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.pod.conftest import SIDECAR, Stack, render, start_stack
from tests.pod.kubepod import is_native_sidecar, request, run_probe


@pytest.fixture(scope="module")
def classic(rendered: list[dict[str, Any]]) -> Iterator[Stack]:
    gen = start_stack(render({"proxy.nativeSidecar": "false"}))
    yield next(gen)
    gen.close()


def test_sidecar_is_a_regular_container(classic: Stack) -> None:
    spec = classic.sidecar_spec()
    assert not is_native_sidecar(spec)
    names = [c["name"] for c in classic.pod.spec.get("containers", [])]
    assert SIDECAR in names
    assert not any(is_native_sidecar(c) for c in classic.pod.spec.get("initContainers", []))


def test_classic_pod_is_ready_proxies_and_counts(classic: Stack) -> None:
    spec = classic.sidecar_spec()
    for kind in ("readinessProbe", "livenessProbe"):
        result = run_probe(classic.pod, spec, spec[kind])
        assert result.ok, f"{kind}: {result.detail}"
    before = classic.redis_count()
    for i in range(10):
        code, _, body = request(classic.proxy_port(), "GET", f"/classic/{i}")
        assert code == 200
        assert json.loads(body)["path"] == f"/classic/{i}"
    deadline = time.monotonic() + 10
    while classic.redis_count() != before + 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert classic.redis_count() == before + 10
