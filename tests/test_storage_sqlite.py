"""The SQLite backend on disk: layout, durability across kill -9, locking, reopening."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stateroom.storage import (
    DurableObjectStorage,
    SqliteBackend,
    StorageError,
    StoreInUseError,
)
from stateroom.storage.sqlite import APPLICATION_ID, SqliteObjectStore

# A child process writes a batch and then SIGKILLs itself, with or without
# waiting for the commit. What survives is what a crash would leave behind.
CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from stateroom.storage import DurableObjectStorage, SqliteBackend

    data_dir, mode = sys.argv[1], sys.argv[2]
    storage = DurableObjectStorage(SqliteBackend(data_dir).open("Crash", "ab12"))

    async def main():
        await storage.put("a", 1)
        storage.sql.exec("CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t VALUES (1)")
        await storage.put("b", 2)
        await storage.delete("before")
        await storage.setAlarm(12345)
        if mode == "flush":
            await storage.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def crash_child(data_dir: Path, mode: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(data_dir), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def snapshot(data_dir: Path) -> tuple[dict[str, object], list[str], int | None]:
    backend = SqliteBackend(data_dir)
    storage = DurableObjectStorage(backend.open("Crash", "ab12"))

    async def read() -> tuple[dict[str, object], list[str], int | None]:
        tables = storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 't'").raw()
        return await storage.list(), [row[0] for row in tables], await storage.getAlarm()

    try:
        return asyncio.run(read())
    finally:
        storage.close()
        backend.close()


def seed(data_dir: Path) -> None:
    backend = SqliteBackend(data_dir)
    storage = DurableObjectStorage(backend.open("Crash", "ab12"))
    storage.kv.put("before", 0)  # no event loop: committed when put() returns
    storage.close()
    backend.close()


def test_crash_before_commit_loses_the_whole_batch(tmp_path: Path) -> None:
    seed(tmp_path)
    crash_child(tmp_path, "crash")
    assert snapshot(tmp_path) == ({"before": 0}, [], None)


def test_crash_after_commit_keeps_the_whole_batch(tmp_path: Path) -> None:
    seed(tmp_path)
    crash_child(tmp_path, "flush")
    assert snapshot(tmp_path) == ({"a": 1, "b": 2}, ["t"], 12345)


def test_file_layout_and_pragmas(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing until an object opens
    store = backend.open("ChatRoom", "0123abcd")
    path = tmp_path / "data" / "ChatRoom" / "0123abcd.sqlite3"
    assert backend.path_for("ChatRoom", "0123abcd") == path
    assert path.exists()
    assert isinstance(store, SqliteObjectStore)

    def pragma(name: str) -> object:
        return store._run(f"PRAGMA {name}").fetchone()[0]

    assert pragma("journal_mode") == "wal"
    assert pragma("synchronous") == 2  # FULL
    assert pragma("locking_mode") == "exclusive"
    assert pragma("foreign_keys") == 1
    assert pragma("application_id") == APPLICATION_ID
    assert pragma("auto_vacuum") == 2  # incremental
    # Reserved tables appear lazily, on first write (an empty sqlite_master, as on Cloudflare).
    assert store._run("SELECT name FROM sqlite_master").fetchall() == []
    store.close()
    backend.close()


@pytest.mark.parametrize(
    ("namespace", "object_id"),
    [("../etc", "ab"), ("a/b", "ab"), (".hidden", "ab"), ("", "ab"), ("Ok", "AB"), ("Ok", "../x")],
)
def test_unsafe_names_are_refused(tmp_path: Path, namespace: str, object_id: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        SqliteBackend(tmp_path).open(namespace, object_id)


def test_one_open_per_object(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path)
    store = backend.open("Room", "aa")
    with pytest.raises(StoreInUseError, match="already open"):
        backend.open("Room", "aa")
    # Another backend (another server in the same process) hits the file lock.
    with pytest.raises(StoreInUseError, match="in use"):
        SqliteBackend(tmp_path).open("Room", "aa")
    store.close()
    backend.open("Room", "aa").close()  # free again once closed
    backend.close()


def test_another_process_cannot_open_a_live_object(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path)
    store = backend.open("Room", "bb")
    script = (
        "import sys\n"
        "from stateroom.storage import SqliteBackend, StoreInUseError\n"
        "try:\n"
        "    SqliteBackend(sys.argv[1]).open('Room', 'bb')\n"
        "except StoreInUseError:\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    store.close()
    backend.close()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Room" / "cc.sqlite3"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE someone_elses(a)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not a stateroom object database"):
        SqliteBackend(tmp_path).open("Room", "cc")


def test_data_and_alarm_survive_reopen(tmp_path: Path) -> None:
    async def write() -> None:
        backend = SqliteBackend(tmp_path)
        storage = DurableObjectStorage(backend.open("Room", "dd"))
        await storage.put({"k": [1, 2]})
        await storage.setAlarm(1_800_000_000_000)
        storage.sql.exec("CREATE TABLE t(a); INSERT INTO t VALUES ('x')")
        await storage.flush()
        storage.close()
        backend.close()

    async def read() -> None:
        backend = SqliteBackend(tmp_path)
        storage = DurableObjectStorage(backend.open("Room", "dd"))
        assert await storage.get("k") == [1, 2]
        assert await storage.getAlarm() == 1_800_000_000_000
        assert storage.sql.exec("SELECT a FROM t").one() == {"a": "x"}
        storage.close()
        backend.close()

    asyncio.run(write())
    asyncio.run(read())


def test_in_memory_objects_survive_close_but_not_the_backend() -> None:
    backend = SqliteBackend(in_memory=True)
    storage = DurableObjectStorage(backend.open("Room", "ee"))
    storage.kv.put("a", 1)
    storage.close()
    storage = DurableObjectStorage(backend.open("Room", "ee"))
    assert storage.kv.get("a") == 1  # as after an eviction
    storage.close()
    backend.close()
    backend = SqliteBackend(in_memory=True)
    storage = DurableObjectStorage(backend.open("Room", "ee"))
    assert storage.kv.get("a") is None
    backend.close()


def test_delete_all_gives_space_back(tmp_path: Path) -> None:
    async def body() -> None:
        backend = SqliteBackend(tmp_path)
        storage = DurableObjectStorage(backend.open("Room", "ff"))
        for i in range(20):
            await storage.put(f"k{i}", b"x" * 100_000)
        await storage.flush()
        full = storage.sql.databaseSize
        assert full > 2_000_000
        await storage.deleteAll()
        await storage.flush()
        assert storage.sql.databaseSize < full // 4
        storage.close()
        backend.close()

    asyncio.run(body())


def test_backend_needs_a_place() -> None:
    with pytest.raises(ValueError, match="data_dir"):
        SqliteBackend()
