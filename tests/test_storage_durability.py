"""Commits made durable off the event loop (storage/durability.py), on real files.

The fsyncs here are real; a test that needs one to take a while holds it behind a
``threading.Event`` before it runs, and an I/O error is injected by making the sync raise
(an fsync that fails cannot be provoked on a healthy disk).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stateroom.runtime.gates import OutputGate, OutputGateBrokenError
from stateroom.storage import DurableObjectStorage, SqliteBackend, StorageBrokenError, durability

SYNC_WAIT_S = 10.0


class HeldSyncs:
    """Real fsyncs, each held until the test lets it run; records what each synced."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, list[Path]]] = []
        self.release = threading.Event()
        self.release.set()
        self.fail: OSError | None = None
        self._real = durability.sync_files

    def __call__(self, wal: Path, directories: list[Path]) -> None:
        self.calls.append((wal, list(directories)))
        assert self.release.wait(SYNC_WAIT_S), "a held sync was never released"
        if self.fail is not None:
            raise self.fail
        self._real(wal, directories)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSyncs]:
    held = HeldSyncs()
    monkeypatch.setattr(durability, "sync_files", held)
    yield held
    held.release.set()


def open_storage(backend: SqliteBackend, object_id: str) -> tuple[DurableObjectStorage, OutputGate]:
    gate = OutputGate()
    return DurableObjectStorage(backend.open("ns", object_id), write_tracker=gate), gate


def test_outputs_wait_for_the_sync_and_the_loop_does_not(tmp_path: Path, syncs: HeldSyncs) -> None:
    backend = SqliteBackend(tmp_path)

    async def run() -> None:
        a, gate_a = open_storage(backend, "aa")
        b, gate_b = open_storage(backend, "bb")
        await a.put("k", 1)
        syncs.release.clear()  # a's next sync hangs in its thread
        await a.put("k", 2)
        await asyncio.sleep(0)  # the commit ran; its sync is in flight
        assert a.commit_pending and gate_a.pending
        # Meanwhile the loop serves another object, whose reads and writes go on.
        assert await b.get("x") is None
        await b.put("x", "y")
        assert await b.get("x") == "y"
        # a keeps working too: its next batch opens while the last one syncs.
        await a.put("k", 3)
        assert await a.get("k") == 3
        assert gate_a.pending
        syncs.release.set()
        await asyncio.wait_for(a.flush(), SYNC_WAIT_S)
        await asyncio.wait_for(gate_a.wait_released(), SYNC_WAIT_S)
        await asyncio.wait_for(gate_b.wait_released(), SYNC_WAIT_S)
        assert not a.commit_pending
        a.close()
        b.close()

    asyncio.run(run())
    backend.close()
    reopened = SqliteBackend(tmp_path)
    storage, _ = open_storage(reopened, "aa")
    assert asyncio.run(storage.get("k")) == 3
    reopened.close()


def test_commits_during_a_sync_share_the_next_one(tmp_path: Path, syncs: HeldSyncs) -> None:
    backend = SqliteBackend(tmp_path)

    async def run() -> None:
        storage, gate = open_storage(backend, "cc")
        await storage.put("first", 0)
        syncs.release.clear()
        await storage.put("k", 0)
        await asyncio.sleep(0)
        in_flight = len(syncs.calls)
        for i in range(1, 20):  # 19 batches, one per turn, while one sync is held
            await storage.put("k", i)
            await asyncio.sleep(0)
        assert len(syncs.calls) == in_flight  # none started while one runs
        syncs.release.set()
        await asyncio.wait_for(storage.flush(), SYNC_WAIT_S)
        assert len(syncs.calls) == in_flight + 1  # one more sync covered all 19
        await asyncio.wait_for(gate.wait_released(), SYNC_WAIT_S)
        storage.close()

    asyncio.run(run())
    backend.close()


def test_first_sync_makes_the_new_file_and_its_wal_reachable(
    tmp_path: Path, syncs: HeldSyncs
) -> None:
    backend = SqliteBackend(tmp_path / "data")

    async def run() -> None:
        storage, _ = open_storage(backend, "dd")
        await storage.put("k", 1)
        await asyncio.wait_for(storage.flush(), SYNC_WAIT_S)
        await storage.put("k", 2)
        await asyncio.wait_for(storage.flush(), SYNC_WAIT_S)
        storage.close()

    asyncio.run(run())
    backend.close()
    (wal, first), (_, second) = syncs.calls[0], syncs.calls[1]
    assert wal == tmp_path / "data" / "ns" / "dd.sqlite3-wal"
    # The data dir's entry lives in tmp_path, the namespace dir's in data, the file's in ns.
    assert first == [tmp_path, tmp_path / "data", tmp_path / "data" / "ns"]
    assert second == []


def test_a_failed_sync_breaks_the_object_and_discards_its_outputs(
    tmp_path: Path, syncs: HeldSyncs
) -> None:
    backend = SqliteBackend(tmp_path)

    async def run() -> None:
        storage, gate = open_storage(backend, "ee")
        syncs.fail = OSError(5, "Input/output error")
        await storage.put("k", 1)
        with pytest.raises(StorageBrokenError):
            await asyncio.wait_for(storage.flush(), SYNC_WAIT_S)
        assert storage.broken is not None
        with pytest.raises(StorageBrokenError):
            await storage.put("k", 2)
        with pytest.raises(OutputGateBrokenError):  # what waited for the write never leaves
            await asyncio.wait_for(gate.wait_released(), SYNC_WAIT_S)
        storage.close(commit=False)

    asyncio.run(run())
    backend.close()


def test_without_an_event_loop_the_commit_syncs_inline(tmp_path: Path, syncs: HeldSyncs) -> None:
    backend = SqliteBackend(tmp_path)
    store = backend.open("ns", "ff")
    store.begin()
    store.kv_put("k", b"v")
    assert store.commit() is None  # durable when it returns
    assert len(syncs.calls) == 1
    store.close()
    backend.close()
