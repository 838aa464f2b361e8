"""kubernetes-validate --strict on what the chart renders, for the oldest and newest Kubernetes.

Native sidecars need 1.29, the oldest version the default supports; the classic mode is also
checked against 1.25. Only the Prometheus Operator's ServiceMonitor (a CRD) has no schema and is
excluded by name; any other unknown kind fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import CHART, CI_VALUES, render

kubernetes_validate = pytest.importorskip("kubernetes_validate")

CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
NATIVE_VERSIONS = ["1.29.0", "1.35.0"]
CLASSIC_VERSIONS = ["1.25.0", "1.29.0", "1.35.0"]


def validate_all(docs: list[dict[str, Any]], version: str) -> list[str]:
    """Validate every document strictly; return the kinds that were skipped as CRDs."""
    skipped = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            skipped.append(doc["kind"])
            continue
        # Raises ValidationError on a bad object and SchemaNotFoundError on an unknown kind
        # (the command line only warns about the latter and exits 0).
        kubernetes_validate.validate(doc, version, strict=True)
    return skipped


def scenario(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


@pytest.mark.parametrize("version", NATIVE_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=scenario)
def test_ci_scenarios_validate(values: Path, version: str) -> None:
    docs = render(files=(values,), kube_version=version)
    skipped = validate_all(docs, version)
    assert skipped == (["ServiceMonitor"] if scenario(values) == "all-features" else [])


@pytest.mark.parametrize("version", CLASSIC_VERSIONS)
def test_classic_mode_validates_on_old_clusters(version: str) -> None:
    docs = render(
        files=(
            CHART / "ci" / "classic-sidecar-values.yaml",
            CHART / "ci" / "all-features-values.yaml",
        ),
        values={"proxy": {"nativeSidecar": False}},
        kube_version=version,
    )
    validate_all(docs, version)


def test_native_sidecar_is_invalid_before_1_29() -> None:
    """The check has teeth: the native sidecar field does not exist in 1.27's schema."""
    docs = render(kube_version="1.29.0")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all(docs, "1.27.0")


def test_unknown_kind_fails() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_all([doc], "1.35.0")
