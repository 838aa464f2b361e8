"""Load shedding: at most `--max-in-flight` proxied requests at once, the rest refused at once.

Past the limit a request gets `503` with `X-Streamproxy-Error: overloaded` and `Retry-After: 1`
straight away: nothing is queued, so an overloaded app sheds load instead of growing a backlog
whose every request will time out anyway. A limit of 0 (the default) admits everything but
still counts, so the in-flight gauge is the same number whichever way it is configured.

Where the proxy port calls it (one `InFlightLimit` per process, `ProxyContext.in_flight`):

- `Exchange.start` (sidecar/proxy/exchange.py), after the request was counted (a shed request
  still counts) and before anything is sent to the app: `try_acquire()`, else the request is
  answered `overloaded_response()` and the connection closes;
- `Exchange._finish`, exactly once on every path (response done, upstream error, client gone,
  body too large): `release()`; after a `101` the slot passes to the tunnel, and
  `Tunnel._closed` (sidecar/proxy/tunnel.py) releases it: tunnels count while they last.

`try_acquire`/`release` are a compare and an integer add: no lock, one event loop.
"""

from __future__ import annotations

from sidecar.errors import error_response

OVERLOADED = "overloaded"


class InFlightLimit:
    __slots__ = ("admitted", "in_flight", "limit", "shed")

    def __init__(self, limit: int = 0) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0 (0 = unlimited)")
        self.limit = limit
        self.in_flight = 0  # gauge: streamproxy_in_flight_requests
        self.admitted = 0  # counter of requests let through
        self.shed = 0  # counter: streamproxy_requests_shed_total

    def try_acquire(self) -> bool:
        """Admit one more request, or count it as shed and return False."""
        if self.limit and self.in_flight >= self.limit:
            self.shed += 1
            return False
        self.in_flight += 1
        self.admitted += 1
        return True

    def release(self) -> None:
        """The admitted request (or tunnel) is over."""
        if self.in_flight <= 0:  # pragma: no cover - a protocol bug; never go negative
            raise RuntimeError("release() without a matching try_acquire()")
        self.in_flight -= 1


def overloaded_response(close: bool = True) -> bytes:
    """The 503 of a shed request, ready to write (`Retry-After: 1`: sidecar.errors)."""
    return error_response(503, OVERLOADED, close)
