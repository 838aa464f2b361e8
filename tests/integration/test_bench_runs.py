"""`python -m bench` still runs end to end (a smoke run: it measures, this asserts no timings).

The benchmark is not part of CI's verdict on speed, but a bench that silently broke (a target
that no longer starts, a scenario that lost its numbers) would only be found the next time
someone needs it. One short run of every scenario, scaled down (100 concurrent clients instead
of 2,000, 200 idle connections instead of 10,000, 50 WebSockets instead of 1,000, 8 MiB
transfers), against every target: the ceiling, the python floor, streamproxy, the aiohttp peer
and nginx when it is installed (else the Python upstream serves).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NGINX = bool(shutil.which("nginx"))
TARGETS = ("direct", "python-floor", "streamproxy", "aiohttp-peer", *(("nginx",) * NGINX))
PROXIES = [name for name in TARGETS if name != "direct"]
IDLE, WEBSOCKETS, MANY = 200, 50, 100
Report = dict[str, dict[str, Any]]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("wrk", "curl", "taskset")),
    reason="the bench needs wrk, curl and taskset (scripts/test.sh installs them)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    out = tmp_path_factory.mktemp("bench")
    argv = [sys.executable, "-m", "bench", "--quick", "--targets", ",".join(TARGETS),
            "--scenarios", "small64,small1,headers64,download,upload,c2000,idle10k,ws1000",
            "--repeats", "1", "--duration", "1", "--big-mib", "8", "--many-conns", str(MANY),
            "--idle-conns", str(IDLE), "--ws-clients", str(WEBSOCKETS),
            "--out", str(out)]  # fmt: skip
    if not NGINX:
        argv.append("--no-nginx")
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads((out / "latest.json").read_text())
    markdown = (out / "latest.md").read_text()
    for name in TARGETS:
        assert f"| {name} |" in markdown
    assert "Issue 11's targets" in markdown
    return {target["target"]: target for target in data["targets"]}


def test_every_target_starts(report: Report) -> None:
    assert set(report) == set(TARGETS)
    for name, target in report.items():
        assert "error" not in target, f"{name}: {target.get('error')}"


@pytest.mark.parametrize("name", TARGETS)
def test_small_gets_and_transfers(report: Report, name: str) -> None:
    target = report[name]
    for scenario in ("small64", "headers64", "c2000"):
        run = target[scenario]["runs"][0]
        assert run["rps"] > 0 and run["errors"] == 0, (scenario, run)
    assert target["small1"]["runs"][0]["p50_ms"] > 0
    for scenario in ("download", "upload"):
        assert target[scenario]["runs"][0]["mb_s"] > 0, (scenario, target[scenario])
    if name != "direct":
        assert target["idle_rss_mib"] > 0
        assert target["small64"]["runs"][0]["cpu_us_per_req"] > 0
        assert target["c2000"]["runs"][0]["peak_rss_mib"] > 0
        assert math.isfinite(target["us_per_header"])


@pytest.mark.parametrize("name", PROXIES)
def test_idle_connections(report: Report, name: str) -> None:
    idle = report[name]["idle10k"]
    assert idle["opened"] == IDLE and idle["failed"] == 0, idle
    assert math.isfinite(idle["kib_per_conn"])


@pytest.mark.parametrize("name", [n for n in TARGETS if n != "aiohttp-peer"])
def test_websockets_echo(report: Report, name: str) -> None:
    ws = report[name]["ws1000"]
    assert ws["concurrent_open"] == ws["echoed"] == WEBSOCKETS, ws


def test_streamproxy_counts(report: Report) -> None:
    proxy = report["streamproxy"]
    # Counting was on and reached Redis: some commands, far fewer than requests.
    assert 0 < proxy["redis_per_1000"] < 1000
    assert not math.isnan(proxy["ready_s"]["median"])
