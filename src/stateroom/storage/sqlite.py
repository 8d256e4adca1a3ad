"""The embedded storage backend: one SQLite database per Durable Object.

Layout: ``<data_dir>/<namespace>/<object id hex>.sqlite3``, created on first
open. Each database runs in WAL mode with ``synchronous=FULL``, so a
transaction is on stable storage (the WAL is fsynced) before ``COMMIT``
returns: committed writes survive ``kill -9`` and power loss, uncommitted ones
vanish as a unit. ``locking_mode=EXCLUSIVE`` holds the file's lock for as long
as the object is open, so a second process (or a second open in this one) can
never run the same object.

KV pairs live in the reserved table ``_cf_KV`` (Cloudflare's name and shape);
the alarm lives in ``_stateroom_meta``. Both are created lazily, on first
write, so an object that only uses SQL sees an empty ``sqlite_master`` as on
Cloudflare. User SQL runs under an authorizer that refuses names starting with
``_cf_`` or ``_stateroom_``, transaction statements, ``ATTACH``, temporary
objects and all but a few harmless pragmas, with Cloudflare's error messages.

The reserved-name check guards against mistakes, not against hostile code:
user Python runs in this process and could open the file itself.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from stateroom.storage.backend import (
    ListQuery,
    ObjectStore,
    SqlResult,
    SqlValue,
    StorageBackend,
    is_reserved_name,
)
from stateroom.storage.errors import (
    SqlError,
    SqlNotAuthorizedError,
    StorageError,
    StoreInUseError,
    damaged,
)
from stateroom.storage.log import Pending

__all__ = ["SqliteBackend", "SqliteObjectStore", "split_statements"]

logger = logging.getLogger(__name__)

KV_TABLE: Final = "_cf_KV"
META_TABLE: Final = "_stateroom_meta"
APPLICATION_ID: Final = 0x53524F4D  # "SROM": marks the file as a stateroom object database
SCHEMA_VERSION: Final = 1  # PRAGMA user_version of the files this code writes

# Marks internal statements so that user SQL can never hit one of their cached,
# already-authorized prepared statements (sqlite3 caches by SQL text).
_INTERNAL: Final = " /* stateroom internal */"

_KV_CREATE: Final = (
    f"CREATE TABLE IF NOT EXISTS {KV_TABLE} (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
    + _INTERNAL
)
_META_CREATE: Final = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value) WITHOUT ROWID"
    + _INTERNAL
)
_KV_GET: Final = f"SELECT value FROM {KV_TABLE} WHERE key = ?" + _INTERNAL
_KV_PUT: Final = (
    f"INSERT INTO {KV_TABLE} (key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value" + _INTERNAL
)
_KV_DELETE: Final = f"DELETE FROM {KV_TABLE} WHERE key = ?" + _INTERNAL
_TABLE_EXISTS: Final = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?" + _INTERNAL
_ALARM_GET: Final = f"SELECT value FROM {META_TABLE} WHERE key = 'alarm'" + _INTERNAL
_ALARM_PUT: Final = (
    f"INSERT INTO {META_TABLE} (key, value) VALUES ('alarm', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value" + _INTERNAL
)
_ALARM_DELETE: Final = f"DELETE FROM {META_TABLE} WHERE key = 'alarm'" + _INTERNAL
_NAME_GET: Final = f"SELECT value FROM {META_TABLE} WHERE key = 'name'" + _INTERNAL
_NAME_PUT: Final = (
    f"INSERT INTO {META_TABLE} (key, value) VALUES ('name', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value" + _INTERNAL
)

# Cloudflare's SQL limits for SQLite-backed Durable Objects.
SQL_LIMITS: Final = {
    # String, BLOB or row. The slack over 2 MiB leaves room for a KV row's own
    # overhead: the KV API checks key + value against exactly 2 MiB itself.
    sqlite3.SQLITE_LIMIT_LENGTH: 2 * 1024 * 1024 + 4096,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_COLUMN: 100,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 32,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 50,
}

_TXN_MESSAGE: Final = (
    "To execute a transaction, please use the ctx.storage.transaction() or "
    "ctx.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The Python API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
_RESERVED_HINT: Final = (
    " (names starting with _cf_ or _stateroom_ are reserved for the runtime's own tables)"
)

_NAMESPACE_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_OBJECT_ID_RE: Final = re.compile(r"[0-9a-f]{1,128}")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# SQLite primary result codes, for Cloudflare-style "...: SQLITE_X" messages.
_PRIMARY_CODES: Final = {
    1: "SQLITE_ERROR", 2: "SQLITE_INTERNAL", 3: "SQLITE_PERM", 4: "SQLITE_ABORT",
    5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM", 8: "SQLITE_READONLY",
    9: "SQLITE_INTERRUPT", 10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT", 12: "SQLITE_NOTFOUND",
    13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL", 16: "SQLITE_EMPTY",
    17: "SQLITE_SCHEMA", 18: "SQLITE_TOOBIG", 19: "SQLITE_CONSTRAINT", 20: "SQLITE_MISMATCH",
    21: "SQLITE_MISUSE", 22: "SQLITE_NOLFS", 23: "SQLITE_AUTH", 24: "SQLITE_FORMAT",
    25: "SQLITE_RANGE", 26: "SQLITE_NOTADB", 27: "SQLITE_NOTICE", 28: "SQLITE_WARNING",
}  # fmt: skip

# -- authorizer ----------------------------------------------------------------

# Action codes (sqlite3.h); spelled out because Python does not export all of them.
_CREATE_INDEX, _CREATE_TABLE, _CREATE_TRIGGER, _CREATE_VIEW = 1, 2, 7, 8
_DELETE, _DROP_INDEX, _DROP_TABLE, _DROP_TRIGGER, _DROP_VIEW = 9, 10, 11, 16, 17
_INSERT, _PRAGMA, _READ, _SELECT, _TRANSACTION, _UPDATE = 18, 19, 20, 21, 22, 23
_ATTACH, _DETACH, _ALTER_TABLE, _REINDEX, _ANALYZE = 24, 25, 26, 27, 28
_CREATE_VTABLE, _DROP_VTABLE, _FUNCTION, _SAVEPOINT, _RECURSIVE = 29, 30, 31, 32, 33
_TEMP_ACTIONS: Final = frozenset({3, 4, 5, 6, 12, 13, 14, 15})

# Actions that change the durable database. Row changes are also caught by
# total_changes; this set exists for schema changes, which that counter misses.
_WRITE_ACTIONS: Final = frozenset(
    {
        _CREATE_INDEX, _CREATE_TABLE, _CREATE_TRIGGER, _CREATE_VIEW, _DELETE, _DROP_INDEX,
        _DROP_TABLE, _DROP_TRIGGER, _DROP_VIEW, _INSERT, _UPDATE, _ALTER_TABLE, _REINDEX,
        _ANALYZE, _CREATE_VTABLE, _DROP_VTABLE,
    }
)  # fmt: skip

# Pragmas user SQL may run, and what argument each accepts (workerd's list).
_NO_ARG, _BOOLEAN, _OBJECT_NAME, _OPTIONAL_NAME_OR_NUMBER, _ANY = range(5)
_ALLOWED_PRAGMAS: Final = {
    "data_version": _NO_ARG,
    "case_sensitive_like": _BOOLEAN,
    "foreign_keys": _BOOLEAN,
    "defer_foreign_keys": _BOOLEAN,
    "ignore_check_constraints": _BOOLEAN,
    "recursive_triggers": _BOOLEAN,
    "reverse_unordered_selects": _BOOLEAN,
    "foreign_key_check": _OPTIONAL_NAME_OR_NUMBER,
    "foreign_key_list": _OBJECT_NAME,
    "index_info": _OBJECT_NAME,
    "index_list": _OBJECT_NAME,
    "index_xinfo": _OBJECT_NAME,
    "table_info": _OBJECT_NAME,
    "table_xinfo": _OBJECT_NAME,
    "quick_check": _OPTIONAL_NAME_OR_NUMBER,
    "integrity_check": _OPTIONAL_NAME_OR_NUMBER,
    "table_list": _ANY,
}
_BOOL_WORDS: Final = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


def _pragma_allowed(name: str, arg: str | None) -> bool:
    kind = _ALLOWED_PRAGMAS.get(name.lower())
    if kind is None:
        return False
    if kind == _ANY:
        return True
    if kind == _NO_ARG:
        return arg is None
    if arg is None:
        return kind != _OBJECT_NAME
    if kind == _BOOLEAN:
        value = arg.strip()
        if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        return value.lower() in _BOOL_WORDS
    if kind == _OPTIONAL_NAME_OR_NUMBER and arg.strip().lstrip("+-").isdigit():
        return True
    return not is_reserved_name(arg)


# -- statement splitting -------------------------------------------------------


def _is_blank(segment: str) -> bool:
    """Whether ``segment`` holds only whitespace, ``;`` and comments."""
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        if ch.isspace() or ch == ";":
            i += 1
        elif segment.startswith("--", i):
            newline = segment.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif segment.startswith("/*", i):
            close = segment.find("*/", i + 2)
            i = n if close < 0 else close + 2
        else:
            return False
    return True


def split_statements(sql: str) -> list[str]:
    """Split ``sql`` into statements the way SQLite's parser would.

    ``sqlite3.complete_statement`` does the hard part (string literals, quoted
    names, comments, ``CREATE TRIGGER ... BEGIN ...; END``). Segments of only
    whitespace and semicolons are dropped. A trailing comment after the last
    semicolon is kept as an (empty) statement, so that, as on Cloudflare,
    ``"SELECT 1; -- note"`` is refused rather than silently answered.
    """
    parts: list[str] = []
    start = 0
    pos = 0
    while True:
        semi = sql.find(";", pos)
        if semi < 0:
            break
        pos = semi + 1
        chunk = sql[start:pos]
        if sqlite3.complete_statement(chunk):
            if not _is_blank(chunk):
                parts.append(chunk)
            start = pos
    tail = sql[start:]
    if tail.strip():
        parts.append(tail)
    return parts


def _to_binding(value: object, index: int) -> SqlValue:
    if value is None:
        return None
    if isinstance(value, (str, float, bytes)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"SQL binding {index} is an integer outside SQLite's 64-bit range")
        return int(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"SQL binding {index} has unsupported type {type(value).__name__!r}; "
        "bindings may be None, int, float, str or bytes"
    )


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    Code point order is UTF-8 byte order, so bumping the last code point works;
    surrogates cannot appear in stored keys, so the bump skips over them.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _internal_error(exc: sqlite3.Error) -> StorageError:
    code = getattr(exc, "sqlite_errorname", None)
    return StorageError(f"{exc}: {code}" if code else str(exc))


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteObjectStore(ObjectStore):
    """One object's SQLite database (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        namespace: str,
        object_id: str,
        *,
        backend: SqliteBackend | None = None,
    ) -> None:
        self._conn = conn
        self.namespace = namespace
        self.object_id = object_id
        self._backend = backend
        self._closed = False
        # Internal statements run with the authorizer wide open; user SQL does not.
        self._trusted = False
        self._deny_reason: str | None = None
        self._schema_written = False
        # Whether the lazily created reserved tables exist (None: look it up).
        self._kv_exists: bool | None = None
        self._meta_exists: bool | None = None
        self._vacuum_after_commit = False
        conn.set_authorizer(self._authorize)
        self._page_size = int(self._run("PRAGMA page_size" + _INTERNAL).fetchone()[0])

    # -- authorizer -----------------------------------------------------------

    def _authorize(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        db_name: str | None,
        trigger: str | None,
    ) -> int:
        if self._trusted:
            return sqlite3.SQLITE_OK
        if action in _WRITE_ACTIONS:
            self._schema_written = True
        if action in (_TRANSACTION, _SAVEPOINT):
            self._deny_reason = _TXN_MESSAGE
            return sqlite3.SQLITE_DENY
        if action in _TEMP_ACTIONS or action in (_ATTACH, _DETACH):
            return sqlite3.SQLITE_DENY
        if action == _PRAGMA:
            return sqlite3.SQLITE_OK if _pragma_allowed(arg1 or "", arg2) else sqlite3.SQLITE_DENY
        if action == _FUNCTION:
            return sqlite3.SQLITE_DENY if arg2 == "load_extension" else sqlite3.SQLITE_OK
        if action == _ALTER_TABLE:
            names: tuple[str | None, ...] = (arg2,)
        elif action in (_CREATE_INDEX, _DROP_INDEX, _CREATE_TRIGGER, _DROP_TRIGGER):
            names = (arg1, arg2)
        elif action in (_SELECT, _RECURSIVE):
            names = ()
        else:
            names = (arg1,)
        for name in names:
            if name is not None and is_reserved_name(name):
                self._deny_reason = "reserved"
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _run(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Execute an internal (trusted) statement; SQLite errors become ``StorageError``."""
        self._trusted = True
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _internal_error(exc) from exc
        finally:
            self._trusted = False

    def _table_exists(self, name: str) -> bool:
        return self._run(_TABLE_EXISTS, (name,)).fetchone() is not None

    def _kv_ready(self, create: bool) -> bool:
        if self._kv_exists is None:
            self._kv_exists = self._table_exists(KV_TABLE)
        if not self._kv_exists and create:
            self._run(_KV_CREATE)
            self._kv_exists = True
        return self._kv_exists

    def _meta_ready(self, create: bool) -> bool:
        if self._meta_exists is None:
            self._meta_exists = self._table_exists(META_TABLE)
        if not self._meta_exists and create:
            self._run(_META_CREATE)
            self._meta_exists = True
        return self._meta_exists

    def _forget_tables(self) -> None:
        # A rollback may have undone a CREATE of a reserved table.
        self._kv_exists = None
        self._meta_exists = None

    # -- transactions ---------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return not self._closed and self._conn.in_transaction

    def begin(self) -> None:
        self._run("BEGIN" + _INTERNAL)

    def commit(self) -> Pending | None:
        self._commit()
        return None

    def _commit(self) -> None:
        self._run("COMMIT" + _INTERNAL)
        if self._vacuum_after_commit:
            self._vacuum_after_commit = False
            # executescript() steps the pragma to the end; execute() would free
            # one page only (the pragma frees a page per step, returning no rows).
            self._trusted = True
            try:
                self._conn.executescript("PRAGMA incremental_vacuum;" + _INTERNAL)
            except sqlite3.Error:
                logger.warning("incremental_vacuum failed for %s", self.object_id, exc_info=True)
            finally:
                self._trusted = False

    def rollback(self) -> None:
        self._vacuum_after_commit = False
        self._forget_tables()
        if self._conn.in_transaction:
            self._run("ROLLBACK" + _INTERNAL)

    def savepoint(self, name: str) -> None:
        self._run(f"SAVEPOINT {_quote_name(name)}" + _INTERNAL)

    def release(self, name: str) -> None:
        self._run(f"RELEASE {_quote_name(name)}" + _INTERNAL)

    def rollback_to(self, name: str) -> None:
        self._forget_tables()
        self._run(f"ROLLBACK TO {_quote_name(name)}" + _INTERNAL)

    # -- key-value --------------------------------------------------------------

    def kv_get(self, key: str) -> bytes | None:
        if not self._kv_ready(create=False):
            return None
        row = self._run(_KV_GET, (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def kv_get_many(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        if not self._kv_ready(create=False):
            return []
        found: list[tuple[str, bytes]] = []
        for key in dict.fromkeys(keys):
            row = self._run(_KV_GET, (key,)).fetchone()
            if row is not None:
                found.append((key, bytes(row[0])))
        found.sort(key=lambda pair: pair[0])  # code point order == UTF-8 byte order
        return found

    def kv_put(self, key: str, value: bytes) -> None:
        self._kv_ready(create=True)
        self._run(_KV_PUT, (key, value))

    def kv_put_many(self, entries: Sequence[tuple[str, bytes]]) -> None:
        self._kv_ready(create=True)
        self._trusted = True
        try:
            self._conn.executemany(_KV_PUT, entries)
        except sqlite3.Error as exc:
            raise _internal_error(exc) from exc
        finally:
            self._trusted = False

    def kv_delete(self, key: str) -> bool:
        if not self._kv_ready(create=False):
            return False
        return self._run(_KV_DELETE, (key,)).rowcount > 0

    def kv_delete_many(self, keys: Sequence[str]) -> int:
        if not self._kv_ready(create=False):
            return 0
        return sum(self._run(_KV_DELETE, (key,)).rowcount for key in dict.fromkeys(keys))

    def kv_list(self, query: ListQuery) -> list[tuple[str, bytes]]:
        if not self._kv_ready(create=False):
            return []
        conditions: list[str] = []
        params: list[object] = []
        if query.start is not None:
            conditions.append("key >= ?")
            params.append(query.start)
        if query.start_after is not None:
            conditions.append("key > ?")
            params.append(query.start_after)
        if query.end is not None:
            conditions.append("key < ?")
            params.append(query.end)
        if query.prefix:
            conditions.append("key >= ?")
            params.append(query.prefix)
            upper = _successor(query.prefix)
            if upper is not None:
                conditions.append("key < ?")
                params.append(upper)
        sql = f"SELECT key, value FROM {KV_TABLE}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY key DESC" if query.reverse else " ORDER BY key"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        return [(key, bytes(value)) for key, value in self._run(sql + _INTERNAL, params)]

    def delete_all(self, *, include_alarm: bool) -> None:
        # Dropping a parent table before its children would trip immediate
        # foreign-key checks; deferred, they are checked at commit, when every
        # table is gone.
        self._run("PRAGMA defer_foreign_keys = ON" + _INTERNAL)
        rows = self._run(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE type IN ('table', 'view', 'trigger')" + _INTERNAL
        ).fetchall()
        rank = {"trigger": 0, "view": 1, "table": 3}
        objects = []
        for kind, name, sql in rows:
            if name.startswith("sqlite_") or is_reserved_name(name):
                continue
            virtual = kind == "table" and (sql or "").upper().startswith("CREATE VIRTUAL")
            objects.append((2 if virtual else rank[kind], kind, name))
        for _, kind, name in sorted(objects):
            # IF EXISTS: a virtual table's shadow tables go with it.
            self._run(f"DROP {kind.upper()} IF EXISTS {_quote_name(name)}" + _INTERNAL)
        for stat in ("sqlite_stat1", "sqlite_stat4"):
            if self._table_exists(stat):
                self._run(f"DELETE FROM {stat}" + _INTERNAL)
        self._run(f"DROP TABLE IF EXISTS {KV_TABLE}" + _INTERNAL)
        self._kv_exists = False
        if include_alarm:
            self._run(f"DROP TABLE IF EXISTS {META_TABLE}" + _INTERNAL)
            self._meta_exists = False
        self._vacuum_after_commit = True

    # -- SQL --------------------------------------------------------------------

    def sql_exec(self, query: str, bindings: Sequence[object]) -> SqlResult:
        if not isinstance(query, str):
            raise TypeError(f"SQL query must be str, not {type(query).__name__!r}")
        statements = split_statements(query)
        if not statements or _is_blank(statements[-1]):
            raise SqlError("SQL code did not contain a statement.")
        params = [_to_binding(value, index) for index, value in enumerate(bindings, 1)]
        conn = self._conn
        before = conn.total_changes
        self._schema_written = False
        self._deny_reason = None
        rows: list[tuple[SqlValue, ...]] = []
        try:
            for statement in statements[:-1]:
                try:
                    conn.execute(statement).fetchall()
                except sqlite3.ProgrammingError as exc:
                    if "number of bindings" in str(exc):
                        raise SqlError(
                            "When executing multiple SQL statements in a single call, "
                            "only the last statement can have parameters."
                        ) from None
                    raise
            try:
                cursor = conn.execute(statements[-1], params)
            except sqlite3.ProgrammingError as exc:
                if "number of bindings" in str(exc):
                    raise SqlError("Wrong number of parameter bindings for SQL query.") from None
                raise
            # Read everything now: the statement then has finished, total_changes
            # is final, and the caller gets a stable snapshot (Cloudflare's cursor
            # does not promise one across an await; this is strictly safer).
            rows = cursor.fetchall()
            columns = [d[0] for d in cursor.description] if cursor.description else []
        except SqlError as exc:
            exc.wrote = self._wrote(before)
            raise
        except sqlite3.Error as exc:
            error = self._translate(exc)
            error.wrote = self._wrote(before)
            raise error from exc
        written = conn.total_changes - before
        return SqlResult(
            column_names=columns,
            rows=rows,
            rows_read=len(rows) + written,
            rows_written=written,
            wrote=written > 0 or self._schema_written,
        )

    def _wrote(self, before: int) -> bool:
        return self._conn.total_changes != before or self._schema_written

    def _translate(self, exc: sqlite3.Error) -> SqlError:
        extended = getattr(exc, "sqlite_errorname", None)
        code_number = getattr(exc, "sqlite_errorcode", None)
        primary = _PRIMARY_CODES.get(code_number & 0xFF) if code_number is not None else None
        message = str(exc)
        if primary == "SQLITE_AUTH":
            if self._deny_reason == _TXN_MESSAGE:
                return SqlNotAuthorizedError(_TXN_MESSAGE, primary)
            hint = _RESERVED_HINT if self._deny_reason == "reserved" else ""
            return SqlNotAuthorizedError(f"{message}: SQLITE_AUTH{hint}", primary)
        if primary is None:
            return SqlError(message)
        if extended and extended != primary:
            return SqlError(f"{message}: {primary} (extended: {extended})", primary)
        return SqlError(f"{message}: {primary}", primary)

    @property
    def database_size(self) -> int:
        pages = int(self._run("PRAGMA page_count" + _INTERNAL).fetchone()[0])
        return pages * self._page_size

    # -- alarm ------------------------------------------------------------------

    def get_alarm(self) -> int | None:
        if not self._meta_ready(create=False):
            return None
        row = self._run(_ALARM_GET).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_alarm(self, when_ms: int | None) -> None:
        if when_ms is None:
            if self._meta_ready(create=False):
                self._run(_ALARM_DELETE)
            return
        self._meta_ready(create=True)
        self._run(_ALARM_PUT, (int(when_ms),))

    # -- name -------------------------------------------------------------------

    def get_name(self) -> str | None:
        if not self._meta_ready(create=False):
            return None
        row = self._run(_NAME_GET).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_name(self, name: str) -> None:
        if self.get_name() == name:
            return
        self._meta_ready(create=True)
        self._run(_NAME_PUT, (name,))

    # -- lifetime ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._conn.in_transaction:
                self._run("ROLLBACK" + _INTERNAL)
        except StorageError:
            logger.warning("rollback on close failed for %s", self.object_id, exc_info=True)
        if self._backend is not None:
            self._backend._release(self)
        else:
            self._conn.close()


class SqliteBackend(StorageBackend):
    """Opens one SQLite database per object, on disk or (for tests) in memory.

    ``data_dir`` is required unless ``in_memory``. In-memory databases live as
    long as the backend: closing and reopening an object sees its data again
    (as after an eviction), closing the backend discards everything.
    ``exclusive`` holds each file's lock while it is open (the default, and
    what guarantees a single live instance across processes).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        in_memory: bool = False,
        exclusive: bool = True,
    ) -> None:
        if data_dir is None and not in_memory:
            raise ValueError("SqliteBackend needs a data_dir, or in_memory=True")
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.in_memory = in_memory
        self.exclusive = exclusive
        self._open: dict[tuple[str, str], SqliteObjectStore] = {}
        self._memory: dict[tuple[str, str], sqlite3.Connection] = {}

    def path_for(self, namespace: str, object_id: str) -> Path:
        """Where the object's database file lives (validating both components)."""
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(
                f"invalid storage namespace {namespace!r}: use letters, digits, '_', '-', '.'"
            )
        if not _OBJECT_ID_RE.fullmatch(object_id):
            raise ValueError(f"invalid object id {object_id!r}: expected lowercase hex")
        if self.data_dir is None:
            raise ValueError("an in-memory SqliteBackend has no files")
        return self.data_dir / namespace / f"{object_id}.sqlite3"

    def stored_objects(self, namespace: str) -> list[str]:
        """Ids of the objects of ``namespace`` that have a database (file or in memory)."""
        if self.in_memory:
            return sorted(oid for ns, oid in self._memory if ns == namespace)
        assert self.data_dir is not None
        folder = self.data_dir / namespace
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.sqlite3") if _OBJECT_ID_RE.fullmatch(p.stem))

    def rename_namespace(self, old: str, new: str) -> bool:
        for name in (old, new):
            if not _NAMESPACE_RE.fullmatch(name):
                raise ValueError(f"invalid storage namespace {name!r}")
        if self.in_memory:
            moving = [key for key in self._memory if key[0] == old]
            if not moving or any(ns == new for ns, _ in self._memory):
                return False
            for key in moving:
                self._memory[(new, key[1])] = self._memory.pop(key)
            return True
        assert self.data_dir is not None
        src, dst = self.data_dir / old, self.data_dir / new
        if not src.is_dir() or dst.exists():
            return False
        src.rename(dst)
        return True

    def delete_namespace(self, namespace: str) -> int:
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(f"invalid storage namespace {namespace!r}")
        if any(ns == namespace for ns, _ in self._open):
            raise StoreInUseError(f"objects of {namespace} are open; cannot delete its data")
        if self.in_memory:
            doomed = [key for key in self._memory if key[0] == namespace]
            for key in doomed:
                self._memory.pop(key).close()
            return len(doomed)
        assert self.data_dir is not None
        folder = self.data_dir / namespace
        if not folder.is_dir():
            return 0
        count = len(self.stored_objects(namespace))
        # Renamed aside first, so a crash midway leaves no half-deleted class behind.
        doomed_dir = self.data_dir / f".deleting-{namespace}"
        if doomed_dir.exists():
            shutil.rmtree(doomed_dir)
        folder.rename(doomed_dir)
        _fsync_dir(self.data_dir)
        shutil.rmtree(doomed_dir)
        return count

    def open(self, namespace: str, object_id: str) -> SqliteObjectStore:
        key = (namespace, object_id)
        if key in self._open:
            raise StoreInUseError(f"object {namespace}/{object_id} is already open")
        if self.in_memory:
            if not _NAMESPACE_RE.fullmatch(namespace) or not _OBJECT_ID_RE.fullmatch(object_id):
                raise ValueError(f"invalid namespace or object id: {namespace!r}/{object_id!r}")
            conn = self._memory.get(key)
            if conn is None:
                conn = self._memory[key] = _connect(":memory:", exclusive=False)
        else:
            conn = self._open_file(self.path_for(namespace, object_id))
        store = SqliteObjectStore(conn, namespace, object_id, backend=self)
        self._open[key] = store
        logger.debug("opened storage of %s/%s", namespace, object_id)
        return store

    def _open_file(self, path: Path) -> sqlite3.Connection:
        created_dirs = _make_dirs(path.parent)
        is_new = not path.exists()
        try:
            conn = _connect(str(path), exclusive=self.exclusive)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY":
                raise StoreInUseError(f"{path} is in use by another process") from exc
            raise
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(path, path.parent.name, path.stem, exc) from exc
            raise
        if is_new:
            # A new file (and its WAL) exists only once its directory entry is
            # durable: fsync every directory this open created or added to.
            for directory in (*created_dirs, path.parent):
                _fsync_dir(directory)
        return conn

    def _release(self, store: SqliteObjectStore) -> None:
        key = (store.namespace, store.object_id)
        if self._open.get(key) is store:
            del self._open[key]
        if not self.in_memory:
            store._conn.close()
        logger.debug("closed storage of %s/%s", store.namespace, store.object_id)

    def close(self) -> None:
        for store in list(self._open.values()):
            store.close()
        for conn in self._memory.values():
            conn.close()
        self._memory.clear()


