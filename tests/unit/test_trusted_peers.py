"""sidecar/trusted_peers.py: the --trusted-proxies CIDR list and the per-address verdict."""

from __future__ import annotations

import pytest

from sidecar.trusted_peers import (
    CACHE_SIZE,
    DEFAULT_TRUSTED_PROXIES,
    TrustedPeers,
    normalise_trusted_proxies,
    parse_trusted_proxies,
)

DEFAULT = TrustedPeers.from_setting(DEFAULT_TRUSTED_PROXIES)


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("10.244.1.17", True),  # a pod address on a common CNI: an ingress controller
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),  # just past 172.16/12
        ("192.168.1.1", True),
        ("fd12:3456::1", True),  # fc00::/7
        ("::ffff:10.1.2.3", True),  # IPv4 peer on a dual-stack listener
        ("::ffff:203.0.113.7", False),
        ("203.0.113.7", False),  # the internet
        ("8.8.8.8", False),
        ("2001:db8::1", False),
        ("fe80::1%eth0", False),  # link-local is not in the default list
        ("localhost", False),  # a name is not an address
        ("", False),
        (None, False),
    ],
)
def test_default_list_trusts_loopback_and_private_ranges(host: str | None, trusted: bool) -> None:
    assert DEFAULT.is_trusted(host) is trusted


def test_none_trusts_no_peer() -> None:
    peers = TrustedPeers.from_setting("none")
    assert not peers.is_trusted("127.0.0.1")
    assert not peers.is_trusted("10.0.0.1")


def test_custom_list_and_single_addresses() -> None:
    peers = TrustedPeers.from_setting("10.42.0.0/16, 192.0.2.10 ,2001:db8::/32")
    assert peers.is_trusted("10.42.7.7")
    assert not peers.is_trusted("10.43.0.1")
    assert peers.is_trusted("192.0.2.10")
    assert not peers.is_trusted("192.0.2.11")
    assert peers.is_trusted("2001:db8:1::5")
    assert not peers.is_trusted("127.0.0.1")  # loopback only when listed


def test_verdicts_are_cached_per_address_and_the_cache_is_bounded() -> None:
    peers = TrustedPeers.from_setting("10.0.0.0/8")
    assert peers.is_trusted("10.0.0.1")
    assert peers._cache == {"10.0.0.1": True}
    for i in range(CACHE_SIZE + 10):
        peers.is_trusted(f"11.0.{i // 256}.{i % 256}")
    assert len(peers._cache) <= CACHE_SIZE
    assert peers.is_trusted("10.0.0.1")  # still right after the cache was cleared


def test_setting_is_normalised() -> None:
    assert normalise_trusted_proxies(" 10.0.0.0/8 ,::1 ") == "10.0.0.0/8,::1/128"
    assert normalise_trusted_proxies("NONE") == "none"
    assert normalise_trusted_proxies(DEFAULT_TRUSTED_PROXIES) == DEFAULT_TRUSTED_PROXIES


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "none"),
        (" , ", "none"),
        ("10.0.0.1/8", "host bits"),  # a typo for 10.0.0.0/8, or for 10.0.0.1/32
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("cluster", "'cluster'"),
        ("10.0.0.0/8;192.168.0.0/16", "10.0.0.0/8;192.168.0.0/16"),
    ],
)
def test_bad_lists_name_the_entry(value: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_trusted_proxies(value)
    assert message in str(error.value)
