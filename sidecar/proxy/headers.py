"""Header rules between client and app: the one `Connection` parser, hop-by-hop removal and
X-Forwarded-*.

Headers are raw `(name, value)` byte pairs with lower-case names, in their original order with
repeats kept: never a dict, which would merge two `Set-Cookie` headers into one. Framing headers
(`Content-Length`, `Transfer-Encoding`) are `sidecar.proxy.framing`'s business: this module
removes `Transfer-Encoding` (hop-by-hop) and leaves `Content-Length` alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.types import RawHeaders

# RFC 9110 §7.6.1 plus the legacy names every proxy strips. Not Proxy-Authorization or
# Proxy-Authenticate: the app behind the sidecar may itself be a proxy that asks (RFC 9110 §11.7).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Dropped from requests too: the proxy answers `Expect: 100-continue` itself (RFC 9110 §10.1.1).
REQUEST_DROP = HOP_BY_HOP | {b"expect"}

# What `Connection` may never nominate: the proxy owns these (the CVE-2022-31813 class of bug,
# where `Connection: X-Forwarded-For` removed what the proxy must send).
PROTECTED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)

# Connection values that name nothing outside HOP_BY_HOP and say nothing about persistence:
# the common ones skip token parsing.
_PLAIN = frozenset({b"keep-alive", b"upgrade"})
_NOTHING: frozenset[bytes] = frozenset()


def connection_tokens(values: Sequence[bytes]) -> frozenset[bytes]:
    """The lower-cased tokens of `Connection` header values (RFC 9110 §7.6.1: a comma list).

    The only `Connection` parser: "close", "keep-alive", "upgrade" and the names of headers
    that are hop-by-hop for this one connection all come from here."""
    tokens: set[bytes] = set()
    for value in values:
        lowered = value.lower()
        if lowered in _PLAIN:
            tokens.add(lowered)
            continue
        for token in lowered.split(b","):
            token = token.strip(b" \t")
            if token:
                tokens.add(token)
    return frozenset(tokens)


def nominated(tokens: frozenset[bytes]) -> frozenset[bytes]:
    """Header names `Connection` makes hop-by-hop, minus those the proxy owns."""
    if not tokens or tokens <= _PLAIN:
        return _NOTHING
    return tokens - PROTECTED


_HOP_BY_HOP_AND_LENGTH = HOP_BY_HOP | {b"content-length"}


def response_headers(
    parts: list[bytes], headers: RawHeaders, tokens: frozenset[bytes], keep_length: bool
) -> None:
    """Append the app's response header lines for the client to `parts`, hop-by-hop gone
    (RFC 9110 §7.6.1). `keep_length` False drops `Content-Length` too: the body is re-framed
    (chunked or close-delimited), and a length that no longer describes it would be a
    smuggling vector."""
    drop = HOP_BY_HOP if keep_length else _HOP_BY_HOP_AND_LENGTH
    if extra := nominated(tokens):
        drop = drop | extra
    for name, value in headers:
        if name not in drop:
            parts += (name, b": ", value, b"\r\n")


def request_headers(
    parts: list[bytes],
    headers: RawHeaders,
    tokens: frozenset[bytes],
    client_host: str | None,
    trusted: bool = True,
) -> None:
    """Append the upstream request's header lines to `parts` (a head being built): hop-by-hop
    and framing gone (framing is re-added by the caller), X-Forwarded-For appended,
    X-Forwarded-Proto/-Host set unless a `trusted` peer (an ingress inside --trusted-proxies)
    sent them: an untrusted peer's are replaced. Host is kept.
    One pass, written straight into the head: this runs for every header of every request."""
    drop = REQUEST_DROP
    if extra := nominated(tokens):
        drop = drop | extra
    forwarded_for: list[bytes] = []
    host: bytes | None = None
    has_proto = has_xfh = False
    for name, value in headers:
        if name in drop:
            continue
        if name[:2] == b"x-" or len(name) in (4, 14):
            if name == b"content-length":
                continue
            if name == b"x-forwarded-for":
                forwarded_for.append(value)
                continue
            if name == b"host":
                host = value
            elif name == b"x-forwarded-proto":
                if not trusted:
                    continue
                has_proto = True
            elif name == b"x-forwarded-host":
                if not trusted:
                    continue
                has_xfh = True
        parts += (name, b": ", value, b"\r\n")
    if client_host is not None:
        forwarded_for.append(client_host.encode("latin-1"))
    if forwarded_for:
        parts += (b"x-forwarded-for: ", b", ".join(forwarded_for), b"\r\n")
    if not has_proto:
        parts.append(b"x-forwarded-proto: http\r\n")
    if not has_xfh and host is not None:
        parts += (b"x-forwarded-host: ", host, b"\r\n")