def _connect(target: str, *, exclusive: bool, logged: bool = False) -> sqlite3.Connection:
    # isolation_level=None: the sqlite3 module never BEGINs or COMMITs on its own;
    # the storage layer decides. timeout=0: a locked file fails at once instead
    # of stalling the event loop. check_same_thread=False: the runtime may move
    # an object between threads; it never uses one from two at once.
    conn = sqlite3.connect(
        target, isolation_level=None, timeout=0, check_same_thread=False, cached_statements=256
    )
    try:
        conn.execute("PRAGMA foreign_keys = ON")  # Cloudflare's default
        if target != ":memory:":
            if exclusive:
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            if logged:
                # The commit log makes commits durable (log_backend.py): no fsync of our
                # own (set first: switching to WAL would sync), and no checkpoint but the
                # backend's, once the log holds the frames.
                conn.execute("PRAGMA synchronous = OFF")
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.execute("PRAGMA journal_size_limit = 1048576")
            fresh = conn.execute("PRAGMA page_count").fetchone()[0] == 0
            if fresh:
                # Only possible before the first table: lets deleteAll() give space back.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"could not enable WAL mode (got {mode!r})")
            if not logged:
                conn.execute("PRAGMA synchronous = FULL")
        _check_format(conn)
        for limit, value in SQL_LIMITS.items():
            conn.setlimit(limit, value)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_format(conn: sqlite3.Connection) -> None:
    # BEGIN IMMEDIATE also takes (and in exclusive mode keeps) the write lock, so a
    # file another process holds is reported here, at open, not at the first write.
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == 0 and version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StorageError("not a stateroom object database (unmarked, with tables)")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif app_id != APPLICATION_ID:
            raise StorageError(f"not a stateroom object database (application_id {app_id:#x})")
        elif version > SCHEMA_VERSION:
            raise StorageError(
                f"object database format {version} is newer than this stateroom ({SCHEMA_VERSION})"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


EMPTY_PAGE_SIZE: Final = 4096
_empty: bytes | None = None


def empty_database() -> bytes:
    """An empty object database, as ``_connect`` makes one: WAL mode, stateroom's
    application id and format, incremental auto-vacuum. Copying it is much cheaper than
    letting SQLite create a file (its switch to WAL mode alone creates, writes and
    deletes a rollback journal)."""
    global _empty
    if _empty is None:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(f"PRAGMA page_size = {EMPTY_PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("VACUUM")  # lays out an empty auto-vacuum database
            image = bytearray(conn.serialize())
        finally:
            conn.close()
        image[18:20] = b"\x02\x02"  # file format: WAL
        _empty = bytes(image)
    return _empty


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file itself is broken (not a database, malformed)."""
    name = getattr(exc, "sqlite_errorname", "")
    return (
        name in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
        or "malformed" in str(exc)
        or ("not a database" in str(exc))
    )


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the parents that gained an entry."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    directory.mkdir(parents=True, exist_ok=True)
    # Each created directory's entry lives in its parent.
    return [m.parent for m in reversed(missing)]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of directory %s not supported", directory)
    finally:
        os.close(fd)
