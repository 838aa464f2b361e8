"""sidecar/in_flight.py: the load-shedding gate of --max-in-flight."""

from __future__ import annotations

import pytest

from sidecar.in_flight import InFlightLimit, overloaded_response


def test_the_n_plus_first_is_shed_while_n_are_in_flight() -> None:
    gate = InFlightLimit(3)
    assert [gate.try_acquire() for _ in range(3)] == [True, True, True]
    assert gate.try_acquire() is False
    assert (gate.in_flight, gate.admitted, gate.shed) == (3, 3, 1)
    gate.release()
    assert gate.try_acquire() is True  # a slot freed: admitted again at once
    assert (gate.in_flight, gate.admitted, gate.shed) == (3, 4, 1)


def test_zero_is_unlimited_but_still_counts() -> None:
    gate = InFlightLimit(0)
    for _ in range(10_000):
        assert gate.try_acquire()
    assert (gate.in_flight, gate.shed) == (10_000, 0)
    for _ in range(10_000):
        gate.release()
    assert gate.in_flight == 0


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        InFlightLimit(-1)


def test_overloaded_response_is_503_with_retry_after_and_the_error_header() -> None:
    head, _, body = overloaded_response().partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    assert status_line == b"HTTP/1.1 503 Service Unavailable"
    names = dict(line.split(b": ", 1) for line in lines)
    assert names[b"x-streamproxy-error"] == b"overloaded"
    assert names[b"retry-after"] == b"1"
    assert names[b"content-length"] == str(len(body)).encode()
    assert names[b"connection"] == b"close"
    assert b"connection" not in overloaded_response(close=False).lower()
