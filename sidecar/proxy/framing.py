"""Message framing, decided in one place (RFC 9112 §6): how long is a body, and how is it
written on the other side.

    request  (client -> app)   `request_framing`   NO_BODY | LENGTH | CHUNKED, or a refusal
    response (app -> client)   `response_framing`  NO_BODY | LENGTH | CHUNKED | CLOSE

Reading is httptools' job on both sides (it de-chunks and counts lengths); this module decides
what the parser's verdict means for the other side, and `frame`/`END` write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

NO_BODY: Final = 0
LENGTH: Final = 1  # Content-Length: bytes pass as they are
CHUNKED: Final = 2  # each piece written as one chunk, then the last-chunk
CLOSE: Final = 3  # close-delimited: the body ends when the connection does

# What ends a body of each framing on the wire.
END: Final = (b"", b"", b"0\r\n\r\n", b"")


class FramingError(Exception):
    """A request whose framing the proxy refuses; `status` says how (RFC 9112 §6.3)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"FramingError(status={self.status}, reason={self.reason!r})"


def request_framing(lengths: Sequence[bytes], codings: Sequence[bytes]) -> tuple[int, int]:
    """Framing and length of a request body from its `Content-Length` and `Transfer-Encoding`
    values, following RFC 9112 §6.3 in order:

    - Transfer-Encoding with chunked not the final coding: 400 (rule 4, MUST);
    - Transfer-Encoding with Content-Length: 400 (rule 3: a server MAY reject; guessing is how
      requests are smuggled);
    - chunked with any other coding before it: 501 (RFC 9112 §6.1, a coding not understood);
    - differing or invalid Content-Lengths: 400 (rule 5)."""
    if codings:
        listed = [c.strip(b" \t").lower() for value in codings for c in value.split(b",")]
        if listed[-1] != b"chunked":
            raise FramingError(400, "chunked_not_final")
        if lengths:
            raise FramingError(400, "content_length_with_transfer_encoding")
        if len(listed) > 1:
            if listed.count(b"chunked") > 1:
                raise FramingError(400, "chunked_twice")  # §6.1: chunked at most once
            raise FramingError(501, "transfer_coding_not_implemented")
        return CHUNKED, -1
    if not lengths:
        return NO_BODY, 0
    first = lengths[0].strip(b" \t")
    for value in lengths:
        for item in value.split(b","):
            if item.strip(b" \t") != first:
                raise FramingError(400, "conflicting_content_length")
    if not first.isdigit():
        raise FramingError(400, "invalid_content_length")
    length = int(first)
    return (LENGTH, length) if length else (NO_BODY, 0)


def response_has_body(head_only: bool, status: int) -> bool:
    """RFC 9112 §6.3 rule 1: a response to HEAD, and any 1xx, 204 or 304, ends with its head
    whatever its Content-Length says (RFC 9110 §8.6 allows one)."""
    return not (head_only or status < 200 or status == 204 or status == 304)


def response_framing(has_body: bool, app_length: bool, client_http10: bool) -> int:
    """How the app's response body is written to the client.

    - no body (HEAD, 1xx, 204, 304): the head only, its Content-Length kept;
    - the app gave a Content-Length: the same length, bytes passed as they are;
    - else chunked for an HTTP/1.1 client, close-delimited for an HTTP/1.0 one, which never
      gets `Transfer-Encoding: chunked` (RFC 9112 §6.1: MUST NOT)."""
    if not has_body:
        return NO_BODY
    if app_length:
        return LENGTH
    return CLOSE if client_http10 else CHUNKED


def frame(framing: int, data: bytes) -> bytes:
    """`data` as written in a body of `framing` (chunked: one chunk; never an empty one, which
    would end the body)."""
    if framing == CHUNKED:
        return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
    return data
