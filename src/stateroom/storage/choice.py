"""Which storage backend a server runs on, from ``--storage`` and ``--persist-to``.

* ``local`` (the default): the embedded commit log (``log_backend.py``), files
  under the data directory, one group-committed log making them durable.
* ``files``: every object's file fsynced on each commit (``sqlite.py``), the
  behaviour before the commit log; no log to replay, one fsync per commit.
* ``memory``: nothing on disk (tests; ``--in-memory``).
"""

from __future__ import annotations

import os
from pathlib import Path

from stateroom.storage.backend import StorageBackend

__all__ = ["STORES", "open_backend"]

STORES = ("local", "files", "memory")


def open_backend(store: str, data_dir: str | os.PathLike[str] | None) -> StorageBackend:
    """The backend ``store`` names, over ``data_dir`` where it keeps files."""
    from stateroom.storage.sqlite import SqliteBackend

    if store == "memory":
        return SqliteBackend(in_memory=True)
    if data_dir is None:
        raise ValueError(f"--storage {store} needs a data directory")
    if store == "files":
        return SqliteBackend(Path(data_dir))
    if store == "local":
        from stateroom.storage.log_backend import LoggedSqliteBackend

        return LoggedSqliteBackend(Path(data_dir))
    raise ValueError(f"unknown --storage {store!r}: use one of {', '.join(STORES)}")
