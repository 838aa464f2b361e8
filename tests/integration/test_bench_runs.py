"""`python -m bench` still runs end to end (a smoke run: it measures, this asserts no timings).

The benchmark is not part of CI's verdict on speed, but a bench that silently broke (a target
that no longer starts, a scenario that lost its numbers) would only be found the next time
someone needs it. One short run of the small-GET scenarios (one request header and twelve)
against the ceiling, the uvicorn floor and streamproxy, on the Python upstream (nginx is
optional for the bench).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "uvicorn-floor", "streamproxy-h1")

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("wrk", "curl", "taskset")),
    reason="the bench needs wrk, curl and taskset (scripts/test.sh installs them)",
)


def test_bench_measures_every_target(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--quick", "--no-nginx", "--targets", ",".join(TARGETS),
            "--scenarios", "small64,small1,headers64", "--repeats", "1", "--duration", "1",
            "--out", str(tmp_path)]  # fmt: skip
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    by_name = {target["target"]: target for target in report["targets"]}
    assert set(by_name) == set(TARGETS)
    for name, target in by_name.items():
        assert "error" not in target, f"{name}: {target.get('error')}"
        small64 = target["small64"]["runs"][0]
        assert small64["rps"] > 0 and small64["errors"] == 0, (name, small64)
        assert target["small1"]["runs"][0]["p50_ms"] > 0, name
        headers64 = target["headers64"]["runs"][0]
        assert headers64["rps"] > 0 and headers64["errors"] == 0, (name, headers64)
    proxy = by_name["streamproxy-h1"]
    assert proxy["idle_rss_mib"] > 0
    assert proxy["small64"]["runs"][0]["cpu_us_per_req"] > 0
    assert proxy["headers64"]["runs"][0]["cpu_us_per_req"] > 0
    # Counting was on and reached Redis: some commands, far fewer than requests.
    assert 0 < proxy["redis_per_1000"] < 1000
    assert not math.isnan(proxy["ready_s"]["median"])
    assert "| streamproxy-h1 |" in (tmp_path / "latest.md").read_text()
