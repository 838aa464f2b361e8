"""`--update-golden` for the injector's golden files (or UPDATE_GOLDEN=1 in the environment).

pytest reads `pytest_addoption` only from plugins and the first conftest files, so the option
exists when tests/conftest.py lists this module in `pytest_plugins`; the variable always works.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/inject/testdata/*.golden.yaml and *.report.txt from the injector",
    )
