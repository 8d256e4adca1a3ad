"""The commit log (storage/log*.py, storage/wal.py): capture, group flush, recovery, faults.

Crashes are real: a child process writes, then dies without closing anything
(``os._exit``), and the test opens the data directory it left, as a restarted
server would.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stateroom.runtime.gates import OutputGate
from stateroom.storage import DurableObjectStorage, StorageBrokenError, StoreInUseError
from stateroom.storage.local_log import LocalCommitLog, encode
from stateroom.storage.log import LogRecord
from stateroom.storage.log_backend import LOG_DIRECTORY, LoggedSqliteBackend
from stateroom.storage.wal import WalTail, apply
from support import wal_database

OID = "ab" * 32


def test_wal_capture_replays_to_the_same_database(tmp_path: Path) -> None:
    """Frames captured after each commit, replayed onto an image, give SQLite's own
    database: with rolled-back transactions that spilled pages, and WAL restarts."""
    rng = random.Random(7)
    path = tmp_path / "o.db"
    conn = wal_database(path)  # spills pages of open transactions into the WAL
    tail = WalTail()
    image = bytearray()
    fd = os.open(f"{path}-wal", os.O_RDONLY)
    try:
        for i in range(200):
            conn.execute("BEGIN")
            for _ in range(rng.randint(1, 12)):
                value = rng.randbytes(rng.randint(1, 3000))
                conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (rng.randint(0, 800), value))
            conn.execute("ROLLBACK" if rng.random() < 0.2 else "COMMIT")
            frames = tail.capture(fd)
            if frames:
                apply(image, frames, tail.page_size)
            if rng.random() < 0.05:
                conn.execute(f"PRAGMA wal_checkpoint({rng.choice(['RESTART', 'TRUNCATE'])})")
                tail.reset()
            if i % 40 == 0:
                assert bytes(image) == conn.serialize()
        assert bytes(image) == conn.serialize()
    finally:
        os.close(fd)
        conn.close()


def _record(i: int, size: int = 100) -> LogRecord:
    page = bytes([i % 256]) * size
    return LogRecord("ns", OID, 0, size, b"\0" * 24 + page)


def test_log_recovers_its_records_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    log = LocalCommitLog(tmp_path)
    assert log.recover() == []
    log.start()
    pendings = [log.append(_record(i)) for i in range(10)]  # no loop: each waits
    assert all(p.done and p.error is None for p in pendings)
    log.close()
    segment = next(tmp_path.glob("*.log"))
    with open(segment, "ab") as file:
        file.write(encode(_record(99))[:-7])  # a record cut short by a crash
    again = LocalCommitLog(tmp_path)
    recovered = again.recover()
    assert [r.frames for _, r in recovered] == [_record(i).frames for i in range(10)]
    assert [p for p, _ in recovered] == [p.position for p in pendings]
    assert segment.stat().st_size == again.appended  # the torn bytes are gone
    again.start()
    again.append(_record(10))
    again.close()
    third = LocalCommitLog(tmp_path)
    assert len(third.recover()) == 11


def test_log_rotates_segments_and_a_checkpoint_deletes_old_ones(tmp_path: Path) -> None:
    async def main() -> None:
        log = LocalCommitLog(tmp_path, segment_bytes=1000)
        log.recover()
        log.start()
        pendings = []
        for i in range(40):
            pendings.append(log.append(_record(i)))
            await asyncio.wait_for(_settled(pendings[-1:]), 10)
        assert len(list(tmp_path.glob("*.log"))) > 3
        middle = pendings[20].position
        log.checkpoint(middle)
        log.close()
        again = LocalCommitLog(tmp_path)
        records = again.recover()
        # Records from the checkpoint on are all there, in order; older segments are gone.
        assert [p for p, _ in records] == [p.position for p in pendings[20:]]
        assert min(int(s.stem) for s in tmp_path.glob("*.log")) <= middle

    asyncio.run(main())


async def _settled(pendings: list) -> None:  # type: ignore[type-arg]
    for pending in pendings:
        done = asyncio.get_running_loop().create_future()
        pending.add_callback(lambda error, done=done: done.done() or done.set_result(error))
        assert await done is None


def _child(tmp_path: Path, body: str, *, pure: bool = False) -> str:
    """Run ``body`` in a child process (``data`` is its data dir); it must end in os._exit."""
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys
            from stateroom.runtime.gates import OutputGate
            from stateroom.storage import DurableObjectStorage
            from stateroom.storage.log_backend import LoggedSqliteBackend
            data = sys.argv[1]

            def storage(backend, oid):
                gate = OutputGate()
                return DurableObjectStorage(backend.open("ns", oid), write_tracker=gate), gate
            """
        )
        + textwrap.dedent(body)
    )
    env = dict(os.environ)
    if pure:
        env["STATEROOM_PURE_PYTHON"] = "1"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _read(data: Path, oid: str, key: str) -> object:
    async def main() -> object:
        backend = LoggedSqliteBackend(data)
        try:
            storage = DurableObjectStorage(backend.open("ns", oid))
            value = await storage.get(key)
            rows = storage.sql.exec("PRAGMA quick_check").toArray()
            assert rows == [{"quick_check": "ok"}]
            return value
        finally:
            backend.close()

    return asyncio.run(main())


