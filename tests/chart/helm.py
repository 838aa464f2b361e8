"""Run the repo's helm on the chart and parse what it renders (shared by chart and inject tests)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamproxy"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
TOOLS_BIN = ROOT / ".tools" / "bin"
RELEASE = "demo"
NAMESPACE = "streamproxy"


def helm_path() -> str | None:
    local = TOOLS_BIN / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


def require_helm() -> str:
    helm = helm_path()
    if helm is None:
        pytest.skip("helm not found in .tools/bin or PATH: run scripts/install-tools.sh")
    return helm


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [require_helm(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def template_args(
    values: dict[str, Any] | None = None,
    files: tuple[Path, ...] = (),
    kube_version: str | None = None,
    show_only: str | None = None,
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in files:
        args += ["-f", str(path)]
    if values:
        # JSON is YAML: a values file keeps types (numbers stay numbers, null stays null).
        args += ["-f", _values_file(json.dumps(values, sort_keys=True))]
    if kube_version:
        args += ["--kube-version", kube_version]
    if show_only:
        args += ["--show-only", show_only]
    return args


@functools.cache
def _values_file(text: str) -> str:
    with tempfile.NamedTemporaryFile(
        "w", prefix="streamproxy-values-", suffix=".json", delete=False
    ) as handle:
        handle.write(text)
    atexit.register(_unlink, handle.name)
    return handle.name


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@functools.lru_cache(maxsize=256)
def _render_cached(args: tuple[str, ...]) -> str:
    return run_helm(*args).stdout


def render_text(**kwargs: Any) -> str:
    return _render_cached(tuple(template_args(**kwargs)))


def render(**kwargs: Any) -> list[dict[str, Any]]:
    """Parsed documents of `helm template` (hooks included), in order."""
    return [doc for doc in yaml.safe_load_all(render_text(**kwargs)) if doc]


def render_error(**kwargs: Any) -> str:
    """stderr of a `helm template` that must fail."""
    proc = run_helm(*template_args(**kwargs), check=False)
    assert proc.returncode != 0, "helm template succeeded but should have failed"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [doc["kind"] for doc in docs]


def workload_pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(docs, "Deployment", f"{RELEASE}-streamproxy")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def sidecar(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = workload_pod_spec(docs)
    found = [
        c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "streamproxy"
    ]
    assert len(found) == 1, f"expected one streamproxy container, found {len(found)}"
    return found[0]


def env_map(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container.get("env", [])}
