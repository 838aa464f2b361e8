"""Trusted forwarding hops: is a connection's peer one whose `X-Forwarded-Proto`/`-Host` we keep?

`--trusted-proxies` is a comma-separated CIDR list (default: loopback and the private ranges,
where an in-cluster ingress controller connects from), or `none`. From a trusted peer the
protocol keeps the `X-Forwarded-Proto`/`-Host` it sent; from any other peer it replaces them with
its own values (`http`, the request's `Host`). `X-Forwarded-For` is appended to either way.

How the protocol calls it (once per connection, never per request):

    # startup
    trusted_peers = TrustedPeers.from_setting(settings.trusted_proxies)
    # connection_made(transport)
    peer = transport.get_extra_info("peername")
    self.peer_trusted = trusted_peers.is_trusted(peer[0] if peer else None)

`is_trusted` caches its answer per address string, so a busy ingress controller (a handful of
pod addresses) costs one dict lookup per connection after the first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Loopback, RFC 1918 and the IPv6 unique-local range: where in-cluster peers (an ingress
# controller, a mesh gateway, a kubelet probe) connect from on common CNIs.
DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
NONE = "none"
# Bound on cached addresses: enough for every peer of a busy pod, and a scan of the whole
# address space cannot grow memory past it.
CACHE_SIZE = 4096


def parse_trusted_proxies(value: str) -> tuple[Network, ...]:
    """`"10.0.0.0/8, ::1"` -> networks; `"none"` -> `()`. Raise ValueError naming the bad entry."""
    text = value.strip()
    if text.lower() == NONE:
        return ()
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        raise ValueError("must list CIDRs (e.g. 10.0.0.0/8) or be 'none' to trust no peer")
    networks: list[Network] = []
    for entry in entries:
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a CIDR ({exc})") from None
    return tuple(networks)


def normalise_trusted_proxies(value: str) -> str:
    """The setting's canonical spelling: validated CIDRs joined by commas, or `none`."""
    networks = parse_trusted_proxies(value)
    return ",".join(str(network) for network in networks) if networks else NONE


class TrustedPeers:
    def __init__(self, networks: Iterable[Network]) -> None:
        self._v4 = tuple(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in networks if isinstance(n, ipaddress.IPv6Network))
        self._cache: dict[str, bool] = {}

    @classmethod
    def from_setting(cls, value: str) -> TrustedPeers:
        return cls(parse_trusted_proxies(value))

    def is_trusted(self, host: str | None) -> bool:
        """Is the peer address (`peername[0]`) inside a trusted network? None is never trusted."""
        if host is None:
            return False
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        verdict = self._match(host)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[host] = verdict
        return verdict

    def _match(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a name, or garbage: never trusted
        if isinstance(address, ipaddress.IPv6Address):
            # A dual-stack listener shows an IPv4 peer as ::ffff:a.b.c.d.
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            else:
                return any(address in network for network in self._v6)
        return any(address in network for network in self._v4)
