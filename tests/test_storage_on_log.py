"""The KV and SQL API suites again, on the embedded default store (the commit log).

``test_storage_kv.py`` and ``test_storage_sql.py`` run on in-memory SQLite; here every
one of their tests runs on ``LoggedSqliteBackend`` over a temporary directory, so
the results, errors and limits are shown to be the same on the store ``make run``
uses (WAL capture, group commit, the connection pool with a pool of one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import test_storage_kv
import test_storage_sql
from stateroom.storage.log_backend import LoggedSqliteBackend
from test_storage_kv import *  # noqa: F403
from test_storage_sql import *  # noqa: F403


@pytest.fixture(autouse=True)
def _on_the_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    made = iter(range(1_000_000))

    def logged(*_args: Any, **_kwargs: Any) -> LoggedSqliteBackend:
        # max_open=1: every other object's call reopens its connection.
        return LoggedSqliteBackend(tmp_path / f"data{next(made)}", max_open=1)

    monkeypatch.setattr(test_storage_kv, "SqliteBackend", logged)
    monkeypatch.setattr(test_storage_sql, "SqliteBackend", logged)
    yield
