"""Exceptions raised by Durable Object storage.

They mirror the error classes Cloudflare's runtime throws (``RangeError`` for
limits, ``Error`` with an ``SQLITE_*`` suffix for SQL failures) closely enough
that messages match, while fitting Python's hierarchy: a limit violation is a
``ValueError``, so code written against plain Python conventions still
catches it.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by stateroom's storage layer."""


class StorageLimitError(StorageError, ValueError):
    """A key, value or batch exceeds one of Cloudflare's documented limits.

    Cloudflare throws ``RangeError`` here; the message text follows workerd's.
    """


class SqlError(StorageError):
    """A statement passed to ``ctx.storage.sql.exec()`` failed.

    ``code`` is SQLite's symbolic result code (``"SQLITE_CONSTRAINT"``,
    ``"SQLITE_AUTH"``...) when SQLite produced the error, else ``None``. The
    message ends in ``": SQLITE_..."`` like Cloudflare's.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        # Whether statements that ran before the failure changed data: those
        # changes stay in the implicit transaction and must still be committed.
        self.wrote = False


class SqlNotAuthorizedError(SqlError):
    """The statement touches something user SQL may not: a reserved table, a
    transaction statement, a disallowed pragma, ``ATTACH``."""


class TransactionClosedError(StorageError):
    """An operation was called on a ``transaction()`` object after it was rolled
    back or after its closure returned."""


class StorageBrokenError(StorageError):
    """A commit failed, so writes the object believed it had made are lost.

    Every later storage call raises this too: the runtime must reset the object
    (construct a fresh instance over freshly opened storage), exactly as
    Cloudflare does when a write cannot be confirmed.
    """


class StoreInUseError(StorageError):
    """The object's database is already open, in this process or another one.

    A Durable Object has exactly one live instance; two connections writing the
    same file would break that guarantee, so opening it twice is refused.
    """


class TransactionBusyError(StorageError):
    """A synchronous storage call met another event's open ``transaction()``."""


class DeleteAllInTransactionError(StorageError):
    """``deleteAll()`` inside ``transaction()`` or ``transactionSync()``: as on Cloudflare,
    it cannot be undone with the rest of a transaction, so it is refused."""


class StorageDamagedError(StorageError):
    """An object's database file is not a valid database any more (overwritten,
    truncated, disk damage). Only that object is affected."""


def damaged(
    path: object, namespace: str, object_id: str, exc: BaseException, *, cache: bool = False
) -> StorageDamagedError:
    """The error for a damaged file, saying what to do about it."""
    remedy = (
        "its next activation restores it from the commit log"
        if cache
        else "restore it from an export (stateroom storage import --replace), or move the "
        "file away to start the object empty"
    )
    return StorageDamagedError(
        f"the stored data of {namespace}/{object_id} is damaged ({path}: {exc}); other "
        f"objects are unaffected; {remedy}"
    )
