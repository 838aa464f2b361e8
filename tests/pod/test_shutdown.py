"""SIGTERM to the sidecar of a fresh pod: readiness drops at once, it drains, exits 0 in time."""

from __future__ import annotations

import http.client
import threading
import time

from tests.pod.conftest import SIDECAR, Stack, env_value
from tests.pod.kubepod import docker, request


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


def test_sigterm_drains_then_exits_zero_with_every_count_flushed(stack: Stack) -> None:
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
