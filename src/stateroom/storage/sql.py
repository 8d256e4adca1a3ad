"""``ctx.storage.sql``: Cloudflare's SQL API over the object's database.

``sql.exec(query, *bindings)`` runs one or more statements synchronously and
returns a cursor over the last statement's rows. Statements join the implicit
per-turn transaction (see ``coalesce.py``), so SQL writes coalesce with KV
writes and hold outputs until they are durable, exactly like ``put()``.

Differences from Cloudflare, all on the safe side: the cursor is fully read
when ``exec()`` returns (a stable snapshot, even across an ``await``), so
``rowsRead``/``rowsWritten`` are final at once; integers keep full 64-bit
precision (JavaScript rounds past 2**53).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from stateroom.storage.backend import ObjectStore, SqlResult, SqlValue
from stateroom.storage.coalesce import ImplicitTransaction
from stateroom.storage.errors import SqlError

__all__ = ["IteratorResult", "RawSqlCursor", "SqlCursor", "SqlStorage"]

T = TypeVar("T")

Row = dict[str, SqlValue]


@dataclass(frozen=True, slots=True)
class IteratorResult(Generic[T]):
    """What ``cursor.next()`` returns, shaped like a JavaScript iterator result."""

    done: bool
    value: T | None = None


class _Rows:
    """The rows of one ``exec()`` and the read position both cursor views share."""

    __slots__ = ("columns", "pos", "result")

    def __init__(self, result: SqlResult) -> None:
        self.result = result
        self.columns = result.column_names
        self.pos = 0

    def take(self) -> tuple[SqlValue, ...] | None:
        rows = self.result.rows
        if self.pos >= len(rows):
            return None
        row = rows[self.pos]
        self.pos += 1
        return row

    def take_rest(self) -> Sequence[tuple[SqlValue, ...]]:
        rest = self.result.rows[self.pos :]
        self.pos = len(self.result.rows)
        return rest

    def take_one(self) -> tuple[SqlValue, ...]:
        row = self.take()
        if row is None:
            raise SqlError("Expected exactly one result from SQL query, but got no results.")
        if self.take() is not None:
            raise SqlError("Expected exactly one result from SQL query, but got multiple results.")
        return row


class SqlCursor:
    """The result of ``sql.exec()``: an iterator of rows as dicts.

    With duplicate column names the dict keeps the last one (as in
    JavaScript); ``raw()`` rows keep them all.
    """

    __slots__ = ("_rows",)

    def __init__(self, result: SqlResult) -> None:
        self._rows = _Rows(result)

    def _dict(self, row: tuple[SqlValue, ...]) -> Row:
        return dict(zip(self._rows.columns, row, strict=True))

    def __iter__(self) -> SqlCursor:
        return self

    def __next__(self) -> Row:
        row = self._rows.take()
        if row is None:
            raise StopIteration
        return self._dict(row)

    def next(self) -> IteratorResult[Row]:
        """JavaScript-style step: ``.done`` and ``.value``."""
        row = self._rows.take()
        if row is None:
            return IteratorResult(done=True)
        return IteratorResult(done=False, value=self._dict(row))

    def toArray(self) -> list[Row]:
        """All remaining rows."""
        return [self._dict(row) for row in self._rows.take_rest()]

    to_array = toArray

    def one(self) -> Row:
        """The only remaining row; ``SqlError`` if there are none or several."""
        return self._dict(self._rows.take_one())

    def raw(self) -> RawSqlCursor:
        """The same rows as lists of values; shares this cursor's position."""
        return RawSqlCursor(self._rows)

    @property
    def columnNames(self) -> list[str]:
        return list(self._rows.columns)

    @property
    def rowsRead(self) -> int:
        return self._rows.result.rows_read

    @property
    def rowsWritten(self) -> int:
        return self._rows.result.rows_written

    column_names = columnNames
    rows_read = rowsRead
    rows_written = rowsWritten


class RawSqlCursor:
    """``cursor.raw()``: rows as lists of values in ``columnNames`` order."""

    __slots__ = ("_rows",)

    def __init__(self, rows: _Rows) -> None:
        self._rows = rows

    def __iter__(self) -> RawSqlCursor:
        return self

    def __next__(self) -> list[SqlValue]:
        row = self._rows.take()
        if row is None:
            raise StopIteration
        return list(row)

    def next(self) -> IteratorResult[list[SqlValue]]:
        row = self._rows.take()
        if row is None:
            return IteratorResult(done=True)
        return IteratorResult(done=False, value=list(row))

    def toArray(self) -> list[list[SqlValue]]:
        return [list(row) for row in self._rows.take_rest()]

    to_array = toArray

    def one(self) -> list[SqlValue]:
        return list(self._rows.take_one())

    @property
    def columnNames(self) -> list[str]:
        return list(self._rows.columns)

    column_names = columnNames


class SqlStorage:
    """``ctx.storage.sql``."""

    __slots__ = ("_store", "_txn")

    def __init__(self, store: ObjectStore, txn: ImplicitTransaction) -> None:
        self._store = store
        self._txn = txn

    def exec(self, query: str, *bindings: object) -> SqlCursor:
        """Run ``query`` (one or more ``;``-separated statements).

        Bindings fill the ``?`` placeholders of the last statement; earlier
        statements may not have any. Raises ``SqlError`` (with Cloudflare's
        message) on failure; statements before a failing one keep their effect.
        """
        self._txn.check_exclusive()
        with self._txn.operation():
            try:
                result = self._store.sql_exec(query, bindings)
            except SqlError as exc:
                if exc.wrote:
                    self._txn.note_write()
                raise
            if result.wrote:
                self._txn.note_write()
        return SqlCursor(result)

    @property
    def databaseSize(self) -> int:
        """The database's size in bytes."""
        self._txn.check()
        return self._store.database_size

    database_size = databaseSize
