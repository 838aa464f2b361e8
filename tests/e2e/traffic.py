"""Steady keep-alive traffic for the kind suite: what an ingress controller or a mesh sends.

Each worker keeps one persistent HTTP/1.1 connection and sends a GET every few milliseconds,
opening a new connection only when the server says `Connection: close` (as streamproxy does on
every response while it drains) or closes it after a response. Like every production client
(RFC 9112 §9.3.1: a connection may close while idle, and a client may retry an idempotent
request it sent on it), a GET that meets EOF or a reset on a *reused* connection before any byte
of its response is sent again once on a new connection: the server closed an idle connection as
the request crossed it (`stale_retries`; such a request was never counted by the proxy, so the
suite's exact counts still catch a proxy that reads a request and then drops it). Any other
outcome is a failure: a reset or EOF on a fresh connection or after response bytes, a timeout,
a status other than 200. A connection pinned to a pod that goes away without saying so is
exactly what these clients expose and `Connection: close` clients never do.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from types import TracebackType


class KeepAliveTraffic:
    """`with KeepAliveTraffic(host, port) as traffic:` ... then `traffic.failures`, `.sent`."""

    def __init__(
        self, host: str, port: int, *, workers: int = 4, pause: float = 0.01, path: str = "/steady"
    ) -> None:
        self.host, self.port, self.pause, self.path = host, port, pause, path
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.reconnects = 0
        self.stale_retries = 0
        self.sent = 0  # requests written whose outcome is known (all of them, at the end)
        self.counted_before = 0  # requests the proxies counted before this traffic began
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)
        ]

    def __enter__(self) -> KeepAliveTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def counted(self) -> int:
        """What the shared Redis count must be once every proxy has flushed."""
        with self._lock:
            return self.counted_before + self.sent

    @property
    def ok(self) -> int:
        with self._lock:
            return self.outcomes["200"]

    def summary(self) -> str:
        with self._lock:
            return (
                f"{self.sent} sent, {dict(self.outcomes)}, {self.reconnects} reconnects, "
                f"{self.stale_retries} stale-connection retries, "
                f"first failures: {self.failures[:10]}"
            )

    def _record(self, outcome: str, *, reconnect: bool) -> None:
        with self._lock:
            self.sent += 1
            self.outcomes[outcome] += 1
            self.reconnects += reconnect
            if outcome != "200":
                self.failures.append(f"{time.strftime('%H:%M:%S')} {outcome}")

    def _work(self, worker: int) -> None:
        conn: http.client.HTTPConnection | None = None
        answered = 0  # responses read on `conn`
        n = 0
        while not self._stop.is_set():
            n += 1
            for attempt in (1, 2):
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
                    answered = 0
                got_head = False
                try:
                    conn.request("GET", f"{self.path}/{worker}/{n}")
                    response = conn.getresponse()
                    got_head = True
                    response.read()
                    outcome, close = str(response.status), response.will_close
                    answered += 1
                except STALE as exc:
                    if answered and attempt == 1 and not got_head:
                        with self._lock:
                            self.stale_retries += 1
                        conn.close()
                        conn = None
                        continue
                    outcome, close = f"{type(exc).__name__}: {exc}", True
                except (OSError, http.client.HTTPException) as exc:
                    outcome, close = f"{type(exc).__name__}: {exc}", True
                self._record(outcome, reconnect=close)
                if close:
                    conn.close()
                    conn = None
                break
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


# What a reused connection the server closed while idle looks like to the request sent on it.
# (http.client raises RemoteDisconnected only when not a byte of the status line arrived.)
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
