"""sidecar/body_limit.py: --max-request-body, by Content-Length and by running total."""

from __future__ import annotations

import pytest

from sidecar.body_limit import BodyLimit, too_large_response


def test_unset_is_unlimited() -> None:
    limit = BodyLimit(None)
    assert not limit.enabled
    assert not limit.declared_too_large(10**12)
    assert not limit.crossed(10**12)
    assert limit.refused == 0


def test_content_length_over_the_limit_is_refused_at_the_head() -> None:
    limit = BodyLimit(1000)
    assert limit.enabled
    assert not limit.declared_too_large(1000)  # exactly the limit is allowed
    assert limit.declared_too_large(1001)
    assert not limit.declared_too_large(None)  # chunked: decided while streaming
    assert limit.refused == 1


def test_running_total_crossing_the_limit() -> None:
    limit = BodyLimit(10)
    total = 0
    verdicts = []
    for chunk in (b"abcd", b"efgh", b"ij", b"k"):
        total += len(chunk)
        verdicts.append(limit.crossed(total))
    assert verdicts == [False, False, False, True]
    assert limit.refused == 1


def test_zero_allows_only_empty_bodies() -> None:
    limit = BodyLimit(0)
    assert not limit.declared_too_large(0)
    assert limit.declared_too_large(1)
    assert limit.crossed(1)


def test_negative_is_refused() -> None:
    with pytest.raises(ValueError):
        BodyLimit(-1)


def test_too_large_response_is_413_and_closes() -> None:
    head, _, body = too_large_response().partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Content Too Large"
    names = dict(line.split(b": ", 1) for line in lines)
    assert names[b"x-streamproxy-error"] == b"body_too_large"
    assert names[b"connection"] == b"close"
    assert names[b"content-length"] == str(len(body)).encode()
