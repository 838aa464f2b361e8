"""sidecar/access_log.py: one JSON object per request, hostile bytes escaped."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from sidecar.access_log import MAX_FIELD_BYTES, TRUNCATED, AccessLog, format_line


def line(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "method": b"GET",
        "raw_path": b"/items/1",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 1234,
        "total_seconds": 0.0012345,
        "upstream_seconds": 0.001,
        "client": "10.1.2.3",
        "request_id": b"9f86d081884c7d659a2feaa0c55ad015",
        "user_agent": b"curl/8.5.0",
    }
    fields.update(overrides)
    return format_line(**fields)


def test_one_json_object_with_every_field() -> None:
    text = line()
    assert "\n" not in text
    entry = json.loads(text)
    assert entry.pop("ts") > 1.7e9
    assert entry == {
        "level": "info",
        "logger": "streamproxy.access",
        "msg": "request",
        "method": "GET",
        "path": "/items/1",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 1234,
        "duration_ms": 1.234,  # rounded to the microsecond
        "upstream_ms": 1.0,
        "client": "10.1.2.3",
        "request_id": "9f86d081884c7d659a2feaa0c55ad015",
        "user_agent": "curl/8.5.0",
    }


def test_missing_values_are_null() -> None:
    entry = json.loads(line(upstream_seconds=None, client=None, request_id=None, user_agent=None))
    assert entry["upstream_ms"] is None
    assert entry["client"] is None
    assert entry["request_id"] is None
    assert entry["user_agent"] is None


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b'/a"b\\c', '/a"b\\c'),  # quote and backslash escaped, not ending the string
        (b"/a\r\nb", "/a\r\nb"),  # CR LF cannot split the line
        (b"/\x1b[2J", "/\x1b[2J"),  # a terminal escape arrives escaped
        (b"/\x00", "/\x00"),
        (b"/caf\xc3\xa9", "/caf\u00e9"),  # UTF-8 decoded
        (b"/\xff\xfe", "/\\xff\\xfe"),  # not UTF-8: shown as \xNN
        (b"/\xe2\x80\xa8", "/\u2028"),  # a JavaScript line separator
    ],
)
def test_hostile_bytes_in_path_and_user_agent_are_escaped(raw: bytes, shown: str) -> None:
    text = line(raw_path=raw, user_agent=b"UA " + raw)
    assert text.isascii()
    assert not any(ch < " " for ch in text), "no raw control character in the line"
    entry = json.loads(text)
    assert entry["path"] == shown
    assert entry["user_agent"] == "UA " + shown
    assert entry["status"] == 200  # nothing after the field was disturbed


def test_long_fields_are_cut() -> None:
    entry = json.loads(line(raw_path=b"/" + b"a" * 70_000, user_agent=b"u" * 70_000))
    assert entry["path"] == "/" + "a" * (MAX_FIELD_BYTES - 1) + TRUNCATED
    assert len(entry["user_agent"]) == MAX_FIELD_BYTES + len(TRUNCATED)


def test_a_hostile_method_is_escaped() -> None:
    entry = json.loads(line(method=b'G"ET\n'))
    assert entry["method"] == 'G"ET\n'


def test_access_log_writes_one_line_per_request_and_follows_the_logger_switch() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("streamproxy.access.test")
    logger.setLevel(logging.INFO)
    log = AccessLog(logger, stream)
    assert log.enabled
    first, second = line(raw_path=b"/100%25"), line(raw_path=b"/a\nb")
    log.write(first)
    log.write(second)
    assert stream.getvalue() == first + "\n" + second + "\n"  # one JSON object per line
    assert [json.loads(text)["path"] for text in stream.getvalue().splitlines()] == [
        "/100%25",
        "/a\nb",
    ]
    logger.disabled = True
    assert not log.enabled


def test_the_default_access_log_is_off_until_configured(capsys: pytest.CaptureFixture[str]) -> None:
    from sidecar.access_log import ACCESS_LOG
    from sidecar.logs import configure_logging

    root, access = logging.getLogger(), logging.getLogger("streamproxy.access")
    handlers, level, disabled = root.handlers[:], root.level, access.disabled
    try:
        configure_logging("info", access_log=False)
        assert not ACCESS_LOG.enabled
        configure_logging("info", access_log=True)
        assert ACCESS_LOG.enabled
        ACCESS_LOG.write(line())
        assert json.loads(capsys.readouterr().err)["logger"] == "streamproxy.access"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        access.disabled = disabled


async def test_lines_are_buffered_then_written_together() -> None:
    import asyncio

    from sidecar.access_log import FLUSH_SECONDS

    stream = io.StringIO()
    log = AccessLog(logging.getLogger("streamproxy.access.buffered"), stream)
    log.write(line(status=200))
    log.write(line(status=201))
    assert stream.getvalue() == ""  # not one write per request
    await asyncio.sleep(FLUSH_SECONDS * 3)
    assert [json.loads(text)["status"] for text in stream.getvalue().splitlines()] == [200, 201]


async def test_a_full_buffer_and_flush_write_at_once() -> None:
    from sidecar.access_log import FLUSH_BYTES

    stream = io.StringIO()
    log = AccessLog(logging.getLogger("streamproxy.access.buffered"), stream)
    text = line()
    for _ in range(FLUSH_BYTES // len(text) + 1):
        log.write(text)
    assert stream.getvalue().count("\n") == FLUSH_BYTES // len(text) + 1
    log.write(line(status=204))
    log.flush()  # at shutdown
    assert json.loads(stream.getvalue().splitlines()[-1])["status"] == 204
    log.flush()  # nothing left: no empty line
    assert not stream.getvalue().endswith("\n\n")
