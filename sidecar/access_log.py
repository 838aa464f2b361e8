"""The access log line: one JSON object per proxied request, built only when the log is on.

The line has the shape of every other log line (`ts`, `level`, `logger`, `msg`) plus the
request's fields, and is written as is (logs.py's formatter passes a `PREFORMATTED` record
through), so log shippers parse one schema and the JSON is encoded once, not twice.

Strings are escaped with the C JSON string encoder: control characters, quotes, backslashes and
everything outside ASCII become `\\uXXXX` escapes, so a hostile path or user agent can neither
split the line nor put terminal escapes in it. Bytes that are not UTF-8 show as `\\xNN`. The query
string is not logged (it often carries tokens), and a path or user agent is cut at
`MAX_FIELD_BYTES` so one request cannot write a 64 KiB line. Building the line costs about
1.5 µs; `json.dumps` of the same dict costs about 8 µs.

How the protocol calls it, once per request when the exchange ends (response complete, error,
or client gone), only if `ACCESS_LOG.enabled` (read once at startup, never per request):

    if access_log_on:
        ACCESS_LOG.write(format_line(
            method=b"GET", raw_path=b"/items/1", status=200,
            bytes_in=request_body_bytes, bytes_out=response_body_bytes,
            total_seconds=now - started, upstream_seconds=head_at - sent_at or None,
            client="10.1.2.3", request_id=b"9f86...", user_agent=b"curl/8.5.0",
        ))
"""

from __future__ import annotations

import logging
import time
from json.encoder import encode_basestring_ascii as _json_string

from sidecar.logs import PREFORMATTED

LOGGER_NAME = "streamproxy.access"
MAX_FIELD_BYTES = 2048
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
    """Where lines go: the `streamproxy.access` logger, switched by `--access-log`."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(LOGGER_NAME)

    @property
    def enabled(self) -> bool:
        """Ask once at startup (logging is configured before the protocol is made)."""
        return not self._logger.disabled and self._logger.isEnabledFor(logging.INFO)

    def write(self, line: str) -> None:
        self._logger.info(line, extra=PREFORMATTED)


ACCESS_LOG = AccessLog()
