"""Header rewriting between client and app: hop-by-hop removal and X-Forwarded-*.

Headers stay raw `(name, value)` byte pairs in their original order, repeats included: never a
dict, which would merge two `Set-Cookie` headers into one. ASGI servers give lower-case names, and
every comparison here is against lower-case constants, so nothing is case-folded twice.
"""

from __future__ import annotations

from sidecar.types import RawHeaders

# RFC 9110 §7.6.1 plus the legacy names every proxy strips.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# uvicorn answers `Expect: 100-continue` itself when the body is first read.
_REQUEST_ONLY = frozenset({b"expect"})

# Sent by the websocket client library itself when it opens the upstream handshake.
WEBSOCKET_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)


def connection_listed(headers: RawHeaders) -> frozenset[bytes]:
    """Names listed in `Connection` headers: hop-by-hop for this one connection."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            for token in value.split(b","):
                token = token.strip().lower()
                if token:
                    listed.add(token)
    return frozenset(listed)


# Connection values that name nothing outside HOP_BY_HOP (lower-cased, compared whole): the
# common ones skip the token parsing. Not "close": a header field named Close must go too.
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"upgrade"})
_NOTHING: frozenset[bytes] = frozenset()


def _connection_extras(headers: RawHeaders) -> frozenset[bytes]:
    """What `Connection` headers list, when one lists more than a plain value; else nothing."""
    for name, value in headers:
        if name == b"connection" and value.lower() not in _PLAIN_CONNECTION:
            return connection_listed(headers)
    return _NOTHING


def strip_hop_by_hop(headers: RawHeaders) -> RawHeaders:
    """`headers` (lower-case names) without hop-by-hop ones and those `Connection` lists.

    One pass in the common case; a second only when a Connection header lists other names."""
    out = [(name, value) for name, value in headers if name not in HOP_BY_HOP]
    # Only when a hop-by-hop header was there can a Connection header be.
    if len(out) != len(headers) and (listed := _connection_extras(headers)):
        return [(name, value) for name, value in out if name not in listed]
    return out


_HTTP_DROP = HOP_BY_HOP | _REQUEST_ONLY
_WEBSOCKET_DROP = _HTTP_DROP | WEBSOCKET_HANDSHAKE


def request_headers(
    headers: RawHeaders, client_host: str | None, websocket: bool = False
) -> tuple[RawHeaders, bool]:
    """Headers for the upstream request (hop-by-hop gone, X-Forwarded-* filled in), and
    whether the request has a body (`Content-Length` > 0 or `Transfer-Encoding`)."""
    drop = _WEBSOCKET_DROP if websocket else _HTTP_DROP
    # Rare: names this connection declares hop-by-hop (they may come before the Connection).
    if listed := _connection_extras(headers):
        drop = drop | listed
    has_body = False
    out: RawHeaders = []
    forwarded_for: list[bytes] = []
    host: bytes | None = None
    has_proto = has_xfh = False
    for name, value in headers:
        if name in drop:
            if name == b"transfer-encoding":
                has_body = True
            continue
        if name == b"content-length":
            has_body = has_body or value.strip() not in (b"0", b"")
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
            continue
        if name == b"host":
            host = value
        elif name == b"x-forwarded-proto":
            has_proto = True
        elif name == b"x-forwarded-host":
            has_xfh = True
        out.append((name, value))
    if client_host is not None:
        forwarded_for.append(client_host.encode("latin-1"))
    if forwarded_for:
        out.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    if not has_proto:
        out.append((b"x-forwarded-proto", b"http"))
    if not has_xfh and host is not None:
        out.append((b"x-forwarded-host", host))
    return out, has_body
