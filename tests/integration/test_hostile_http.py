"""Hostile or broken HTTP on the proxy port (CONTRACT §2 last item, §4 "parser-rejected").

Raw sockets against a real proxy process. Every attack must end in the allowed answer (or a
closed connection), never in a hang, a crash or a request the app did not ask for; the next
client is then served normally. The app records the targets it receives (`/stats` "recent"),
so "nothing was smuggled" is checked where it matters: at the app.
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.proxy_fixtures import Proxy, Upstream, wait_until

LIMIT = 64 * 1024
IO_TIMEOUT = 10.0


# Raw-socket helpers


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    sock.settimeout(IO_TIMEOUT)
    return sock


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, read until the proxy closes the connection; fail on a hang."""
    with _connect(port) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # closed on us mid-send: "closed" is an allowed answer
        received = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            except TimeoutError:
                break
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"the proxy kept the connection open; received {received[:300]!r}")


def status_of(response: bytes) -> int | None:
    """Status code of the first response in `response`, None when nothing was answered."""
    if not response:
        return None
    line = response.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), f"not an HTTP response: {response[:200]!r}"
    return int(line.split()[1])


def header_block(count_bytes: int) -> bytes:
    """Filler headers totalling exactly `count_bytes` bytes on the wire (CRLFs included)."""
    lines: list[bytes] = []
    remaining = count_bytes
    index = 0
    while remaining > 0:
        name = f"x-fill-{index}".encode()
        overhead = len(name) + 4  # ": " and CRLF
        value_len = min(8000, remaining - overhead)
        if value_len < 1:
            # Too little left for another header: lengthen the previous one instead.
            last = lines.pop()
            lines.append(last[:-2] + b"v" * remaining + b"\r\n")
            break
        lines.append(name + b": " + b"v" * value_len + b"\r\n")
        remaining -= overhead + value_len
        index += 1
    block = b"".join(lines)
    assert len(block) == count_bytes
    return block


def request_with_section_size(total: int, target: bytes = b"/echo") -> bytes:
    """A GET whose header section (request line through the empty line) is `total` bytes."""
    head = b"GET " + target + b" HTTP/1.1\r\nHost: hostile.test\r\nConnection: close\r\n"
    filler = total - len(head) - 2
    return head + header_block(filler) + b"\r\n"


def recent(upstream: Upstream) -> list[str]:
    result: list[str] = upstream.stats()["recent"]  # type: ignore[assignment]
    return result


def assert_serves_normally(proxy: Proxy) -> None:
    assert proxy.proc.poll() is None, f"the proxy died:\n{proxy.log()[-3000:]}"
    marker = f"/after-attack/{uuid.uuid4().hex}"
    response = httpx.get(proxy.url + marker, timeout=IO_TIMEOUT)
    assert response.status_code == 200
    assert response.json()["raw_path"] == marker


# Malformed input: 400 or closed, then the next client is served


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "unknown version": b"GET /x HTTP/9.9\r\nHost: a\r\n\r\n",
    "space before colon": b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
    "NUL in target": b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n",
    "header without colon": b"GET /x HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n",
    "obsolete line folding": b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
    "binary garbage": bytes(range(256)) * 8,
    "Content-Length and Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two different Content-Lengths": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "Content-Length list": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "negative Content-Length": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "unknown Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
    ),
    "chunked not last": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
    ),
    "gzip only": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "two Host headers": b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two equal Host headers": b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "control character in a value": b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
    "bare LF line ends": b"GET /echo HTTP/1.1\nHost: a\n\n",
    "bare CR": b"GET /echo HTTP/1.1\rHost: a\r\n\r\n",
    "lower-case method": b"get /echo HTTP/1.1\r\nHost: a\r\n\r\n",
    "Content-Length with a plus": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"
    ),
    "Content-Length overflow": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"
    ),
    "Transfer-Encoding name with space": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad chunk size": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


# Requests whose head is valid: they are forwarded, then the body turns out malformed.
BODY_ERRORS = frozenset({"bad chunk size"})


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_refused_and_next_client_served(proxy: Proxy, data: bytes) -> None:
    """RFC 9112 §2.2/§5/§6.3: a malformed request line or header, or an ambiguous length, gets
    400 and a closed connection (README: "400"). A body broken after its head was forwarded
    aborts the connection instead: the app must see the request broken, never complete."""
    response = exchange(proxy.port, data)
    if data in (MALFORMED[name] for name in BODY_ERRORS):
        assert status_of(response) is None, response[:300]
    else:
        assert status_of(response) == 400, response[:300]
    assert_serves_normally(proxy)


