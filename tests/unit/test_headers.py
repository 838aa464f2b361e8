from __future__ import annotations

from sidecar.headers import request_headers, strip_hop_by_hop


def test_hop_by_hop_and_connection_listed_names_are_dropped() -> None:
    headers = [
        (b"connection", b"keep-alive, X-Private"),
        (b"x-private", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"x-kept", b"a"),
        (b"x-kept", b"b"),
    ]
    assert strip_hop_by_hop(headers) == [(b"x-kept", b"a"), (b"x-kept", b"b")]


def test_request_headers_fill_in_x_forwarded_and_report_a_body() -> None:
    out, has_body = request_headers(
        [(b"host", b"shop"), (b"content-length", b"3"), (b"expect", b"100-continue")], "10.0.0.9"
    )
    assert has_body
    assert out == [
        (b"host", b"shop"),
        (b"content-length", b"3"),
        (b"x-forwarded-for", b"10.0.0.9"),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"shop"),
    ]


def test_request_headers_keep_an_ingress_view_and_append_the_client() -> None:
    out, has_body = request_headers(
        [
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"public"),
            (b"host", b"internal"),
        ],
        "3.3.3.3",
    )
    assert not has_body
    assert (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 3.3.3.3") in out
    assert (b"x-forwarded-proto", b"https") in out
    assert (b"x-forwarded-host", b"public") in out
    assert [name for name, _ in out].count(b"x-forwarded-proto") == 1


def test_chunked_request_has_a_body_and_loses_transfer_encoding() -> None:
    out, has_body = request_headers([(b"transfer-encoding", b"chunked")], None)
    assert has_body
    assert all(name != b"transfer-encoding" for name, _ in out)


def test_zero_content_length_is_no_body() -> None:
    assert request_headers([(b"content-length", b"0")], None)[1] is False


def test_websocket_handshake_headers_are_left_to_the_client_library() -> None:
    out, _ = request_headers(
        [
            (b"host", b"h"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"k"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-protocol", b"chat"),
            (b"authorization", b"Bearer t"),
        ],
        None,
        websocket=True,
    )
    names = [name for name, _ in out]
    assert b"host" in names and b"authorization" in names
    assert not {b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-protocol"} & set(
        names
    )


def test_response_headers_lose_hop_by_hop_and_keep_repeats() -> None:
    # Upstream clients hand over lower-case names (the seam's rule, tested per client).
    out = strip_hop_by_hop(
        [
            (b"set-cookie", b"a=1"),
            (b"connection", b"X-Hop"),
            (b"x-hop", b"gone"),
            (b"set-cookie", b"b=2"),
            (b"transfer-encoding", b"chunked"),
        ]
    )
    assert out == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]


def test_request_connection_listing_drops_names_before_and_after_it() -> None:
    out, has_body = request_headers(
        [
            (b"x-before", b"1"),
            (b"connection", b"keep-alive"),
            (b"connection", b"X-Before, x-after"),
            (b"x-after", b"2"),
            (b"x-kept", b"3"),
        ],
        None,
    )
    assert out == [(b"x-kept", b"3"), (b"x-forwarded-proto", b"http")]
    assert not has_body


def test_plain_connection_values_strip_only_the_standard_names() -> None:
    headers = [(b"connection", b"Keep-Alive"), (b"keep-alive", b"timeout=5"), (b"x-kept", b"1")]
    assert strip_hop_by_hop(headers) == [(b"x-kept", b"1")]
    out, _ = request_headers(headers, None)
    assert out == [(b"x-kept", b"1"), (b"x-forwarded-proto", b"http")]


def test_connection_close_also_drops_a_header_named_close() -> None:
    # RFC 9110 §7.6.1: every name a Connection header lists is hop-by-hop, "close" included.
    headers = [(b"close", b"x"), (b"connection", b"close"), (b"x-kept", b"1")]
    assert strip_hop_by_hop(headers) == [(b"x-kept", b"1")]
    assert request_headers(headers, None)[0] == [(b"x-kept", b"1"), (b"x-forwarded-proto", b"http")]
