"""sidecar.proxy.protocol helpers that need no socket (the protocol itself is tested with real
sockets in tests/integration/test_wire_edges.py and test_hostile_http.py)."""

from __future__ import annotations

import pytest

from sidecar.proxy.protocol import origin_form


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/a/b?x=1", b"/a/b?x=1"),
        (b"http://evil.example/abs?q=1", b"/abs?q=1"),
        (b"HTTPS://evil.example", b"/"),
        (b"http://evil.example?q=1", b"/?q=1"),
        (b"//evil/x", b"//evil/x"),
        (b"/@evil/x", b"/@evil/x"),
    ],
)
def test_absolute_form_keeps_only_path_and_query(target: bytes, expected: bytes) -> None:
    """RFC 9112 §3.2.2: a server MUST accept absolute-form; the host it names is never used
    (the sidecar has one upstream), and an origin-form target is kept byte for byte."""
    assert origin_form(target) == expected
