from __future__ import annotations

import os

import pytest


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    option = bool(request.config.getoption("--update-golden", default=False))
    return option or os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")
