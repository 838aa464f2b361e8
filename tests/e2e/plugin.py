"""`--keep-cluster` for the kind suite (or E2E_KEEP_CLUSTER=1 in the environment).

pytest reads `pytest_addoption` only from plugins and the first conftest files, so the option
exists when tests/conftest.py lists this module in `pytest_plugins`; the variable always works.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-cluster",
        action="store_true",
        default=False,
        help="kind suite: reuse the cluster if it exists and leave it running afterwards",
    )
