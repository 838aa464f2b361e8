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


def _has_connection_header(headers: RawHeaders) -> bool:
    return any(name == b"connection" for name, _ in headers)


def strip_hop_by_hop(headers: RawHeaders) -> RawHeaders:
    """`headers` (lower-case names) without hop-by-hop ones and those `Connection` lists."""
    drop = HOP_BY_HOP
    if _has_connection_header(headers):
        drop = drop | connection_listed(headers)
    return [(name, value) for name, value in headers if name not in drop]


_HTTP_DROP = HOP_BY_HOP | _REQUEST_ONLY
_WEBSOCKET_DROP = _HTTP_DROP | WEBSOCKET_HANDSHAKE


def request_headers(
    headers: RawHeaders, client_host: str | None, websocket: bool = False
) -> tuple[RawHeaders, bool]:
    """Headers for the upstream request (hop-by-hop gone, X-Forwarded-* filled in), and
    whether the request has a body (`Content-Length` > 0 or `Transfer-Encoding`)."""
    drop = _WEBSOCKET_DROP if websocket else _HTTP_DROP
    has_body = False
    listed = connection_listed(headers) if _has_connection_header(headers) else frozenset()
    out: RawHeaders = []
    forwarded_for: list[bytes] = []
    host: bytes | None = None
    has_proto = has_xfh = False
    for name, value in headers:
        if name in drop or name in listed:
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
