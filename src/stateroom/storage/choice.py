"""Which storage backend a server runs on, from ``--storage`` and ``--persist-to``.

* ``local`` (the default): the embedded commit log (``log_backend.py``), files
  under the data directory, one group-committed log making them durable.
* ``postgresql://user:password@host:port/db``: the commit log in PostgreSQL
  (``postgres_log.py``); the data directory only holds a cache of the objects this
  server runs (``<data>/postgres-cache/``), rebuilt from the database on activation.
* ``files``: every object's file fsynced on each commit (``sqlite.py``), the
  behaviour before the commit log; no log to replay, one fsync per commit.
* ``memory``: nothing on disk (tests; ``--in-memory``).
"""

from __future__ import annotations

import os
from pathlib import Path

from stateroom.storage.backend import StorageBackend

__all__ = ["close_backend", "is_postgres", "open_backend"]

POSTGRES_CACHE = "postgres-cache"


def is_postgres(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


async def open_backend(store: str, data_dir: str | os.PathLike[str] | None) -> StorageBackend:
    """The backend ``store`` names, over ``data_dir`` where it keeps files."""
    from stateroom.storage.sqlite import SqliteBackend

    if store == "memory":
        return SqliteBackend(in_memory=True)
    if data_dir is None:
        raise ValueError(f"--storage {store} needs a data directory")
    if store == "files":
        return SqliteBackend(Path(data_dir))
    from stateroom.storage.log_backend import LoggedSqliteBackend

    if store == "local":
        return LoggedSqliteBackend(Path(data_dir))
    if is_postgres(store):
        from stateroom.storage.postgres_log import PostgresCommitLog

        log = PostgresCommitLog(store)
        await log.start()
        try:
            return LoggedSqliteBackend(Path(data_dir) / POSTGRES_CACHE, log=log)
        except BaseException:
            await log.aclose()
            raise
    raise ValueError(
        f"unknown --storage {store!r}: use local, files, memory or a postgresql:// URL"
    )


async def close_backend(backend: StorageBackend) -> None:
    """Close ``backend``, waiting for a remote log to settle what it was given."""
    closer = getattr(backend, "aclose", None)
    if closer is not None:
        await closer()
    else:
        backend.close()
