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
import yaml

from tests.e2e.kube import CLUSTER, IMAGE_REPOSITORY, IMAGE_TAG, ROOT, Kube, run, tool

REDIS_IMAGE_VALUES = yaml.safe_load((ROOT / "charts/streamproxy/values.yaml").read_text())
CHART_APP_VERSION = yaml.safe_load((ROOT / "charts/streamproxy/Chart.yaml").read_text())[
    "appVersion"
]


def keep_cluster(config: pytest.Config) -> bool:
    option = bool(config.getoption("--keep-cluster", default=False))
    return option or os.environ.get("E2E_KEEP_CLUSTER", "") not in ("", "0")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The kind cluster from kind-config.yaml; yields a kubeconfig path."""
    kind = tool("kind")
    assert kind is not None
    keep = keep_cluster(request.config)
    try:
        if CLUSTER not in run([kind, "get", "clusters"]).stdout.split():
            run(
                [
                    kind,
                    "create",
                    "cluster",
                    "--config",
                    str(ROOT / "kind-config.yaml"),
                    "--wait",
                    "180s",
                ],
                timeout=900,
            )
        kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
        kubeconfig.write_text(run([kind, "get", "kubeconfig", "--name", CLUSTER]).stdout)
        yield str(kubeconfig)
    finally:
        if not keep:
            run([kind, "delete", "cluster", "--name", CLUSTER], check=False, timeout=300)


@pytest.fixture(scope="session")
def image(cluster: str) -> str:
    """Build the image (tagged e2e and the chart's appVersion, for manifests/) and load it."""
    docker, kind = tool("docker"), tool("kind")
    assert docker is not None and kind is not None
    tags = [f"{IMAGE_REPOSITORY}:{IMAGE_TAG}", f"{IMAGE_REPOSITORY}:{CHART_APP_VERSION}"]
    build = [docker, "build", str(ROOT)]
    for tag in tags:
        build += ["-t", tag]
    run(build, env={"DOCKER_BUILDKIT": "1"}, timeout=1200)
    run([kind, "load", "docker-image", *tags, "--name", CLUSTER], timeout=600)
    # Preload the in-chart Redis too when the host can get it; else the nodes pull it.
    redis = REDIS_IMAGE_VALUES["redis"]["server"]["image"]
    redis_image = f"{redis['repository']}:{redis['tag']}"
    if run([docker, "image", "inspect", redis_image], check=False).returncode != 0:
        run([docker, "pull", redis_image], check=False, timeout=600)
    run([kind, "load", "docker-image", redis_image, "--name", CLUSTER], check=False, timeout=600)
    return tags[0]


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
