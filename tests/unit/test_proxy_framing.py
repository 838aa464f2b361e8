"""sidecar.proxy.framing: one function per direction decides a body's framing (RFC 9112 §6)."""

from __future__ import annotations

import pytest

from sidecar.proxy import framing
from sidecar.proxy.framing import FramingError, request_framing, response_framing


def test_request_without_framing_headers_has_no_body() -> None:
    """RFC 9112 §6.3 rule 7: a request with neither CL nor TE has a zero-length body."""
    assert request_framing([], []) == (framing.NO_BODY, 0)


def test_request_content_length() -> None:
    """RFC 9112 §6.3 rule 6."""
    assert request_framing([b"12"], []) == (framing.LENGTH, 12)
    assert request_framing([b"0"], []) == (framing.NO_BODY, 0)


def test_request_chunked() -> None:
    """RFC 9112 §6.3 rule 4: chunked as the final coding."""
    assert request_framing([], [b"Chunked"]) == (framing.CHUNKED, -1)


def test_content_length_with_transfer_encoding_is_refused() -> None:
    """RFC 9112 §6.3 rule 3: a server MAY reject; a proxy that guesses enables smuggling."""
    with pytest.raises(FramingError) as info:
        request_framing([b"3"], [b"chunked"])
    assert info.value.status == 400


@pytest.mark.parametrize("lengths", [[b"3", b"4"], [b"3, 4"]])
def test_differing_content_lengths_are_refused(lengths: list[bytes]) -> None:
    """RFC 9112 §6.3 rule 5: differing lengths are an unrecoverable error."""
    with pytest.raises(FramingError) as info:
        request_framing(lengths, [])
    assert info.value.status == 400


def test_repeated_equal_content_lengths_are_one() -> None:
    """RFC 9110 §8.6: a list of identical values may be taken as one."""
    assert request_framing([b"3", b"3"], []) == (framing.LENGTH, 3)


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1e3", b""])
def test_invalid_content_length_is_refused(value: bytes) -> None:
    with pytest.raises(FramingError) as info:
        request_framing([value], [])
    assert info.value.status == 400


@pytest.mark.parametrize("codings", [[b"gzip, chunked"], [b"gzip", b"chunked"]])
def test_a_transfer_coding_other_than_chunked_is_not_implemented(codings: list[bytes]) -> None:
    """RFC 9112 §6.1: a server that does not understand a transfer coding answers 501 (never
    forwards the body with the coding's label dropped)."""
    with pytest.raises(FramingError) as info:
        request_framing([], codings)
    assert info.value.status == 501


@pytest.mark.parametrize("codings", [[b"gzip"], [b"chunked, gzip"], [b"xchunked"]])
def test_chunked_not_final_is_a_bad_request(codings: list[bytes]) -> None:
    """RFC 9112 §6.3 rule 4: the length cannot be determined; the server MUST answer 400."""
    with pytest.raises(FramingError) as info:
        request_framing([], codings)
    assert info.value.status == 400


def test_chunked_twice_is_a_bad_request() -> None:
    """RFC 9112 §6.1: a sender MUST NOT apply chunked more than once."""
    with pytest.raises(FramingError) as info:
        request_framing([], [b"chunked, chunked"])
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("head_only", "status"), [(True, 200), (False, 101), (False, 103), (False, 204), (False, 304)]
)
def test_responses_without_body(head_only: bool, status: int) -> None:
    """RFC 9112 §6.3 rule 1: HEAD, 1xx, 204 and 304 end at their head (CL kept, §8.6)."""
    assert not framing.response_has_body(head_only, status)
    assert response_framing(False, True, False) == framing.NO_BODY


def test_response_with_length_keeps_it() -> None:
    assert response_framing(True, True, False) == framing.LENGTH
    assert response_framing(True, True, True) == framing.LENGTH


def test_response_without_length_is_chunked_for_http11_and_close_delimited_for_http10() -> None:
    """RFC 9112 §6.1: a server MUST NOT send chunked to an HTTP/1.0 client."""
    assert response_framing(True, False, False) == framing.CHUNKED
    assert response_framing(True, False, True) == framing.CLOSE


def test_chunk_writer() -> None:
    """RFC 9112 §7.1: chunk-size in hex, CRLF, data, CRLF; an empty piece is never a chunk
    (it would read as the last-chunk)."""
    assert framing.frame(framing.CHUNKED, b"hello") == b"5\r\nhello\r\n"
    assert framing.frame(framing.CHUNKED, b"") == b""
    assert framing.frame(framing.LENGTH, b"raw") == b"raw"
    assert framing.END[framing.CHUNKED] == b"0\r\n\r\n"
