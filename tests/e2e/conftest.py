"""kind suite fixtures: one cluster per session, the image built and loaded once, a fresh
namespace per test (restricted Pod Security enforced) that is dumped on failure and always
deleted. E2E_KEEP_CLUSTER=1 (or --keep-cluster with tests.e2e.plugin) reuses and keeps the
cluster for fast reruns."""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.kube import CLUSTER, IMAGE_REPOSITORY, IMAGE_TAG, ROOT, Kube, run, tool


def keep_cluster(config: pytest.Config) -> bool:
    option = bool(config.getoption("--keep-cluster", default=False))
    return option or os.environ.get("E2E_KEEP_CLUSTER", "") not in ("", "0")


def require_e2e() -> bool:
    """STREAMPROXY_REQUIRE_E2E=1 (CI): a skipped kind test is a failure, not a pass."""
    return os.environ.get("STREAMPROXY_REQUIRE_E2E", "") not in ("", "0")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and require_e2e() and item.get_closest_marker("e2e"):
        # CI: a kind test that cannot run is a red run, with the reason it gave.
        report.outcome = "failed"
        report.longrepr = f"STREAMPROXY_REQUIRE_E2E=1 but the test skipped: {report.longrepr}"
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The suite's kind cluster (scripts/e2e-cluster.sh: the pinned kindest/node image where it
    can be had, else the node image built here); yields a kubeconfig path."""
    kind = tool("kind")
    assert kind is not None
    keep = keep_cluster(request.config)
    try:
        if CLUSTER not in run([kind, "get", "clusters"]).stdout.split():
            run([str(ROOT / "scripts" / "e2e-cluster.sh"), "create"], timeout=5400)
        kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
        kubeconfig.write_text(run([kind, "get", "kubeconfig", "--name", CLUSTER]).stdout)
        yield str(kubeconfig)
    finally:
        if not keep:
            run([str(ROOT / "scripts" / "e2e-cluster.sh"), "delete"], check=False, timeout=300)


@pytest.fixture(scope="session")
def image(cluster: str) -> str:
    """Every image the suite runs, built here and loaded into the nodes, never pulled by them:
    streamproxy (tags e2e, dev for the README's steps, the appVersion for manifests/) and the
    chart's Redis (scripts/e2e-images.sh)."""
    if os.environ.get("E2E_IMAGES_LOADED", "") in ("", "0"):  # scripts/e2e.sh loaded them
        run([str(ROOT / "scripts" / "e2e-images.sh")], timeout=2400)
    return f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"


@pytest.fixture
def kube(cluster: str, image: str, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A fresh namespace for one test, with the restricted Pod Security Standard enforced."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    namespace = f"{slug}-{secrets.token_hex(3)}"
    kube = Kube(cluster, namespace)
    kube.kubectl("create", "namespace", namespace)
    kube.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    try:
        yield kube
    finally:
        failed = any(
            getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        if failed:
            print(kube.dump_diagnostics(), file=sys.stderr)
        kube.kubectl(
            "delete",
            "namespace",
            namespace,
            "--wait=true",
            "--timeout=180s",
            check=False,
            timeout=240,
        )


@pytest.fixture
def chart() -> Path:
    return ROOT / "charts" / "streamproxy"
