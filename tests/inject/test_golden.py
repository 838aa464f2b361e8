"""Injector input -> golden output and report (UPDATE_GOLDEN=1 or --update-golden rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.inject.runner import TESTDATA, case_args, run_inject

CASES = sorted(p for p in TESTDATA.iterdir() if ".input." in p.name)


def case_id(path: Path) -> str:
    return path.name.split(".input.")[0]


def golden_paths(case: Path) -> tuple[Path, Path]:
    name = case_id(case)
    return TESTDATA / f"{name}.golden.yaml", TESTDATA / f"{name}.report.txt"


def test_cases_cover_every_workload_kind() -> None:
    text = "".join(path.read_text() for path in CASES)
    for kind in (
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "List",
    ):
        assert f"kind: {kind}\n" in text or f'"kind": "{kind}"' in text, kind


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_golden(case: Path, update_golden: bool) -> None:
    result = run_inject(*case_args(case), str(case))
    assert result.code == 0, result.stderr
    golden, report = golden_paths(case)
    if update_golden:
        golden.write_text(result.stdout)
        report.write_text(result.stderr)
    assert result.stdout == golden.read_text(), f"{golden.name} differs (UPDATE_GOLDEN=1 rewrites)"
    assert result.stderr == report.read_text(), f"{report.name} differs"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_idempotent(case: Path) -> None:
    """Injecting the injected output again changes nothing."""
    golden, _ = golden_paths(case)
    again = run_inject(*case_args(case), "-", stdin=golden.read_text())
    assert again.code == 0, again.stderr
    assert again.stdout == golden.read_text()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_one_report_line_per_object(case: Path) -> None:
    golden, report = golden_paths(case)
    objects = 0
    for doc in yaml.safe_load_all(golden.read_text()):
        objects += len(doc["items"]) if doc["kind"] == "List" else 1
    assert len(report.read_text().splitlines()) == objects


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_golden_output_validates(case: Path) -> None:
    """What the injector writes is valid Kubernetes: 1.29 and 1.35 (classic also 1.25)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    golden, _ = golden_paths(case)
    versions = ["1.29.0", "1.35.0"] + (["1.25.0"] if "--classic" in case_args(case) else [])
    for doc in yaml.safe_load_all(golden.read_text()):
        for item in doc["items"] if doc["kind"] == "List" else [doc]:
            for version in versions:
                kubernetes_validate.validate(item, version, strict=True)