def test_acknowledged_writes_survive_a_crash(tmp_path: Path) -> None:
    """Writes whose output gate released are back after the process dies (os._exit:
    no close, no checkpoint), for many objects, replayed from the log."""
    _child(
        tmp_path,
        """
        async def main():
            backend = LoggedSqliteBackend(data)
            objects = [storage(backend, f"{i:064x}") for i in range(50)]
            for round in range(20):
                for s, gate in objects:
                    s.put("n", round)
                for s, gate in objects:
                    await gate.wait_released()
            print("acked")
            os._exit(0)
        asyncio.run(main())
        """,
    )
    for i in range(50):
        assert _read(tmp_path / "data", f"{i:064x}", "n") == 19


def test_a_commit_never_made_durable_is_gone_after_a_crash(tmp_path: Path) -> None:
    """The object's file had the commits (in its WAL) but the log never wrote them: after
    the restart, the object is at its last durable commit, and its file is sound. (A
    record written but not yet synced may survive a process crash: the kernel has it.)"""
    _child(
        tmp_path,
        """
        import threading
        async def main():
            backend = LoggedSqliteBackend(data)
            s, gate = storage(backend, "ab" * 32)
            s.put("v", "durable")
            await gate.wait_released()
            # From now on the log's writer never gets a record to the disk.
            from stateroom.storage import local_log
            local_log._write_all = lambda fd, data: threading.Event().wait()
            for i in range(30):
                s.put("v", f"lost {i}")
                s.put(f"extra{i}", "x" * 3000)
                await asyncio.sleep(0)
            await asyncio.sleep(0.05)
            assert gate.pending
            os._exit(0)
        asyncio.run(main())
        """,
        pure=True,  # the Python writer, which the child can stall
    )
    assert _read(tmp_path / "data", OID, "v") == "durable"
    assert _read(tmp_path / "data", OID, "extra0") is None


