"""A consistent copy of one object's data, read while a server may be running.

The embedded store never locks a reader out, because a reader needs no lock: an
object's durable state is its database file as of the commit log's checkpoint
plus every record of it after that checkpoint (``log_backend.py``). So a reader
takes the checkpoint position, copies the file, replays the object's records
after that position from the log's segments, and checks the checkpoint did not
move meanwhile (if it did, pages it copied may be newer than the records it
read past: it reads again). What it returns is the object at a commit the log
had made durable, never a commit still in flight, and its WAL (which may hold
those) is not read at all.

Used by ``stateroom storage`` (ls, get, sql, export) against a live server.
"""

from __future__ import annotations

import os
from pathlib import Path

from stateroom.storage.local_log import LocalCommitLog
from stateroom.storage.wal import apply

__all__ = ["SnapshotError", "read_image", "stored_namespaces"]

_ATTEMPTS = 20


class SnapshotError(Exception):
    """The object's data could not be read consistently."""


def read_image(data_dir: str | os.PathLike[str], namespace: str, object_id: str) -> bytes | None:
    """The object's database image (a SQLite file's bytes), or None if it has no data."""
    root = Path(data_dir)
    from stateroom.storage.log_backend import LOG_DIRECTORY

    path = root / namespace / f"{object_id}.sqlite3"
    log_dir = root / LOG_DIRECTORY
    for _ in range(_ATTEMPTS):
        log = LocalCommitLog.reader(log_dir)
        before = log.read_checkpoint()
        try:
            image = bytearray(path.read_bytes())
        except FileNotFoundError:
            image = bytearray()
        try:
            records = [
                record
                for _position, record in log.records_after(before)
                if record.namespace == namespace and record.object_id == object_id
            ]
        except FileNotFoundError:
            continue  # a checkpoint deleted a segment under us: read again
        if log.read_checkpoint() != before:
            continue
        for record in records:
            apply(image, record.frames, record.page_size)
        return bytes(image) if image else None
    raise SnapshotError(
        f"{namespace}/{object_id}: the server checkpointed {_ATTEMPTS} times while this "
        "read ran; try again"
    )


def stored_namespaces(data_dir: str | os.PathLike[str]) -> list[str]:
    """Namespaces (Durable Object classes) with stored objects under ``data_dir``."""
    root = Path(data_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.sqlite3"))
    )
