"""Automatic write coalescing: one durable transaction per event-loop turn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from stateroom.runtime.gates import OutputGate
from stateroom.storage import (
    DurableObjectStorage,
    ListQuery,
    ObjectStore,
    SqliteBackend,
    SqlResult,
    StorageBrokenError,
)


class RecordingStore(ObjectStore):
    """Delegates to a real store, logging transaction calls; can fail commits.

    Written against the abstract ``ObjectStore`` only, so it doubles as a check
    that the interface is all the storage layer needs.
    """

    def __init__(self, inner: ObjectStore, log: list[str] | None = None) -> None:
        self.inner = inner
        self.namespace = inner.namespace
        self.object_id = inner.object_id
        self.log: list[str] = [] if log is None else log
        self.fail_commit: BaseException | None = None
        self.lose_transaction = False  # pretend the engine rolled back on its own

    @property
    def in_transaction(self) -> bool:
        if self.lose_transaction and self.inner.in_transaction:
            self.inner.rollback()
        return self.inner.in_transaction

    def begin(self) -> None:
        self.log.append("begin")
        self.inner.begin()

    def commit(self) -> None:
        if self.fail_commit is not None:
            self.log.append("commit failed")
            raise self.fail_commit
        self.inner.commit()
        self.log.append("commit")

    def rollback(self) -> None:
        self.log.append("rollback")
        self.inner.rollback()

    def savepoint(self, name: str) -> None:
        self.inner.savepoint(name)

    def release(self, name: str) -> None:
        self.inner.release(name)

    def rollback_to(self, name: str) -> None:
        self.inner.rollback_to(name)

    def kv_get(self, key: str) -> bytes | None:
        return self.inner.kv_get(key)

    def kv_get_many(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        return self.inner.kv_get_many(keys)

    def kv_put(self, key: str, value: bytes) -> None:
        self.log.append(f"put {key}")
        self.inner.kv_put(key, value)

    def kv_put_many(self, entries: Sequence[tuple[str, bytes]]) -> None:
        self.inner.kv_put_many(entries)

    def kv_delete(self, key: str) -> bool:
        return self.inner.kv_delete(key)

    def kv_delete_many(self, keys: Sequence[str]) -> int:
        return self.inner.kv_delete_many(keys)

    def kv_list(self, query: ListQuery) -> list[tuple[str, bytes]]:
        return self.inner.kv_list(query)

    def delete_all(self, *, include_alarm: bool) -> None:
        self.inner.delete_all(include_alarm=include_alarm)

    def sql_exec(self, query: str, bindings: Sequence[object]) -> SqlResult:
        return self.inner.sql_exec(query, bindings)

    @property
    def database_size(self) -> int:
        return self.inner.database_size

    def get_alarm(self) -> int | None:
        return self.inner.get_alarm()

    def set_alarm(self, when_ms: int | None) -> None:
        self.inner.set_alarm(when_ms)

    def close(self) -> None:
        self.inner.close()


def run_with(
    fn: Callable[[DurableObjectStorage, RecordingStore], Any],
    **kwargs: Any,
) -> Any:
    """Run ``fn(storage, store)`` in an event loop over an in-memory object."""
    backend = SqliteBackend(in_memory=True)
    store = RecordingStore(backend.open("Test", "c0"))

    async def main() -> Any:
        storage = DurableObjectStorage(store, **kwargs)
        try:
            return await fn(storage, store)
        finally:
            storage.close(commit=storage.broken is None)

    try:
        return asyncio.run(main())
    finally:
        backend.close()


def test_writes_in_one_turn_share_one_commit() -> None:
    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        await s.put("a", 1)
        s.kv.put("b", 2)
        s.sql.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        await s.setAlarm(1000)
        assert await s.get("a") == 1  # reads see the uncommitted batch
        assert store.log == ["begin", "put a", "put b"]
        assert s.commit_pending
        await s.flush()
        assert store.log == ["begin", "put a", "put b", "commit"]
        assert not s.commit_pending
        await s.flush()  # nothing pending: returns at once

    run_with(body)


def test_each_turn_gets_its_own_commit() -> None:
    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        await s.put("a", 1)
        await asyncio.sleep(0)  # the turn ends: the batch commits
        assert store.log == ["begin", "put a", "commit"]
        await s.put("b", 2)
        await s.sync()
        assert store.log == ["begin", "put a", "commit", "begin", "put b", "commit"]

    run_with(body)


def test_writes_from_concurrent_tasks_in_the_same_turn_coalesce() -> None:
    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        async def writer(key: str) -> None:
            await s.put(key, 1)

        await asyncio.gather(writer("x"), writer("y"))
        await s.flush()
        assert store.log.count("commit") == 1

    run_with(body)


def test_read_only_sql_still_closes_its_transaction() -> None:
    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        s.sql.exec("SELECT 1")
        assert not s.commit_pending  # nothing to make durable
        await asyncio.sleep(0)
        assert store.log == ["begin", "commit"]
        assert not store.in_transaction

    run_with(body)


def test_explicit_transaction_defers_the_commit() -> None:
    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        async def closure(txn: Any) -> None:
            await txn.put("a", 1)
            for _ in range(3):
                await asyncio.sleep(0)  # turns pass; the commit must wait
            assert "commit" not in store.log
            await txn.put("b", 2)

        await s.transaction(closure)
        await s.flush()
        assert store.log == ["begin", "put a", "put b", "commit"]

    run_with(body)


def test_custom_commit_scheduler() -> None:
    due: list[Callable[[], None]] = []

    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        await s.put("a", 1)
        await asyncio.sleep(0)
        assert store.log == ["begin", "put a"]  # the runtime decides when
        assert len(due) == 1
        due.pop()()
        assert store.log == ["begin", "put a", "commit"]

    run_with(body, schedule_commit=due.append)


def test_without_an_event_loop_every_operation_commits() -> None:
    backend = SqliteBackend(in_memory=True)
    store = RecordingStore(backend.open("Test", "c1"))
    storage = DurableObjectStorage(store)
    storage.kv.put("a", 1)
    storage.sql.exec("CREATE TABLE t(x)")
    storage.transactionSync(lambda: (storage.kv.put("b", 1), storage.kv.put("c", 1)))
    assert store.log == [
        "begin", "put a", "commit", "begin", "commit", "begin", "put b", "put c", "commit"
    ]  # fmt: skip
    storage.close()
    backend.close()


def test_commit_now_and_close() -> None:
    backend = SqliteBackend(in_memory=True)

    async def main() -> None:
        store = RecordingStore(backend.open("Test", "c2"))
        storage = DurableObjectStorage(store)
        await storage.put("a", 1)
        storage.commit_now()
        assert store.log[-1] == "commit"
        await storage.put("b", 2)
        storage.close()  # commits what is pending
        assert store.log[-1] == "commit"
        store = RecordingStore(backend.open("Test", "c2"))
        storage = DurableObjectStorage(store)
        assert await storage.list() == {"a": 1, "b": 2}
        await storage.put("c", 3)
        storage.close(commit=False)  # abandons it
        storage = DurableObjectStorage(backend.open("Test", "c2"))
        assert await storage.list() == {"a": 1, "b": 2}
        storage.close()

    asyncio.run(main())
    backend.close()


def test_failed_commit_breaks_storage() -> None:
    broken: list[StorageBrokenError] = []

    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        await s.put("before", 1)
        await s.flush()
        store.fail_commit = OSError(28, "No space left on device")
        await s.put("a", 1)
        with pytest.raises(StorageBrokenError, match="No space left") as info:
            await s.flush()
        assert isinstance(info.value.__cause__, OSError)
        assert broken == [s.broken]
        assert store.log[-2:] == ["commit failed", "rollback"]
        for call in (s.get("before"), s.put("b", 1), s.list(), s.sync()):
            with pytest.raises(StorageBrokenError):
                await call
        with pytest.raises(StorageBrokenError):
            s.sql.exec("SELECT 1")
        with pytest.raises(StorageBrokenError):
            s.kv.get("before")
        store.fail_commit = None
        assert store.inner.kv_get("a") is None  # the lost batch is really gone
        assert store.inner.kv_get("before") is not None

    run_with(body, on_broken=broken.append)


def test_engine_side_rollback_is_detected() -> None:
    broken: list[StorageBrokenError] = []

    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        await s.put("a", 1)
        store.lose_transaction = True
        await asyncio.sleep(0)
        assert s.broken is not None
        assert "aborted" in str(s.broken)
        assert broken == [s.broken]

    run_with(body, on_broken=broken.append)


def test_unconfirmed_writes_do_not_hold_outputs() -> None:
    gate = OutputGate()

    async def body(s: DurableObjectStorage, store: RecordingStore) -> None:
        await s.put("a", 1, allowUnconfirmed=True)
        await s.delete("b", allow_unconfirmed=True)
        await s.setAlarm(5, allowUnconfirmed=True)
        assert s.commit_pending and not gate.pending
        released: list[str] = []
        gate.hold(lambda: released.append("out"))
        assert released == ["out"]
        await s.put("c", 1)  # a confirmed write in the same batch does hold
        assert gate.pending
        await s.sync()  # sync() covers unconfirmed writes too
        assert not gate.pending and not s.commit_pending

    run_with(body, write_tracker=gate)
