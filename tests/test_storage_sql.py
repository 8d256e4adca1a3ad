"""ctx.storage.sql: cursors, statements, bindings, reserved tables, error messages.

Expected messages are the ones workerd (the pinned reference) gave for the
same statements on a SQLite-backed object.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stateroom.runtime.gates import OutputGate
from stateroom.storage import (
    DurableObjectStorage,
    SqlError,
    SqliteBackend,
    SqlNotAuthorizedError,
)
from stateroom.storage.sqlite import split_statements


@pytest.fixture
def storage() -> Iterator[DurableObjectStorage]:
    # No event loop: every operation commits before it returns.
    backend = SqliteBackend(in_memory=True)
    storage = DurableObjectStorage(backend.open("Test", "0a"))
    storage.sql.exec(
        "CREATE TABLE artist(artistid INTEGER PRIMARY KEY, artistname TEXT);"
        "INSERT INTO artist VALUES (123, 'Alice'), (456, 'Bob'), (789, 'Charlie');"
    )
    yield storage
    storage.close()
    backend.close()


def test_cursor_iteration_and_arrays(storage: DurableObjectStorage) -> None:
    cursor = storage.sql.exec("SELECT * FROM artist ORDER BY artistname ASC")
    assert cursor.columnNames == ["artistid", "artistname"]
    first = cursor.raw().next()
    assert (first.done, first.value) == (False, [123, "Alice"])
    # raw() and the cursor share one position (Cloudflare's documented example).
    assert cursor.toArray() == [
        {"artistid": 456, "artistname": "Bob"},
        {"artistid": 789, "artistname": "Charlie"},
    ]
    assert cursor.next().done is True
    assert cursor.toArray() == []
    rows = list(storage.sql.exec("SELECT artistid FROM artist ORDER BY 1"))
    assert rows == [{"artistid": 123}, {"artistid": 456}, {"artistid": 789}]
    raw = storage.sql.exec("SELECT artistid, artistname FROM artist ORDER BY 1").raw()
    assert raw.columnNames == ["artistid", "artistname"]
    assert next(raw) == [123, "Alice"]
    assert raw.to_array() == [[456, "Bob"], [789, "Charlie"]]


def test_one(storage: DurableObjectStorage) -> None:
    assert storage.sql.exec("SELECT * FROM artist WHERE artistid = ?", 123).one() == {
        "artistid": 123,
        "artistname": "Alice",
    }
    with pytest.raises(SqlError) as info:
        storage.sql.exec("SELECT * FROM artist WHERE artistid = 0").one()
    assert str(info.value) == "Expected exactly one result from SQL query, but got no results."
    with pytest.raises(SqlError) as info:
        storage.sql.exec("SELECT * FROM artist").one()
    assert str(info.value) == (
        "Expected exactly one result from SQL query, but got multiple results."
    )
    assert storage.sql.exec("SELECT 1 AS a, 2 AS b").raw().one() == [1, 2]


def test_rows_read_and_written(storage: DurableObjectStorage) -> None:
    created = storage.sql.exec(
        "CREATE TABLE t(a INTEGER PRIMARY KEY, b); INSERT INTO t VALUES (1,'x'),(2,'y'),(3,'z')"
    )
    assert (created.columnNames, created.toArray()) == ([], [])
    assert (created.rowsRead, created.rowsWritten) == (3, 3)  # as workerd reports
    inserted = storage.sql.exec("INSERT INTO t VALUES (?, ?) RETURNING *", 4, "w")
    assert inserted.toArray() == [{"a": 4, "b": "w"}]
    assert (inserted.rows_read, inserted.rows_written) == (2, 1)  # as workerd reports
    selected = storage.sql.exec("SELECT * FROM t")
    assert (selected.rowsRead, selected.rowsWritten) == (4, 0)
    assert selected.column_names == ["a", "b"]


def test_multiple_statements(storage: DurableObjectStorage) -> None:
    assert storage.sql.exec("SELECT 1 AS x; SELECT ? AS y", 5).toArray() == [{"y": 5}]
    assert storage.sql.exec("SELECT 1 AS q;").toArray() == [{"q": 1}]
    assert storage.sql.exec("SELECT 1 AS q; SELECT 2 AS r; ").toArray() == [{"r": 2}]
    with pytest.raises(SqlError) as info:
        storage.sql.exec("SELECT ? AS x; SELECT ? AS y", 5, 6)
    assert str(info.value) == (
        "When executing multiple SQL statements in a single call, "
        "only the last statement can have parameters."
    )
    # Statements before a failing one keep their effect (as on workerd).
    with pytest.raises(SqlError, match=r'near "SELEC": syntax error: SQLITE_ERROR'):
        storage.sql.exec("INSERT INTO artist VALUES (50, 'x'); SELEC 1")
    assert storage.sql.exec("SELECT count(*) AS n FROM artist WHERE artistid = 50").one() == {
        "n": 1
    }


@pytest.mark.parametrize("query", ["", "   ", ";", "-- only a comment", "SELECT 1 AS a; -- tail"])
def test_no_statement(storage: DurableObjectStorage, query: str) -> None:
    with pytest.raises(SqlError, match=r"^SQL code did not contain a statement\.$"):
        storage.sql.exec(query)


def test_bindings(storage: DurableObjectStorage) -> None:
    row = storage.sql.exec(
        "SELECT ? AS i, ? AS f, ? AS s, ? AS b, ? AS n, ? AS t, ? AS big, ? AS ba",
        7,
        1.5,
        "x",
        b"\x01\x02",
        None,
        True,
        2**63 - 1,
        bytearray(b"z"),
    ).one()
    assert row == {
        "i": 7,
        "f": 1.5,
        "s": "x",
        "b": b"\x01\x02",
        "n": None,
        "t": 1,
        "big": 2**63 - 1,  # no JavaScript rounding
        "ba": b"z",
    }
    with pytest.raises(SqlError, match=r"^Wrong number of parameter bindings for SQL query\.$"):
        storage.sql.exec("SELECT ? AS x", 1, 2)
    with pytest.raises(SqlError, match="Wrong number of parameter bindings"):
        storage.sql.exec("SELECT ? AS x")
    with pytest.raises(ValueError, match="64-bit"):
        storage.sql.exec("SELECT ?", 2**63)
    with pytest.raises(TypeError, match="binding 1 has unsupported type 'list'"):
        storage.sql.exec("SELECT ?", [1])


def test_duplicate_column_names(storage: DurableObjectStorage) -> None:
    cursor = storage.sql.exec("SELECT 1 AS a, 2 AS a")
    assert cursor.columnNames == ["a", "a"]
    assert cursor.toArray() == [{"a": 2}]
    assert storage.sql.exec("SELECT 1 AS a, 2 AS a").raw().toArray() == [[1, 2]]


def test_reserved_tables(storage: DurableObjectStorage) -> None:
    storage.kv.put("secret", 1)  # creates _cf_KV
    with pytest.raises(SqlNotAuthorizedError) as info:
        storage.sql.exec("SELECT * FROM _cf_KV")
    assert str(info.value).startswith("access to _cf_KV.key is prohibited: SQLITE_AUTH")
    assert info.value.code == "SQLITE_AUTH"
    with pytest.raises(SqlNotAuthorizedError, match=r"access to _cf_KV\.key is prohibited"):
        storage.sql.exec("SELECT * FROM _CF_kv")  # SQLite names ignore case
    for query in [
        "CREATE TABLE _cf_invalid (name TEXT)",
        "CREATE TABLE _stateroom_x (a)",
        "DELETE FROM _cf_KV",
        "INSERT INTO _cf_KV VALUES ('a', x'00')",
        "UPDATE _cf_KV SET value = NULL",
        "DROP TABLE _cf_KV",
        "ALTER TABLE _cf_KV RENAME TO mine",
        "CREATE INDEX i ON _cf_KV(value)",
        "CREATE TRIGGER tr AFTER INSERT ON _cf_KV BEGIN SELECT 1; END",
        "PRAGMA table_info(_cf_KV)",
        "SELECT name FROM pragma_table_info('_cf_KV')",
    ]:
        with pytest.raises(SqlNotAuthorizedError, match="not authorized: SQLITE_AUTH"):
            storage.sql.exec(query)
    # Listing them is allowed (as on Cloudflare); reading them is not.
    names = storage.sql.exec("SELECT name FROM sqlite_master ORDER BY name").toArray()
    assert {"name": "_cf_KV"} in names
    assert storage.kv.get("secret") == 1


def test_reserved_tables_through_views_and_triggers(storage: DurableObjectStorage) -> None:
    storage.kv.put("secret", 1)
    storage.sql.exec("CREATE VIEW leak AS SELECT * FROM _cf_KV")
    with pytest.raises(SqlNotAuthorizedError, match="prohibited"):
        storage.sql.exec("SELECT * FROM leak")
    storage.sql.exec("CREATE TRIGGER wipe AFTER INSERT ON artist BEGIN DELETE FROM _cf_KV; END")
    with pytest.raises(SqlNotAuthorizedError):
        storage.sql.exec("INSERT INTO artist VALUES (1, 'x')")
    assert storage.kv.get("secret") == 1


@pytest.mark.parametrize(
    "query", ["BEGIN TRANSACTION", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT foo", "RELEASE foo"]
)
def test_transaction_statements_are_refused(storage: DurableObjectStorage, query: str) -> None:
    with pytest.raises(SqlNotAuthorizedError, match=r"^To execute a transaction, please use"):
        storage.sql.exec(query)


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("PRAGMA data_version", True),
        ("PRAGMA foreign_keys", True),
        ("PRAGMA foreign_keys = ON", True),
        ("PRAGMA defer_foreign_keys = 'yes'", True),
        ("PRAGMA case_sensitive_like = maybe", False),
        ("PRAGMA table_info(artist)", True),
        ("PRAGMA table_list", True),
        ("PRAGMA index_list(artist)", True),
        ("PRAGMA quick_check", True),
        ("PRAGMA journal_mode", False),
        ("PRAGMA journal_mode = DELETE", False),
        ("PRAGMA synchronous = OFF", False),
        ("PRAGMA user_version", False),
        ("PRAGMA writable_schema = ON", False),
        ("PRAGMA locking_mode = NORMAL", False),
        ("ATTACH DATABASE 'x.db' AS x", False),
        ("CREATE TEMP TABLE tt(a)", False),
    ],
)
def test_pragmas_and_other_statements(
    storage: DurableObjectStorage, query: str, allowed: bool
) -> None:
    if allowed:
        storage.sql.exec(query).toArray()
    else:
        with pytest.raises(SqlNotAuthorizedError, match="not authorized: SQLITE_AUTH"):
            storage.sql.exec(query)


def test_foreign_keys_are_on_and_errors_name_codes(storage: DurableObjectStorage) -> None:
    assert storage.sql.exec("PRAGMA foreign_keys").one() == {"foreign_keys": 1}
    storage.sql.exec("CREATE TABLE c(pid INTEGER REFERENCES artist(artistid))")
    with pytest.raises(SqlError) as info:
        storage.sql.exec("INSERT INTO c VALUES (5)")
    assert str(info.value) == (
        "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_FOREIGNKEY)"
    )
    assert info.value.code == "SQLITE_CONSTRAINT"
    with pytest.raises(SqlError) as info:
        storage.sql.exec("INSERT INTO artist VALUES (123, 'again')")
    assert str(info.value) == (
        "UNIQUE constraint failed: artist.artistid: SQLITE_CONSTRAINT "
        "(extended: SQLITE_CONSTRAINT_PRIMARYKEY)"
    )
    with pytest.raises(SqlError, match="cannot VACUUM from within a transaction: SQLITE_ERROR"):
        storage.sql.exec("VACUUM")


def test_sql_limits(storage: DurableObjectStorage) -> None:
    params = ", ".join("?" * 101)
    with pytest.raises(SqlError, match="too many SQL variables"):
        storage.sql.exec(f"SELECT {params}", *range(101))
    columns = ", ".join(f"c{i}" for i in range(101))
    with pytest.raises(SqlError, match="too many columns"):
        storage.sql.exec(f"CREATE TABLE wide({columns})")
    with pytest.raises(SqlError):
        storage.sql.exec("SELECT 1 -- " + "x" * 100_000)


def test_database_size(storage: DurableObjectStorage) -> None:
    before = storage.sql.databaseSize
    assert before > 0 and before % 4096 == 0
    storage.sql.exec("CREATE TABLE blobs(b BLOB)")
    storage.sql.exec("INSERT INTO blobs VALUES (?)", b"x" * 200_000)
    assert storage.sql.database_size > before + 200_000


def test_writes_hold_outputs_but_reads_do_not() -> None:
    """Only statements that change data (including schema) make outputs wait."""
    backend = SqliteBackend(in_memory=True)
    gate = OutputGate()
    commits: list[object] = []
    storage = DurableObjectStorage(
        backend.open("Test", "0b"), write_tracker=gate, schedule_commit=commits.append
    )
    storage.sql.exec("SELECT 1")
    assert not gate.pending
    storage.sql.exec("CREATE TABLE IF NOT EXISTS t(a)")
    assert gate.pending  # schema change, though total_changes did not move
    storage.commit_now()
    assert not gate.pending
    # Re-run from sqlite3's statement cache: re-prepared (hence flagged) once,
    # because its own first run changed the schema; a no-op after that.
    storage.sql.exec("CREATE TABLE IF NOT EXISTS t(a)")
    storage.commit_now()
    storage.sql.exec("CREATE TABLE IF NOT EXISTS t(a)")
    storage.sql.exec("SELECT * FROM t")
    assert not gate.pending
    storage.sql.exec("INSERT INTO t VALUES (1) RETURNING a")
    assert gate.pending
    storage.commit_now()
    with pytest.raises(SqlError):
        storage.sql.exec("INSERT INTO t VALUES (2); SELEC")
    assert gate.pending  # the first statement wrote before the second failed
    storage.close()
    backend.close()


@pytest.mark.parametrize(
    ("sql", "parts"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1; SELECT 2", ["SELECT 1;", " SELECT 2"]),
        ("SELECT ';'; SELECT 2;", ["SELECT ';';", " SELECT 2;"]),
        ('SELECT 1 AS "a;b"', ['SELECT 1 AS "a;b"']),
        ("SELECT 1; -- x; y\nSELECT 2", ["SELECT 1;", " -- x; y\nSELECT 2"]),
        ("SELECT 1 /* ; */;", ["SELECT 1 /* ; */;"]),
        (
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN DELETE FROM b; DELETE FROM c; END; SELECT 1",
            [
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN DELETE FROM b; DELETE FROM c; END;",
                " SELECT 1",
            ],
        ),
        (";;SELECT 1;;", ["SELECT 1;"]),
        ("SELECT 1; -- tail", ["SELECT 1;", " -- tail"]),
    ],
)
def test_split_statements(sql: str, parts: list[str]) -> None:
    assert split_statements(sql) == parts


def test_trigger_bodies_work(storage: DurableObjectStorage) -> None:
    storage.sql.exec(
        "CREATE TABLE log(msg TEXT);"
        "CREATE TRIGGER t AFTER INSERT ON artist BEGIN INSERT INTO log VALUES ('a'); "
        "INSERT INTO log VALUES ('b'); END;"
        "INSERT INTO artist VALUES (1, 'x');"
    )
    assert storage.sql.exec("SELECT msg FROM log").raw().toArray() == [["a"], ["b"]]
