"""The access log line: one JSON object per proxied request, built only when the log is on.

The line has the shape of every other log line (`ts`, `level`, `logger`, `msg`) plus the
request's fields, so log shippers parse one schema. Lines are buffered and written to stderr
(where the JSON log handler writes too) every 100 ms: going through `logging` would build a
`LogRecord`, take the handler's lock, encode the JSON twice and write once per line. The
`streamproxy.access` logger stays the switch: `--access-log` enables it (logs.py).

Strings are escaped with the C JSON string encoder: control characters, quotes, backslashes and
everything outside ASCII become `\\uXXXX` escapes, so a hostile path or user agent can neither
split the line nor put terminal escapes in it. Bytes that are not UTF-8 show as `\\xNN`. The query
string is not logged (it often carries tokens), and a path or user agent is cut at
`MAX_FIELD_BYTES` so one request cannot write a 64 KiB line. Building the line costs about
2 µs (`json.dumps` of the same dict: about 8 µs); built and written to a pipe, buffered, about
4 µs (a write per line: about 12 µs; through `logging`: about 10 µs even to /dev/null).

How the protocol calls it, once per request when the exchange ends (response complete, error,
or client gone), only when the log is on (`guards.access_log`, sidecar/guardrails.py, is None
when it is off: decided once at startup, never asked per request):

    if (access_log := guards.access_log) is not None:
        access_log.write(format_line(
            method=b"GET", raw_path=b"/items/1", status=200,
            bytes_in=request_body_bytes, bytes_out=response_body_bytes,
            total_seconds=now - started,
            upstream_seconds=head_at - sent_at if head_at else None,
            client="10.1.2.3", request_id=b"9f86...", user_agent=b"curl/8.5.0",
        ))

and the server calls `ACCESS_LOG.flush()` after the last request, before it exits.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _json_string
from typing import TextIO

LOGGER_NAME = "streamproxy.access"
MAX_FIELD_BYTES = 2048
# Buffered lines are written at most this late, or as soon as this many bytes wait.
FLUSH_SECONDS = 0.1
FLUSH_BYTES = 64 * 1024
TRUNCATED = "[...]"


def _text(value: bytes | None) -> str:
    if value is None:
        return "null"
    if len(value) > MAX_FIELD_BYTES:
        return _json_string(value[:MAX_FIELD_BYTES].decode("utf-8", "backslashreplace") + TRUNCATED)
    return _json_string(value.decode("utf-8", "backslashreplace"))


def _ms(seconds: float | None) -> str:
    return "null" if seconds is None else f"{seconds * 1000:.3f}"


def format_line(
    *,
    method: bytes,
    raw_path: bytes,
    status: int,
    bytes_in: int,
    bytes_out: int,
    total_seconds: float,
    upstream_seconds: float | None,
    client: str | None,
    request_id: bytes | None,
    user_agent: bytes | None,
) -> str:
    """One JSON object (no newline). `upstream_seconds` is None when the app never answered
    (refused, shed, too large); `request_id` None when request IDs are off."""
    return (
        f'{{"ts":{time.time():.3f},"level":"info","logger":"{LOGGER_NAME}","msg":"request",'
        f'"method":{_text(method)},"path":{_text(raw_path)},"status":{status:d},'
        f'"bytes_in":{bytes_in:d},"bytes_out":{bytes_out:d},'
        f'"duration_ms":{_ms(total_seconds)},"upstream_ms":{_ms(upstream_seconds)},'
        f'"client":{"null" if client is None else _json_string(client)},'
        f'"request_id":{_text(request_id)},"user_agent":{_text(user_agent)}}}'
    )


class AccessLog:
    """Where lines go: stderr, when the `streamproxy.access` logger (`--access-log`) is on.

    Lines are buffered and written together at most `FLUSH_SECONDS` later (or once
    `FLUSH_BYTES` are waiting), as Envoy flushes its access logs: one write per line to the
    container runtime's pipe costs a syscall and a wake-up of the reader every request. Call
    `flush()` at shutdown so the last lines are not lost.
    """

    def __init__(self, logger: logging.Logger | None = None, stream: TextIO | None = None) -> None:
        self._logger = logger or logging.getLogger(LOGGER_NAME)
        self._stream = stream  # None: sys.stderr as it is when flushing
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        """Ask once at startup (logging is configured before the protocol is made)."""
        return not self._logger.disabled and self._logger.isEnabledFor(logging.INFO)

    def write(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a script, a test): write at once
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines, self._size = self._lines, [], 0
            stream = self._stream or sys.stderr
            stream.write("\n".join(lines) + "\n")
            stream.flush()


ACCESS_LOG = AccessLog()
# A safety net for exits that skip the server's own flush (an exception, a `sys.exit`).
atexit.register(ACCESS_LOG.flush)
