"""Ending the pod: SIGTERM to the sidecar, and pod deletion in the kubelet's order. Each test gets
a fresh pod."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

from tests.pod.conftest import SIDECAR, Stack, env_value
from tests.pod.kubepod import DockerPod, docker, http_get_action, request


class SlowDownload(threading.Thread):
    """A streaming response read slowly, so it is still in flight when listeners close."""

    def __init__(self, port: int, size: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.port, self.size, self.seconds = port, size, seconds
        self.received = 0
        self.status = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", f"/stream?bytes={self.size}")
            resp = conn.getresponse()
            self.status = resp.status
            chunk = 64 * 1024
            pause = self.seconds / (self.size / chunk)
            while data := resp.read(chunk):
                self.received += len(data)
                time.sleep(pause)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            conn.close()


def test_sigterm_drains_then_exits_zero_with_every_count_flushed(fresh_stack: Stack) -> None:
    """SIGTERM to the sidecar while the app still serves: the kubelet's order for a classic
    sidecar (every container signalled at once, the app kept up by its preStop sleep) and what
    POST /quitquitquit does. A native sidecar's order (app first) is the next test's."""
    stack = fresh_stack
    spec = stack.sidecar_spec()
    drain = float(env_value(spec, "STREAMPROXY_DRAIN_SECONDS"))
    shutdown = float(env_value(spec, "STREAMPROXY_SHUTDOWN_TIMEOUT"))
    grace = float(stack.pod.spec.get("terminationGracePeriodSeconds", 30))
    assert grace >= drain + shutdown, "the kubelet would SIGKILL before the drain could end"
    proxy, admin = stack.proxy_port(), stack.admin_port()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        code, _, _ = request(admin, "GET", "/status")
        if code == 200:
            break
        time.sleep(0.2)
    before = stack.redis_count()
    assert request(proxy, "GET", "/before")[0] == 200

    download = SlowDownload(proxy, size=16 * 1024 * 1024, seconds=drain + 3)
    download.start()
    time.sleep(0.5)
    sent_at = time.monotonic()
    docker("kill", "--signal", "TERM", stack.pod.container_name(SIDECAR))

    # Readiness turns 503 at once, so the endpoint controller stops sending new traffic...
    unready_after = None
    while time.monotonic() - sent_at < 2:
        code, _, _ = request(admin, "GET", "/status", timeout=2)
        if code == 503:
            unready_after = time.monotonic() - sent_at
            break
        time.sleep(0.05)
    assert unready_after is not None, "readiness still passing 2 s after SIGTERM"

    # ...while traffic that still arrives during the drain is served.
    served = 0
    while time.monotonic() - sent_at < drain - 1:
        code, _, _ = request(proxy, "GET", f"/draining/{served}", timeout=5)
        assert code == 200, f"request {served} during the drain got {code}"
        served += 1
        time.sleep(0.2)
    assert served > 0

    limit = drain + shutdown + 5
    while time.monotonic() - sent_at < limit:
        state = stack.pod.state(SIDECAR)
        if not state["Running"]:
            break
        time.sleep(0.2)
    exited_after = time.monotonic() - sent_at
    assert not state["Running"], f"sidecar still running {limit:.0f}s after SIGTERM"
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']}, OOM {state['OOMKilled']}"
    assert exited_after < grace, f"exited after {exited_after:.1f}s, past the grace period"
    assert exited_after >= drain - 0.5, f"exited after {exited_after:.1f}s, before the drain ended"

    download.join(timeout=shutdown)
    assert download.error is None, f"in-flight download broke: {download.error!r}"
    assert (download.status, download.received) == (200, download.size)

    # Pending counts were flushed before exit: before, the in-flight one, the drained ones.
    assert stack.redis_count() == before + 1 + 1 + served


def hook_runner(
    pod: DockerPod,
    container: dict[str, Any],
    hook: dict[str, Any],
    grace: float,
    results: list[tuple[bool, str]],
) -> threading.Thread:
    """A preStop hook run the kubelet's way: its own sleep, an httpGet it makes to the pod
    (from outside the pod), or a command in the container."""
    if "sleep" in hook:
        return threading.Thread(target=time.sleep, args=(hook["sleep"]["seconds"],), daemon=True)
    if "httpGet" in hook:

        def get() -> None:
            get_action = hook["httpGet"]
            results.append(http_get_action(pod, container, get_action, grace, "kube-lifecycle"))

        return threading.Thread(target=get, daemon=True)
    assert "exec" in hook, f"{container['name']}: unsupported hook {hook}"
    return threading.Thread(
        target=pod.exec,
        args=(container["name"], *hook["exec"]["command"]),
        kwargs={"timeout": grace},
        daemon=True,
    )


def test_pod_deletion_in_kubelet_order_ends_within_the_grace_period(fresh_stack: Stack) -> None:
    """Native sidecars stop last: the app's preStop hook, SIGTERM to the app, and only once it
    has exited, SIGTERM to the sidecar. All of it must fit in terminationGracePeriodSeconds, or
    the kubelet SIGKILLs (exit 137). The hook (the sidecar's /drain) lets keep-alive clients go
    while the app still serves."""
    stack = fresh_stack
    pod = stack.pod
    grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
    proxy = stack.proxy_port()
    before = stack.redis_count()
    started = time.monotonic()
    served = 0
    # A keep-alive client, as an ingress controller talking to the pod IP keeps one.
    keep_alive = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    keep_alive.request("GET", "/keep-alive/before")
    first = keep_alive.getresponse()
    first.read()
    assert first.status == 200 and first.getheader("connection") != "close"
    served += 1
    hook_results: list[tuple[bool, str]] = []
    for c in pod.spec.get("containers", []):
        hook = c.get("lifecycle", {}).get("preStop")
        if hook:
            runner = hook_runner(pod, c, hook, grace, hook_results)
            runner.start()
            # Endpoints lag behind the deletion: traffic still arrives during the hook.
            while runner.is_alive():
                assert request(proxy, "GET", f"/pre-stop/{served}")[0] == 200
                served += 1
                runner.join(0.25)
            assert all(ok for ok, _ in hook_results), hook_results
            if "httpGet" in hook:
                # The hook was the sidecar's /drain: the idle keep-alive client was let go
                # before the app is stopped, not left to find it gone.
                keep_alive.sock.settimeout(10)
                assert keep_alive.sock.recv(1) == b""
        docker("kill", "--signal", "TERM", pod.container_name(c["name"]))
    keep_alive.close()
    for c in pod.spec.get("containers", []):
        while pod.state(c["name"])["Running"]:
            assert time.monotonic() - started < grace, f"{c['name']} still running at the grace end"
            time.sleep(0.2)
    sidecars = [c for c in pod.spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    for c in reversed(sidecars):
        docker("kill", "--signal", "TERM", pod.container_name(c["name"]))
        while pod.state(c["name"])["Running"]:
            assert time.monotonic() - started < grace, f"{c['name']} still running at the grace end"
            time.sleep(0.2)
    took = time.monotonic() - started
    for c in [*pod.spec.get("containers", []), *sidecars]:
        state = pod.state(c["name"])
        assert state["ExitCode"] == 0, f"{c['name']} exited {state['ExitCode']}"
    assert took < grace, f"pod deletion took {took:.1f}s of a {grace:.0f}s grace period"
    assert served > 0
    assert stack.redis_count() == before + served