@pytest.mark.parametrize("coding", [b"gzip", b"xchunked", b"identity", b"chunked;q=1"])
def test_transfer_coding_without_chunked_last_never_reaches_the_app(
    proxy: Proxy, upstream: Upstream, coding: bytes
) -> None:
    """RFC 9112 §6.3 rule 4: chunked not final, the body length is unknown: 400 and close,
    before anything is sent on."""
    marker = f"/te/{uuid.uuid4().hex}".encode()
    data = b"POST " + marker + b" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + coding
    response = exchange(proxy.port, data + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status_of(response) == 400, response[:300]
    assert marker.decode() not in recent(upstream)
    assert_serves_normally(proxy)


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate, chunked"])
def test_transfer_coding_other_than_chunked_is_not_implemented(
    proxy: Proxy, upstream: Upstream, coding: bytes
) -> None:
    """RFC 9112 §6.1: a transfer coding the server does not understand gets 501; never
    forwarded with the coding's label dropped."""
    marker = f"/te/{uuid.uuid4().hex}".encode()
    data = b"POST " + marker + b" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + coding
    response = exchange(proxy.port, data + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status_of(response) == 501, response[:300]
    assert b"x-streamproxy-error: transfer_coding_not_implemented" in response
    assert marker.decode() not in recent(upstream)
    assert_serves_normally(proxy)


# Header section size


def test_two_host_headers_never_reach_the_app(proxy: Proxy, upstream: Upstream) -> None:
    """Two Hosts: the proxy and the app could each believe a different one (RFC 9112 §3.2)."""
    marker = f"/two-hosts/{uuid.uuid4().hex}"
    data = f"GET {marker} HTTP/1.1\r\nHost: pod.local\r\nHost: evil.example\r\n\r\n"
    response = exchange(proxy.port, data.encode())
    assert status_of(response) == 400, response[:300]
    assert marker not in recent(upstream)


def test_request_target_over_64k_gets_431(proxy: Proxy, upstream: Upstream) -> None:
    """RFC 6585 §5 (README: a header section over 64 KiB gets 431)."""
    target = f"/long/{uuid.uuid4().hex}/".encode() + b"u" * (LIMIT + 1024)
    response = exchange(proxy.port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(response) == 431, response[:300]
    assert_serves_normally(proxy)


def test_header_section_just_under_64k_is_served(proxy: Proxy) -> None:
    marker = f"/under-limit/{uuid.uuid4().hex}"
    request = request_with_section_size(LIMIT, marker.encode())
    response = exchange(proxy.port, request)
    assert status_of(response) == 200, response[:300]
    assert marker.encode() in response


@pytest.mark.parametrize("size", [LIMIT + 1024, 4 * LIMIT], ids=["64KiB+1KiB", "256KiB"])
def test_header_section_over_64k_gets_431(proxy: Proxy, upstream: Upstream, size: int) -> None:
    """RFC 6585 §5 (README: a header section over 64 KiB gets 431)."""
    marker = f"/over-limit/{uuid.uuid4().hex}"
    response = exchange(proxy.port, request_with_section_size(size, marker.encode()))
    assert status_of(response) == 431, response[:300]
    assert marker not in recent(upstream)
    assert_serves_normally(proxy)


def test_endless_header_line_is_cut_off_with_bounded_memory(proxy: Proxy) -> None:
    """One header line that never ends: the proxy must stop reading it, not buffer it all."""
    rss_before = proxy.rss()
    budget = 64 * 1024 * 1024
    sent = 0
    response = b""
    with _connect(proxy.port) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: a\r\nX-Endless: ")
        block = b"e" * 65536
        try:
            while sent < budget:
                sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            raise AssertionError(f"the proxy accepted {sent} bytes of a single header line")
        try:
            response = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            response = b""
    # Loopback socket buffers absorb a few MiB before the reset is seen; never the whole budget.
    assert sent < 16 * 1024 * 1024
    assert status_of(response) in (431, None), response[:300]
    growth = proxy.rss() - rss_before
    assert growth < 16 * 1024 * 1024, f"proxy RSS grew by {growth} bytes"
    assert_serves_normally(proxy)


# Slow or silent clients: a request head has a deadline


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture
def quick_proxy(upstream: Upstream, proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory(upstream.url, "--keepalive-timeout", "1")


def test_connection_that_never_sends_a_request_is_closed(quick_proxy: Proxy) -> None:
    with _connect(quick_proxy.port) as sock:
        assert closed_within(sock, 6), "a silent connection was held open"
    assert_serves_normally(quick_proxy)


def test_slowloris_head_is_cut_off_at_the_deadline(quick_proxy: Proxy, upstream: Upstream) -> None:
    marker = f"/slowloris/{uuid.uuid4().hex}"
    with _connect(quick_proxy.port) as sock:
        sent_at = time.monotonic()
        sock.sendall(f"GET {marker} HTTP/1.1\r\nHost: a\r\nX-Slow: ".encode())
        closed = False
        while time.monotonic() - sent_at < 8 and not closed:
            try:
                sock.sendall(b"z")  # a byte now and then: never a complete head
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = closed_within(sock, 0.2)
        took = time.monotonic() - sent_at
    assert closed, "a head trickling in was waited for without limit"
    assert took < 6, f"cut off after {took:.1f}s"
    assert marker not in recent(upstream)
    assert_serves_normally(quick_proxy)


def test_head_in_pieces_within_the_deadline_is_served(quick_proxy: Proxy) -> None:
    with _connect(quick_proxy.port) as sock:
        for piece in (b"GET /echo HTT", b"P/1.1\r\nHost: a\r\n"):
            sock.sendall(piece)
            assert not closed_within(sock, 0.2)
        sock.sendall(b"Connection: close\r\n\r\n")
        status, _ = read_response(sock)
    assert status == 200


# Smuggling: the smuggled request must never reach the app


def _smuggling_attempts(marker: str) -> dict[str, bytes]:
    smuggled = f"GET {marker} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    te_body = b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n"
    return {
        # CL.TE: a front end honouring Content-Length forwards all; a back end honouring
        # Transfer-Encoding sees "0" end the body and the rest as a second request.
        "CL.TE": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s" % (5 + len(smuggled), smuggled),
        # TE.CL: the smuggled request hides in a chunk; Content-Length ends the body early.
        "TE.CL": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n%s" % te_body,
        # TE.TE: one of two Transfer-Encodings is "obfuscated" so one side ignores it.
        "TE.TE": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: identity\r\nContent-Length: 4\r\n\r\n%s" % te_body,
        # CL.CL: two different lengths, the second request hides behind the shorter one.
        "CL.CL": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled),
    }


@pytest.mark.parametrize("kind", ["CL.TE", "TE.CL", "TE.TE", "CL.CL"])
def test_smuggled_request_never_reaches_the_app(
    proxy: Proxy, upstream: Upstream, kind: str
) -> None:
    marker = f"/smuggled/{uuid.uuid4().hex}"
    attack = _smuggling_attempts(marker)[kind]
    # A legitimate request follows on the same connection: if the proxy resynchronised on
    # either framing, the smuggled target would be forwarded before it.
    follow = f"GET /follow/{uuid.uuid4().hex} HTTP/1.1\r\nHost: a\r\n\r\n"
    response = exchange(proxy.port, attack + follow.encode())
    assert status_of(response) == 400, response[:300]  # RFC 9112 §6.3 rules 3 and 5

    sentinel = f"/sentinel/{uuid.uuid4().hex}"
    assert httpx.get(proxy.url + sentinel, timeout=IO_TIMEOUT).status_code == 200
    seen = recent(upstream)
    assert sentinel in seen, "the app's record is not working: the test could not fail"
    assert marker not in seen, f"{kind}: the smuggled request reached the app"
    assert_serves_normally(proxy)


def test_pipelined_requests_are_forwarded_each_once_in_order(
    proxy: Proxy, upstream: Upstream
) -> None:
    """The control for the smuggling tests: well-framed pipelined requests do all arrive."""
    first, second = (f"/pipelined/{uuid.uuid4().hex}" for _ in range(2))
    body = b"GET /smuggled-looking HTTP/1.1\r\nHost: a\r\n\r\n"
    data = (
        f"POST {first} HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + f"GET {second} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    )
    response = exchange(proxy.port, data)
    assert response.count(b"HTTP/1.1 200 ") == 2, response[:600]
    seen = recent(upstream)
    assert seen.count(first) == 1 and seen.count(second) == 1
    assert seen.index(first) < seen.index(second)
    assert "/smuggled-looking" not in seen  # a body is a body


# Targets that try to leave the pod


class Decoy:
    """A listener standing for "another host": knows whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def touched(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    server = Decoy()
    yield server
    server.sock.close()


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("http://{decoy}/abs/{id}", "/abs/{id}"),
        ("http://evil.example/abs/{id}", "/abs/{id}"),
        ("//{decoy}/x/{id}", "//{decoy}/x/{id}"),
        ("//evil/x/{id}", "//evil/x/{id}"),
        ("/@{decoy}/x/{id}", "/@{decoy}/x/{id}"),
        ("/@evil/x/{id}", "/@evil/x/{id}"),
    ],
)
def test_target_never_reaches_another_host(
    proxy: Proxy, decoy: Decoy, form: str, expected: str
) -> None:
    values = {"decoy": decoy.address, "id": uuid.uuid4().hex}
    target = form.format(**values)
    request = f"GET {target} HTTP/1.1\r\nHost: pod.local\r\nConnection: close\r\n\r\n"
    response = exchange(proxy.port, request.encode())
    assert status_of(response) == 200, response[:300]
    body = response.split(b"\r\n\r\n", 1)[1]
    echoed = httpx.Response(200, content=body).json()
    assert echoed["raw_path"] == expected.format(**values)
    assert not decoy.touched(), "the proxy connected to the host named in the target"


@pytest.mark.parametrize(
    "request_line", [b"CONNECT evil.example:443 HTTP/1.1", b"CONNECT 127.0.0.1:443 HTTP/1.1"]
)
def test_connect_is_refused(proxy: Proxy, upstream: Upstream, request_line: bytes) -> None:
    response = exchange(proxy.port, request_line + b"\r\nHost: evil.example:443\r\n\r\n")
    status = status_of(response)
    assert status is not None and 400 <= status < 500, response[:300]
    assert_serves_normally(proxy)


def test_connect_with_origin_form_is_refused_without_reaching_the_app(
    proxy: Proxy, upstream: Upstream
) -> None:
    marker = f"/connect/{uuid.uuid4().hex}"
    with _connect(proxy.port) as sock:
        sock.sendall(f"CONNECT {marker} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        response = sock.recv(65536)
    status = status_of(response)
    assert status is not None and 400 <= status < 500, response[:300]
    assert marker not in recent(upstream)
    assert_serves_normally(proxy)


# Upgrades the proxy does not do (h2c, CONNECT): ignored, never a hang or a lost body


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response with a Content-Length body from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    status = status_of(head)
    assert status is not None
    return status, body


H2C = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (b"Content-Length: 11\r\n", b"hello world"),
        (b"Transfer-Encoding: chunked\r\n", b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_h2c_upgrade_with_a_body_is_served_as_http1(
    proxy: Proxy, framing: bytes, body: bytes
) -> None:
    """What `curl --http2 -d ...` sends on cleartext: the Upgrade is ignored, the body is not."""
    request = b"POST /echo HTTP/1.1\r\nHost: a\r\n" + H2C + framing + b"\r\n" + body
    with _connect(proxy.port) as sock:
        sock.sendall(request)
        status, response = read_response(sock)
    assert status == 200
    echoed = httpx.Response(200, content=response).json()
    assert echoed["body_bytes"] == 11
    assert echoed["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert not any(name in ("upgrade", "http2-settings") for name, _ in echoed["headers"])
    assert_serves_normally(proxy)


def test_h2c_upgrade_then_pipelined_request_is_served_or_closed(
    proxy: Proxy, upstream: Upstream
) -> None:
    """After an Upgrade the proxy ignores, the connection must not go deaf."""
    second = f"/after-h2c/{uuid.uuid4().hex}"
    data = (
        b"GET /echo HTTP/1.1\r\nHost: a\r\n"
        + H2C
        + b"\r\n"
        + f"GET {second} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    )
    response = exchange(proxy.port, data)  # fails if the connection is left hanging
    assert status_of(response) == 200
    assert response.count(b"HTTP/1.1 ") in (1, 2)
    if response.count(b"HTTP/1.1 ") == 2:
        assert second in recent(upstream)


def test_connect_response_closes_the_connection(proxy: Proxy, upstream: Upstream) -> None:
    """A refused CONNECT leaves nothing to parse on that connection: it must be closed."""
    marker = f"/after-connect/{uuid.uuid4().hex}"
    data = (
        b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"
        + f"GET {marker} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    )
    response = exchange(proxy.port, data)  # fails if the connection is left open
    status = status_of(response)
    assert status is not None and 400 <= status < 500, response[:300]
    assert marker not in recent(upstream)


# Counting: what the parser rejects is not a request


def test_parser_rejected_requests_are_not_counted(
    upstream: Upstream, proxy_factory: Callable[..., Proxy]
) -> None:
    dedicated = proxy_factory(upstream.url)
    # Only what fails in the request line or headers: a body that breaks its framing later
    # ("bad chunk size") was already forwarded, and counts.
    head_errors = {k: v for k, v in MALFORMED.items() if k not in BODY_ERRORS}
    attacks = [
        *head_errors.values(),
        request_with_section_size(LIMIT + 1024),
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        *_smuggling_attempts("/never").values(),
    ]
    good = 0
    for index, attack in enumerate(attacks):
        assert status_of(exchange(dedicated.port, attack)) in (400, 405, 431, 501, None)
        if index % 4 == 0:  # interleave good requests, so the counter is seen to move
            assert httpx.get(dedicated.url + "/echo", timeout=IO_TIMEOUT).status_code == 200
            good += 1
    wait_until(lambda: dedicated.status().json()["counter"] >= good, 5, "the good requests")
    assert dedicated.status().json()["counter"] == good