def test_a_failed_log_write_resets_the_object_and_keeps_durable_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full under the log: the write fails with a clear error, nothing that depended
    on it leaves, the object's file is back at its last durable commit, and objects
    that only read keep working."""
    monkeypatch.setenv("STATEROOM_PURE_PYTHON", "1")  # the Python writer: its fd is ours

    async def main() -> None:
        backend = LoggedSqliteBackend(tmp_path / "data")
        broken: list[BaseException] = []
        gate = OutputGate(on_broken=broken.append)
        writer = DurableObjectStorage(
            backend.open("ns", OID), write_tracker=gate, on_broken=broken.append
        )
        reader = DurableObjectStorage(backend.open("ns", "cd" * 32))
        await writer.put("v", "durable")
        await reader.put("r", "kept")
        await writer.flush()
        await reader.flush()
        log = backend.log
        assert isinstance(log, LocalCommitLog)
        os.close(log._writer.fd)
        log._writer.fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        released: list[str] = []
        writer.put("v", "lost")
        gate.hold(lambda: released.append("out"))
        with pytest.raises(StorageBrokenError, match=r"No space left|could not make"):
            await writer.flush()
        assert released == [] and broken
        assert await reader.get("r") == "kept"  # reads of other objects still work
        writer.close()
        again = DurableObjectStorage(backend.open("ns", OID))
        assert await again.get("v") == "durable"
        again.close()
        reader.close()
        backend.close()

    asyncio.run(main())
    assert _read(tmp_path / "data", OID, "v") == "durable"
    assert _read(tmp_path / "data", "cd" * 32, "r") == "kept"


def test_one_process_owns_a_data_directory(tmp_path: Path) -> None:
    first = LoggedSqliteBackend(tmp_path)
    try:
        with pytest.raises(StoreInUseError, match="in use by another stateroom process"):
            LoggedSqliteBackend(tmp_path)
    finally:
        first.close()
    LoggedSqliteBackend(tmp_path).close()


def test_a_checkpoint_bounds_the_log(tmp_path: Path) -> None:
    """Checkpoints copy durable WALs into files, sync, and let old segments go; the data
    is the same after a crash that follows."""

    async def main() -> None:
        backend = LoggedSqliteBackend(tmp_path, checkpoint_bytes=50_000)
        log = backend.log
        assert isinstance(log, LocalCommitLog)
        log.segment_bytes = 20_000
        s = DurableObjectStorage(backend.open("ns", OID))
        for i in range(200):
            await s.put(f"k{i % 20}", "x" * 500 + str(i))
            await s.flush()
        for _ in range(100):
            if log.read_checkpoint() > 0:
                break
            await asyncio.sleep(0.02)
        assert log.read_checkpoint() > 0
        backend.checkpoint_now()
        segments = list((tmp_path / LOG_DIRECTORY).glob("*.log"))
        assert len(segments) <= 2
        s.close()
        backend.close()

    asyncio.run(main())
    assert _read(tmp_path, OID, "k19") == "x" * 500 + "199"


def test_open_connections_are_a_bounded_pool(tmp_path: Path) -> None:
    """Many live objects, few open files: idle objects give their connection back and
    reopen it on their next call, with their data (and uncommitted work) intact."""

    async def main() -> None:
        backend = LoggedSqliteBackend(tmp_path, max_open=4)
        fds_before = len(os.listdir("/proc/self/fd"))
        objects = [DurableObjectStorage(backend.open("ns", f"{i:064x}")) for i in range(40)]
        for round_ in range(3):
            for i, storage in enumerate(objects):
                await storage.put("v", [round_, i])
                storage.sql.exec("CREATE TABLE IF NOT EXISTS t (x)")
                storage.sql.exec("INSERT INTO t VALUES (?)", round_)
            await asyncio.gather(*(s.flush() for s in objects))
            assert len(os.listdir("/proc/self/fd")) - fds_before <= 4 * 3 + 2
        for i, storage in enumerate(objects):
            assert await storage.get("v") == [2, i]
            assert storage.sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 3}
        for storage in objects:
            storage.close()
        backend.close()

    asyncio.run(main())
    assert _read(tmp_path, f"{39:064x}", "v") == [2, 39]


def test_idle_objects_give_their_connection_back(tmp_path: Path) -> None:
    """A live object that is not used holds no open file after ``idle_close``."""

    async def main() -> None:
        backend = LoggedSqliteBackend(tmp_path, idle_close=0.05)
        objects = [DurableObjectStorage(backend.open("ns", f"{i:064x}")) for i in range(5)]
        for storage in objects:
            await storage.put("k", "v")
        await asyncio.gather(*(s.flush() for s in objects))
        for _ in range(200):  # bounded: the sweep runs every idle_close / 2
            if not backend._lru:
                break
            await asyncio.sleep(0.01)
        assert not backend._lru
        assert [await s.get("k") for s in objects] == ["v"] * 5
        for storage in objects:
            storage.close()
        backend.close()

    asyncio.run(main())
