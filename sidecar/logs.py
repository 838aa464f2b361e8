"""JSON-lines logging on stderr.

One line per record: `{"ts", "level", "logger", "msg", ...extra}`. Formatting happens only for
records that pass the level check (the logging module checks the level first), and the access log
is a separate logger that is disabled unless `--access-log` is given, so the request path pays
nothing for it when it's off.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

# LogRecord attributes that are not user `extra=` fields.
_IGNORED_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)


# Loggers `POST /logging` changes: ours, not uvicorn's or the libraries'.
STREAMPROXY_LOGGER = "streamproxy"
LEVELS = ("critical", "error", "warning", "info", "debug")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _IGNORED_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str, access_log: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Follows the root level until `POST /logging` sets its own.
    logging.getLogger(STREAMPROXY_LOGGER).setLevel(logging.NOTSET)
    # uvicorn's own loggers bring their own handlers and formats; route them through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers.clear()
        uv_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    access = logging.getLogger("streamproxy.access")
    access.disabled = not access_log
    access.setLevel(logging.INFO)


def current_level() -> str:
    """The level of streamproxy's own loggers, e.g. `"info"`."""
    level = logging.getLogger(STREAMPROXY_LOGGER).getEffectiveLevel()
    return logging.getLevelName(level).lower()


def set_level(level: str) -> str:
    """Set the level of streamproxy's loggers at runtime; return the previous one.

    The access log is not affected: `--access-log` alone switches it. Raise ValueError for a
    level outside `LEVELS`.
    """
    name = level.lower()
    if name not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    previous = current_level()
    logging.getLogger(STREAMPROXY_LOGGER).setLevel(name.upper())
    return previous
