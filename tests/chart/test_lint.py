"""`helm lint --strict` over the defaults and every ci/*-values.yaml scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helm import CHART, CI_VALUES, run_helm


def test_ci_scenarios_exist() -> None:
    names = {path.name for path in CI_VALUES}
    assert {
        "default-values.yaml",
        "external-redis-values.yaml",
        "classic-sidecar-values.yaml",
        "all-features-values.yaml",
        "custom-app-values.yaml",
    } <= names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: path.name)
def test_lint_strict(values: Path) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in proc.stdout


def test_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """`helm package` keeps everything the templates read (files/sidecar.yaml included)."""
    run_helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("streamproxy-*.tgz")
    packaged = run_helm("template", "demo", str(archive)).stdout
    assert packaged == run_helm("template", "demo", str(CHART)).stdout
