"""The kind suite's own machinery, checked offline (these run everywhere, unlike the suite):
its kind-config, the values and the Job it deploys, port-forwarding and failure dumps."""

from __future__ import annotations

import http.server
import re
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import render
from tests.e2e import kube as kube_module
from tests.e2e.kube import ROOT, Kube, http_get, port_forward, wait_for
from tests.e2e.test_kind import INJECT_JOB, JOB, NODE_PORT, SET_VALUES

kubernetes_validate = pytest.importorskip("kubernetes_validate")


def test_kind_config_pins_a_native_sidecar_capable_node_image() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["name"] == kube_module.CLUSTER
    for node in config["nodes"]:
        match = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
        assert match, node["image"]
        assert int(match.group(1)) >= 29
    mappings = config["nodes"][0]["extraPortMappings"]
    assert {
        "containerPort": NODE_PORT,
        "hostPort": NODE_PORT,
        "listenAddress": "127.0.0.1",
        "protocol": "TCP",
    } in mappings


@pytest.mark.parametrize("sets", SET_VALUES, ids=lambda sets: ",".join(sets))
def test_suite_values_render_and_validate(sets: tuple[str, ...]) -> None:
    values: dict[str, object] = {"image": {"tag": kube_module.IMAGE_TAG}}
    for item in sets:
        path, _, raw = item.partition("=")
        value: object = int(raw) if raw.isdigit() else {"false": False}.get(raw, raw)
        node = values
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = value
    for doc in render(values=values, kube_version="1.35.0"):
        kubernetes_validate.validate(doc, "1.35.0", strict=True)


def test_injected_job_is_valid() -> None:
    proc = subprocess.run(
        INJECT_JOB, input=JOB, capture_output=True, text=True, check=True, cwd=ROOT, timeout=60
    )
    assert "job/e2e-job injected (native sidecar" in proc.stderr
    job = yaml.safe_load(proc.stdout)
    kubernetes_validate.validate(job, "1.35.0", strict=True)
    spec = job["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["image"] == "streamproxy:e2e"


# A stand-in kubectl: port-forward prints what kubectl prints, anything else echoes its args.


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"counter": 3}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *port-forward*)\n'
        f'  echo "Forwarding from 127.0.0.1:{port} -> 15020"; exec sleep 60;;\n'
        "esac\n"
        'echo "kubectl $*"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(kube_module, "tool", lambda name: str(script))
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def test_port_forward_and_status(fake_kubectl: int) -> None:
    kube = Kube("/nonexistent/kubeconfig", "ns")
    with port_forward(kube, "deployment/demo-streamproxy", 15020) as port:
        assert port == fake_kubectl
        response = wait_for(lambda: http_get(f"http://127.0.0.1:{port}/status"), 5)
    assert response.status == 200
    assert response.json() == {"counter": 3}


def test_failure_dump_has_events_describe_and_logs(fake_kubectl: int) -> None:
    dump = Kube("/nonexistent/kubeconfig", "ns").dump_diagnostics()
    assert "kubectl --namespace ns get events --sort-by=.lastTimestamp" in dump
    assert "kubectl --namespace ns describe pods" in dump
    assert "===== logs" in dump


def test_wait_for_times_out_with_the_last_result() -> None:
    with pytest.raises(AssertionError, match="never"):
        wait_for(lambda: False, 0.3, interval=0.1, what="never")
