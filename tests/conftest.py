from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stateroom.compiled import stale_modules
from support import serve as _serve


def pytest_configure(config: pytest.Config) -> None:
    stale = stale_modules()
    if stale:
        # The compiled extension would shadow the edited source: the tests would test old code.
        raise pytest.UsageError(
            "these hot modules changed since they were compiled: "
            + ", ".join(stale)
            + ". Rebuild with `make test` (or `.venv/bin/pip install -e .`)."
        )


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``with serve("examples/websocket-server", "--idle-timeout", "0.2") as srv:``."""
    return _serve


# A throw-away PostgreSQL for the PostgreSQL commit log's tests (tests/postgres.py).
from postgres import postgres_dsn, postgres_server  # noqa: E402, F401
