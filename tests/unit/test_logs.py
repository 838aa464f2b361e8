"""sidecar/logs.py: the runtime log level of streamproxy's loggers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from sidecar.logs import JsonFormatter, configure_logging, current_level, set_level


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    ours, access = logging.getLogger("streamproxy"), logging.getLogger("streamproxy.access")
    ours_level, access_disabled, access_level = ours.level, access.disabled, access.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(ours_level)
    access.disabled, access.level = access_disabled, access_level


@pytest.mark.usefixtures("restore_logging")
def test_level_follows_the_flag_until_changed_at_runtime() -> None:
    configure_logging("warning", access_log=False)
    assert current_level() == "warning"
    assert set_level("DEBUG") == "warning"
    assert current_level() == "debug"
    assert logging.getLogger("streamproxy.health").isEnabledFor(logging.DEBUG)
    # Only ours: the libraries stay at the flag's level.
    assert not logging.getLogger("redis").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    configure_logging("info", access_log=False)  # a fresh configuration forgets it
    assert current_level() == "info"


@pytest.mark.usefixtures("restore_logging")
def test_the_access_log_is_not_switched_by_the_level() -> None:
    configure_logging("info", access_log=True)
    set_level("error")
    assert logging.getLogger("streamproxy.access").isEnabledFor(logging.INFO)


@pytest.mark.parametrize("level", ["loud", "", "notset", "10"])
def test_unknown_levels_are_refused(level: str) -> None:
    before = current_level()
    with pytest.raises(ValueError, match="debug"):
        set_level(level)
    assert current_level() == before


def test_ordinary_records_are_still_wrapped() -> None:
    record = logging.LogRecord("streamproxy.x", logging.INFO, "", 0, "hello %s", ("you",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "hello you"
    assert entry["logger"] == "streamproxy.x"


def test_levels_are_the_settings_levels() -> None:
    from typing import get_args

    from sidecar.logs import LEVELS
    from sidecar.settings import LogLevel

    assert get_args(LogLevel) == LEVELS
