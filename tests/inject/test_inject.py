"""`streamproxy inject`: inputs, options, errors, and validity of what it writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.k8s.sidecar import go_number
from tests.inject.runner import TESTDATA, run_inject

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: app
      image: example/app:1
"""


def containers(output: str) -> list[list[str]]:
    names = []
    for doc in yaml.safe_load_all(output):
        spec = doc["spec"]
        names.append([c["name"] for c in spec.get("initContainers", []) + spec["containers"]])
    return names


def test_stdin_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POD.format(name="a"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text(POD.format(name="b"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    single = tmp_path / "c.yaml"
    single.write_text(POD.format(name="c"))
    result = run_inject(str(tmp_path / "sub"), "-", str(single), stdin=POD.format(name="d"))
    assert result.code == 0, result.stderr
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(result.stdout)]
    assert names == ["b", "d", "c"]
    assert result.stderr.splitlines() == [
        f"pod/{n} injected (native sidecar; terminationGracePeriodSeconds 30 -> 45)" for n in names
    ]
    whole_dir = run_inject(str(tmp_path))
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(whole_dir.stdout)] == ["a", "c", "b"]


def test_native_and_classic_placement() -> None:
    native = run_inject("-", stdin=POD.format(name="p"))
    doc = yaml.safe_load(native.stdout)
    assert [c["name"] for c in doc["spec"]["initContainers"]] == ["streamproxy"]
    assert doc["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert list(doc["spec"]).index("initContainers") < list(doc["spec"]).index("containers")
    classic = run_inject("--classic", "-", stdin=native.stdout)
    doc = yaml.safe_load(classic.stdout)
    assert "initContainers" not in doc["spec"]
    assert [c["name"] for c in doc["spec"]["containers"]] == ["app", "streamproxy"]
    assert "restartPolicy" not in doc["spec"]["containers"][1]
    back = run_inject("-", stdin=classic.stdout)
    assert back.stdout == native.stdout


APP_WITH_HOOK = """apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  containers:
    - name: app
      image: example/app:1
    - name: own-hook
      image: example/app:1
      lifecycle:
        preStop:
          exec:
            command: ["/bin/flush"]
"""


def test_app_containers_get_the_drain_hook_and_keep_their_own() -> None:
    """A native sidecar hears of the pod's end only once the app has exited: the app's preStop
    hook (the kubelet's httpGet of /drain) is what moves keep-alive clients in time."""
    result = run_inject(
        "--drain-token", "tok", "--pre-stop-seconds", "7.5", "-", stdin=APP_WITH_HOOK
    )
    assert result.code == 0, result.stderr
    spec = yaml.safe_load(result.stdout)["spec"]
    app, own = spec["containers"]
    assert app["lifecycle"]["preStop"] == {
        "httpGet": {
            "path": "/drain?seconds=7.5",
            "port": 15020,
            "httpHeaders": [{"name": "X-Streamproxy-Drain-Token", "value": "tok"}],
        }
    }
    assert own["lifecycle"]["preStop"] == {"exec": {"command": ["/bin/flush"]}}
    assert "container own-hook keeps its own preStop hook (no /drain)" in result.stderr
    # The hook's seconds count in the grace period: 7.5 + drain 5 + shutdown 30 + 5.
    assert spec["terminationGracePeriodSeconds"] == 48
    # Re-injected with other seconds: our hook is replaced, theirs still kept.
    again = run_inject("--pre-stop-seconds", "2", "-", stdin=result.stdout)
    app, own = yaml.safe_load(again.stdout)["spec"]["containers"]
    assert app["lifecycle"]["preStop"] == {"httpGet": {"path": "/drain?seconds=2", "port": 15020}}
    assert own["lifecycle"]["preStop"] == {"exec": {"command": ["/bin/flush"]}}


def test_no_drain_hook_with_zero_seconds() -> None:
    result = run_inject("--pre-stop-seconds", "0", "-", stdin=POD.format(name="p"))
    assert "lifecycle" not in yaml.safe_load(result.stdout)["spec"]["containers"][0]


def test_environment_does_not_leak_into_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    clean = run_inject("-", stdin=POD.format(name="p"))
    monkeypatch.setenv("STREAMPROXY_LOG_LEVEL", "debug")
    monkeypatch.setenv("POD_NAME", "my-laptop")
    assert run_inject("-", stdin=POD.format(name="p")).stdout == clean.stdout


def test_options_reach_the_container() -> None:
    result = run_inject(
        "--upstream-port",
        "3000",
        "--redis-url",
        "redis://r:6379/0",
        "--redis-password-secret",
        "redis:pw",
        "--read-timeout",
        "2.5",
        "--access-log",
        "--image",
        "reg.example/sp:1",
        "--image-pull-policy",
        "Always",
        "--memory-limit",
        "",
        "-",
        stdin=POD.format(name="p"),
    )
    assert result.code == 0, result.stderr
    sidecar = yaml.safe_load(result.stdout)["spec"]["initContainers"][0]
    env = {v["name"]: v.get("value", v.get("valueFrom")) for v in sidecar["env"]}
    assert env["STREAMPROXY_UPSTREAM"] == "http://127.0.0.1:3000"
    assert env["STREAMPROXY_REDIS_URL"] == "redis://r:6379/0"
    assert env["STREAMPROXY_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "redis", "key": "pw"}}
    assert env["STREAMPROXY_READ_TIMEOUT"] == "2.5"
    assert env["STREAMPROXY_ACCESS_LOG"] == "true"
    assert sidecar["image"] == "reg.example/sp:1"
    assert sidecar["imagePullPolicy"] == "Always"
    assert sidecar["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}}


def test_guard_rail_options_reach_the_container() -> None:
    result = run_inject(
        "--no-request-id",
        "--trusted-proxies",
        "none",
        "--max-in-flight",
        "64",
        "--max-request-body",
        "10485760",
        "--upstream-health-path",
        "/healthz",
        "-",
        stdin=POD.format(name="p"),
    )
    assert result.code == 0, result.stderr
    sidecar = yaml.safe_load(result.stdout)["spec"]["initContainers"][0]
    env = {v["name"]: v.get("value") for v in sidecar["env"]}
    assert env["STREAMPROXY_REQUEST_ID"] == "false"
    assert env["STREAMPROXY_REQUEST_ID_RESPONSE"] == "false"
    assert env["STREAMPROXY_TRUSTED_PROXIES"] == "none"
    assert env["STREAMPROXY_MAX_IN_FLIGHT"] == "64"
    assert env["STREAMPROXY_MAX_REQUEST_BODY"] == "10485760"
    assert env["STREAMPROXY_UPSTREAM_HEALTH_PATH"] == "/healthz"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-level", "loud"], "--log-level"),
        (["--port", "70000"], "--port (STREAMPROXY_PORT)"),
        (["--drain-seconds", "-1"], "--drain-seconds"),
        (["--upstream", "ftp://x"], "--upstream"),
        (["--upstream", "http://x:1", "--upstream-port", "2"], "--upstream-port"),
        (["--redis-password", "s3cret"], "--redis-password-secret NAME:KEY"),
        (["--redis-pass", "s3cret"], "unrecognized arguments"),
        (["--redis-password-secret", "nokey"], "NAME:KEY"),
        (["--bogus"], "unrecognized arguments"),
        (["--max-in-flight", "-1"], "--max-in-flight (STREAMPROXY_MAX_IN_FLIGHT)"),
        (["--max-request-body", "10MB"], "--max-request-body"),
        (["--trusted-proxies", "10.0.0.1/8"], "--trusted-proxies"),
        (["--upstream-health-path", "healthz"], "--upstream-health-path"),
        (["--pre-stop-seconds", "-1"], "--pre-stop-seconds"),
        (["--pre-stop-seconds", "soon"], "--pre-stop-seconds"),
    ],
)
def test_bad_options_exit_2(argv: list[str], message: str) -> None:
    result = run_inject(*argv, "-", stdin=POD.format(name="p"))
    assert result.code == 2
    assert message in result.stderr
    assert len(result.stderr.splitlines()) <= 3
    assert "s3cret" not in result.stderr or "unrecognized" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [unclosed", "<stdin>: not YAML"),
        ("- just\n- a list\n", "<stdin>: not a Kubernetes object"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n", "has no pod spec"),
    ],
)
def test_bad_input_exits_1(text: str, message: str) -> None:
    result = run_inject("-", stdin=text)
    assert result.code == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_missing_file_exits_1(tmp_path: Path) -> None:
    result = run_inject(str(tmp_path / "nope.yaml"))
    assert result.code == 1
    assert "nope.yaml" in result.stderr


def test_empty_documents_are_dropped() -> None:
    result = run_inject("-", stdin="---\n---\n" + POD.format(name="p") + "---\n")
    assert containers(result.stdout) == [["streamproxy", "app"]]


def test_cli_dispatches_inject() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "inject", str(TESTDATA / "json.input.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (TESTDATA / "json.golden.yaml").read_text()


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        (5.0, "5"),
        (0.2, "0.2"),
        (60.0, "60"),
        (2.5, "2.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (0, "0"),
    ],
)
def test_numbers_spelled_like_helm(value: float, spelled: str) -> None:
    assert go_number(value) == spelled
