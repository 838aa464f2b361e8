"""sidecar.proxy.headers: the Connection parser, hop-by-hop removal, X-Forwarded-*."""

from __future__ import annotations

import pytest

from sidecar.proxy import headers as rules
from sidecar.proxy.headers import connection_tokens, nominated
from sidecar.types import RawHeaders


def _pairs(parts: list[bytes]) -> RawHeaders:
    lines = b"".join(parts).split(b"\r\n")[:-1]
    return [(name, value) for name, _, value in (line.partition(b": ") for line in lines)]


def request_headers(
    headers: RawHeaders, tokens: frozenset[bytes], client_host: str | None, trusted: bool = True
) -> RawHeaders:
    parts: list[bytes] = []
    rules.request_headers(parts, headers, tokens, client_host, trusted)
    return _pairs(parts)


def response_headers(
    headers: RawHeaders, tokens: frozenset[bytes], keep_length: bool
) -> RawHeaders:
    parts: list[bytes] = []
    rules.response_headers(parts, headers, tokens, keep_length)
    return _pairs(parts)


def test_connection_is_a_comma_list_of_case_insensitive_tokens() -> None:
    """RFC 9110 §7.6.1: Connection = #connection-option, case-insensitive; repeats combine."""
    assert connection_tokens([b"Keep-Alive, X-Private ,,\tClose", b"UPGRADE"]) == {
        b"keep-alive",
        b"x-private",
        b"close",
        b"upgrade",
    }


def test_plain_values_name_nothing_extra() -> None:
    assert nominated(connection_tokens([b"keep-alive"])) == frozenset()
    assert nominated(connection_tokens([b"Upgrade"])) == frozenset()


@pytest.mark.parametrize(
    "name",
    [b"host", b"content-length", b"transfer-encoding", b"x-forwarded-for", b"x-forwarded-proto",
     b"x-forwarded-host"],
)  # fmt: skip
def test_connection_never_nominates_what_the_proxy_owns(name: bytes) -> None:
    """The CVE-2022-31813 class: `Connection: X-Forwarded-For` must not remove what the proxy
    sends; `Connection: Content-Length` must not turn a POST into an empty one."""
    assert name not in nominated(connection_tokens([b"close, " + name]))


def test_request_hop_by_hop_and_listed_names_are_dropped() -> None:
    """RFC 9110 §7.6.1: Connection, the names it lists and the standard hop-by-hop fields;
    RFC 9110 §11.7.2: Proxy-Authorization passes (the app may itself be a proxy)."""
    headers = [
        (b"host", b"shop"),
        (b"connection", b"keep-alive, X-Private"),
        (b"x-private", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"te", b"trailers"),
        (b"trailer", b"x"),
        (b"upgrade", b"h2c"),
        (b"transfer-encoding", b"chunked"),
        (b"expect", b"100-continue"),
        (b"proxy-authorization", b"Basic eDp5"),
        (b"x-kept", b"a"),
        (b"x-kept", b"b"),
    ]
    out = request_headers(headers, connection_tokens([b"keep-alive, X-Private"]), "10.0.0.9")
    assert out == [
        (b"host", b"shop"),
        (b"proxy-authorization", b"Basic eDp5"),
        (b"x-kept", b"a"),
        (b"x-kept", b"b"),
        (b"x-forwarded-for", b"10.0.0.9"),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"shop"),
    ]


def test_request_framing_headers_are_left_to_the_framing_module() -> None:
    """Content-Length is re-written from the parsed framing (RFC 9112 §6.3), never copied."""
    out = request_headers([(b"content-length", b"3")], frozenset(), None)
    assert out == [(b"x-forwarded-proto", b"http")]


def test_connection_listing_x_forwarded_for_keeps_the_chain() -> None:
    out = request_headers(
        [(b"connection", b"x-forwarded-for"), (b"x-forwarded-for", b"1.1.1.1")],
        connection_tokens([b"x-forwarded-for"]),
        "2.2.2.2",
    )
    assert (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2") in out


def test_request_headers_keep_an_ingress_view_and_append_the_client() -> None:
    out = request_headers(
        [
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"public"),
            (b"host", b"internal"),
        ],
        frozenset(),
        "3.3.3.3",
    )
    assert (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 3.3.3.3") in out
    assert (b"x-forwarded-proto", b"https") in out
    assert (b"x-forwarded-host", b"public") in out
    assert [name for name, _ in out].count(b"x-forwarded-proto") == 1


def test_request_headers_replace_an_untrusted_peers_forwarded_view() -> None:
    """--trusted-proxies (docs/guardrails.md): a peer outside the list cannot claim HTTPS or
    another host name; its X-Forwarded-For chain is still kept and the peer appended."""
    out = request_headers(
        [
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"evil.example"),
            (b"host", b"internal"),
        ],
        frozenset(),
        "203.0.113.7",
        trusted=False,
    )
    assert (b"x-forwarded-for", b"1.1.1.1, 203.0.113.7") in out
    assert [(n, v) for n, v in out if n == b"x-forwarded-proto"] == [
        (b"x-forwarded-proto", b"http")
    ]
    assert [(n, v) for n, v in out if n == b"x-forwarded-host"] == [
        (b"x-forwarded-host", b"internal")
    ]


def test_response_headers_lose_hop_by_hop_and_keep_multiplicity() -> None:
    """RFC 9110 §7.6.1 on responses; §11.7.1: Proxy-Authenticate passes; two Set-Cookie stay
    two (RFC 9110 §5.3)."""
    headers = [
        (b"connection", b"x-hop"),
        (b"x-hop", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"proxy-authenticate", b"Basic"),
        (b"content-length", b"3"),
    ]
    tokens = connection_tokens([b"x-hop"])
    assert response_headers(headers, tokens, keep_length=True) == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"proxy-authenticate", b"Basic"),
        (b"content-length", b"3"),
    ]
    assert (b"content-length", b"3") not in response_headers(headers, tokens, keep_length=False)
