"""ctx.storage's KV API: values, ordering, list options, limits, transactions, alarms.

Orders and messages were checked against workerd (the pinned reference
runtime) with a SQLite-backed object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from stateroom.runtime.gates import OutputGate
from stateroom.storage import (
    DeleteAllInTransactionError,
    DurableObjectStorage,
    DurableObjectTransaction,
    SqliteBackend,
    StorageLimitError,
    StorageLimits,
    TransactionClosedError,
)

T = TypeVar("T")


def run(fn: Callable[[DurableObjectStorage], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``fn(storage)`` on a fresh in-memory object inside an event loop."""
    backend = SqliteBackend(in_memory=True)

    async def main() -> T:
        storage = DurableObjectStorage(backend.open("Test", "00ff"), **kwargs)
        try:
            return await fn(storage)
        finally:
            storage.close()

    try:
        return asyncio.run(main())
    finally:
        backend.close()


# Keys whose UTF-8 order differs from UTF-16 code unit order ("\uffff" < U+10000)
# and from case-insensitive or locale order.
KEYS = ["b", "a", "é", "\U00010000", "\uffff", "A", "", "ab", "a\x00b", "\x7f", "\x80"]
UTF8_ORDER = sorted(KEYS, key=lambda k: k.encode())


async def fill(storage: DurableObjectStorage) -> None:
    await storage.put({k: len(k) for k in KEYS})


def test_utf8_order_is_code_point_order() -> None:
    assert sorted(KEYS) == UTF8_ORDER
    # What workerd returned for the same keys.
    assert UTF8_ORDER == ["", "A", "a", "a\x00b", "ab", "b", "\x7f", "\x80", "é", "\uffff", "𐀀"]


def test_list_orders_keys_by_utf8_bytes() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await fill(s)
        assert list(await s.list()) == UTF8_ORDER
        assert list(await s.list(reverse=True)) == UTF8_ORDER[::-1]
        assert list(await s.list({"reverse": True, "limit": 3})) == ["\U00010000", "\uffff", "é"]

    run(body)


def test_get_single_and_many() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await fill(s)
        assert await s.get("é") == 1
        assert await s.get("missing") is None
        many = await s.get(["b", "a", "zz", "\U00010000", "\uffff", "a"])
        assert list(many.items()) == [("a", 1), ("b", 1), ("\uffff", 1), ("\U00010000", 1)]
        assert await s.get([]) == {}

    run(body)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"start": "a"}, UTF8_ORDER[2:]),
        ({"startAfter": "a"}, UTF8_ORDER[3:]),
        ({"start_after": "a"}, UTF8_ORDER[3:]),
        ({"end": "ab"}, ["", "A", "a", "a\x00b"]),
        ({"start": "a", "end": "b"}, ["a", "a\x00b", "ab"]),
        ({"start": "a", "end": "b", "reverse": True}, ["ab", "a\x00b", "a"]),
        ({"start": "b", "end": "a"}, []),
        ({"prefix": "a"}, ["a", "a\x00b", "ab"]),
        ({"prefix": "a", "start": "ab"}, ["ab"]),
        ({"prefix": "a", "end": "ab"}, ["a", "a\x00b"]),
        ({"prefix": "a", "startAfter": "a"}, ["a\x00b", "ab"]),
        ({"prefix": "a", "reverse": True, "limit": 2}, ["ab", "a\x00b"]),
        ({"prefix": ""}, UTF8_ORDER),
        ({"prefix": "\uffff"}, ["\uffff"]),
        ({"prefix": "\U00010000"}, ["\U00010000"]),
        ({"limit": 1}, [""]),
        ({"startAfter": "\U00010000"}, []),
    ],
)
def test_list_options(options: dict[str, Any], expected: list[str]) -> None:
    async def body(s: DurableObjectStorage) -> list[str]:
        await fill(s)
        return list(await s.list(**options))

    assert run(body) == expected


def test_prefix_edge_cases() -> None:
    async def body(s: DurableObjectStorage) -> None:
        # Bumping the last code point must skip the surrogate range and carry past U+10FFFF.
        keys = ["\ud7ff", "\ud7ffx", "\ue000", "\U0010ffff", "\U0010ffffz", "x\U0010ffff"]
        await s.put({k: 1 for k in keys})
        assert list(await s.list(prefix="\ud7ff")) == ["\ud7ff", "\ud7ffx"]
        assert list(await s.list(prefix="\U0010ffff")) == ["\U0010ffff", "\U0010ffffz"]
        assert list(await s.list(prefix="x\U0010ffff")) == ["x\U0010ffff"]

    run(body)


def test_list_option_errors() -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(TypeError, match="both start and startAfter"):
            await s.list(start="a", startAfter="a")
        with pytest.raises(ValueError, match="List limit must be positive"):
            await s.list(limit=0)
        with pytest.raises(ValueError, match="List limit must be positive"):
            await s.list(limit=-1)
        with pytest.raises(TypeError, match="limit must be an int"):
            await s.list(limit=1.5)
        with pytest.raises(TypeError, match="'prefix' must be str"):
            await s.list(prefix=1)
        with pytest.raises(TypeError, match="unexpected option 'bogus'"):
            await s.list(bogus=1)
        with pytest.raises(TypeError, match="twice"):
            await s.list({"startAfter": "a"}, start_after="b")

    run(body)


def test_put_get_delete_values() -> None:
    async def body(s: DurableObjectStorage) -> None:
        value = {"n": 10**30, "f": 1.5, "l": [None, True, b"\x00"], "d": datetime(2020, 1, 1)}
        await s.put("k", value)
        assert await s.get("k") == value
        await s.put("k", None)  # None is a value
        assert await s.list() == {"k": None}
        assert await s.delete("k") is True
        assert await s.delete("k") is False
        await s.put({"a": 1, "b": 2, "c": 3})
        assert await s.delete(["a", "c", "nope", "a"]) == 2
        assert await s.delete([]) == 0
        assert await s.list() == {"b": 2}
        await s.put("", "empty key is fine")
        assert await s.get("") == "empty key is fine"

    run(body)


def test_put_argument_errors() -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(TypeError, match="no value"):
            await s.put("k")
        with pytest.raises(TypeError, match="or a dict of entries, not 'int'"):
            await s.put(1, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="keys must be str"):
            await s.put({1: 1})  # type: ignore[dict-item]
        with pytest.raises(TypeError, match="'set'"):
            await s.put("k", {1})
        with pytest.raises(TypeError, match="keys must be str"):
            await s.get(["a", 2])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"a key \(str\) or a list"):
            await s.get({"a"})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="lone surrogates"):
            await s.put("\ud800", 1)
        with pytest.raises(TypeError, match="unexpected option"):
            await s.put("k", 1, {"bogus": True})
        assert await s.list() == {}  # nothing half-written

    run(body)


def test_put_options_are_accepted() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put("a", 1, allowUnconfirmed=True, noCache=True)
        await s.put({"b": 2}, {"allowConcurrency": True})
        await s.put("c", 3, allow_unconfirmed=True)
        assert await s.get(["a", "b", "c"], noCache=True) == {"a": 1, "b": 2, "c": 3}

    run(body)


def test_key_size_limit() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put("x" * 2048, 1)
        await s.put("é" * 1024, 1)  # 2048 bytes
        with pytest.raises(StorageLimitError) as info:
            await s.put("x" * 2049, 1)
        assert str(info.value) == (
            "Keys cannot be larger than 2048 bytes. A key of size 2049 was provided."
        )
        with pytest.raises(StorageLimitError, match="size 2050"):
            await s.get("é" * 1025)
        with pytest.raises(StorageLimitError):
            await s.delete(["ok", "x" * 3000])
        assert isinstance(info.value, ValueError)

    run(body)


def test_entry_size_limit() -> None:
    async def body(s: DurableObjectStorage) -> None:
        limit = 2 * 1024 * 1024
        overhead = len(b"\x01\x06") + 3  # version, tag, 3-byte length
        await s.put("k", b"x" * (limit - 1 - overhead))
        with pytest.raises(StorageLimitError) as info:
            await s.put("kk", b"x" * (limit - 1 - overhead))
        assert str(info.value).startswith(
            "Key and value combined cannot be larger than 2097152 bytes."
        )
        with pytest.raises(StorageLimitError):
            await s.put({"a": 1, "b": "y" * limit})
        assert list(await s.list()) == ["k"]  # the failed multi-put wrote nothing

    run(body)


def test_key_count_limit() -> None:
    async def body(s: DurableObjectStorage) -> None:
        keys = [f"k{i}" for i in range(129)]
        await s.put({k: 1 for k in keys[:128]})
        assert len(await s.get(keys[:128])) == 128
        with pytest.raises(StorageLimitError, match=r"^Maximum number of keys is 128\. 129 keys"):
            await s.get(keys)
        with pytest.raises(StorageLimitError, match="Maximum number of keys is 128"):
            await s.delete(keys)
        with pytest.raises(StorageLimitError, match=r"^Maximum number of key value pairs is 128"):
            await s.put({k: 1 for k in keys})
        assert await s.delete(keys[:128]) == 128

    run(body)


def test_limits_are_configurable() -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(StorageLimitError, match="larger than 4 bytes"):
            await s.put("12345", 1)
        with pytest.raises(StorageLimitError, match="number of keys is 2"):
            await s.get(["a", "b", "c"])

    run(body, limits=StorageLimits(max_key_bytes=4, max_keys_per_call=2))


def test_delete_all_clears_kv_sql_and_alarm() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put({"a": 1, "b": 2})
        s.sql.exec("CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE INDEX pi ON p(id)")
        s.sql.exec("CREATE TABLE c(pid INTEGER REFERENCES p(id)); CREATE VIEW v AS SELECT * FROM p")
        s.sql.exec("CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT)")
        s.sql.exec(
            "INSERT INTO p VALUES (1); INSERT INTO c VALUES (1); INSERT INTO seq DEFAULT VALUES"
        )
        s.sql.exec("CREATE TRIGGER t AFTER INSERT ON p BEGIN DELETE FROM c; END")
        await s.setAlarm(10_000)
        await s.deleteAll()
        assert await s.list() == {}
        assert await s.getAlarm() is None
        # (An emptied sqlite_sequence may stay: SQLite cannot drop it.)
        left = "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite%'"
        assert s.sql.exec(left).toArray() == []
        await s.flush()  # deferred foreign keys are satisfied at commit
        await s.put("after", 1)
        assert await s.list() == {"after": 1}

    run(body)


def test_delete_all_can_keep_the_alarm() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.setAlarm(10_000)
        await s.put("a", 1)
        await s.delete_all()
        assert await s.get_alarm() == 10_000
        assert await s.list() == {}

    run(body, delete_all_deletes_alarm=False)


def test_transaction_commits_and_returns() -> None:
    async def body(s: DurableObjectStorage) -> None:
        async def closure(txn: Any) -> str:
            await txn.put("a", 1)
            assert await txn.get("a") == 1
            await asyncio.sleep(0)  # a real suspension inside the transaction
            await txn.put({"b": 2})
            return "done"

        assert await s.transaction(closure) == "done"
        await s.flush()
        assert await s.list() == {"a": 1, "b": 2}

    run(body)


def test_transaction_exception_rolls_back() -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put("keep", 1)

        async def closure(txn: Any) -> None:
            await txn.put("a", 1)
            await txn.delete("keep")
            s.sql.exec("CREATE TABLE t(a)")
            raise RuntimeError("nope")

        with pytest.raises(RuntimeError, match="nope"):
            await s.transaction(closure)
        await s.flush()
        assert await s.list() == {"keep": 1}
        assert s.sql.exec("SELECT name FROM sqlite_master WHERE name = 't'").toArray() == []

    run(body)


def test_transaction_rollback_method() -> None:
    async def body(s: DurableObjectStorage) -> None:
        holder: list[Any] = []

        async def closure(txn: Any) -> str:
            holder.append(txn)
            await txn.put("tx", 1)
            txn.rollback()
            with pytest.raises(TransactionClosedError, match=r"Cannot get\(\) on rolled back"):
                await txn.get("tx")
            return "rolled back"

        assert await s.transaction(closure) == "rolled back"
        assert await s.get("tx") is None
        with pytest.raises(TransactionClosedError):
            await holder[0].rollback()

        async def finished(txn: Any) -> None:
            holder.append(txn)

        await s.transaction(finished)
        with pytest.raises(TransactionClosedError, match="already completed"):
            await holder[1].put("late", 1)

    run(body)


def test_nested_transactions() -> None:
    async def body(s: DurableObjectStorage) -> None:
        async def inner(txn: Any) -> None:
            await txn.put("inner", 1)
            raise KeyError("inner fails")

        async def outer(txn: Any) -> None:
            await txn.put("outer", 1)
            with pytest.raises(KeyError):
                await s.transaction(inner)
            s.transactionSync(lambda: s.kv.put("sync", 1))

        await s.transaction(outer)
        await s.flush()
        assert await s.list() == {"outer": 1, "sync": 1}

    run(body)


def test_transaction_sync() -> None:
    async def body(s: DurableObjectStorage) -> None:
        assert s.transactionSync(lambda: 42) == 42

        def failing() -> None:
            s.kv.put("a", 1)
            s.sql.exec("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            s.transactionSync(failing)
        assert s.kv.get("a") is None
        assert s.sql.exec("SELECT count(*) AS n FROM sqlite_master").one() == {"n": 0}

        async def coroutine() -> None:
            s.kv.put("b", 1)

        with pytest.raises(TypeError, match="use transaction"):
            s.transaction_sync(coroutine)  # type: ignore[arg-type]
        assert s.kv.get("b") is None

    run(body)


def test_sync_kv_api() -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.kv.put("b", [1])
        s.kv.put("a", {"x": 1})
        assert s.kv.get("a") == {"x": 1}
        assert list(s.kv.list()) == [("a", {"x": 1}), ("b", [1])]
        assert list(s.kv.list(prefix="b", reverse=True)) == [("b", [1])]
        assert s.kv.delete("a") is True
        assert s.kv.delete("a") is False
        assert await s.get("b") == [1]

    run(body)


def test_alarms() -> None:
    async def body(s: DurableObjectStorage) -> None:
        assert await s.getAlarm() is None
        await s.setAlarm(1_700_000_000_123)
        assert await s.getAlarm() == 1_700_000_000_123
        await s.setAlarm(1234.9)  # truncated, like new Date(1234.9)
        assert await s.getAlarm() == 1234
        when = datetime(2030, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)
        await s.setAlarm(when)
        assert await s.getAlarm() == int(when.timestamp() * 1000)
        naive_local = datetime(2030, 1, 2, 3, 4, 5)
        await s.set_alarm(naive_local)
        assert await s.get_alarm() == int(naive_local.timestamp()) * 1000
        await s.deleteAlarm()
        assert await s.getAlarm() is None
        await s.delete_alarm()  # deleting no alarm is fine
        with pytest.raises(TypeError, match="datetime or milliseconds"):
            await s.setAlarm("soon")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await s.setAlarm(True)
        with pytest.raises(ValueError, match="finite"):
            await s.setAlarm(float("inf"))

    run(body)


def test_alarm_hook_reports_committed_value() -> None:
    seen: list[int | None] = []

    async def body(s: DurableObjectStorage) -> None:
        await s.setAlarm(5_000)
        await s.setAlarm(6_000)  # same batch: one report, with the final value
        assert seen == []  # not before the commit
        await s.flush()
        assert seen == [6_000]
        await s.deleteAlarm()
        await s.flush()
        await s.put("unrelated", 1)
        await s.flush()
        assert seen == [6_000, None]

        async def rolled_back(txn: Any) -> None:
            await txn.setAlarm(7_000)
            txn.rollback()

        await s.transaction(rolled_back)
        await s.flush()
        assert seen == [6_000, None, None]  # reports what was committed

    run(body, on_alarm_changed=seen.append)


def test_transaction_closes_the_input_gate() -> None:
    from stateroom.runtime.input_gate import InputGate

    gate = InputGate()

    async def body(s: DurableObjectStorage) -> None:
        depths: list[int] = []

        async def closure(txn: Any) -> None:
            depths.append(gate.depth)
            await asyncio.sleep(0)
            depths.append(gate.depth)

        await s.transaction(closure)
        assert depths == [1, 1]
        assert gate.is_open()

    run(body, input_gate=gate)


@pytest.fixture
def naive_now() -> Iterator[datetime]:
    yield datetime.now() + timedelta(seconds=10)


def test_naive_datetime_is_local_time(naive_now: datetime) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.setAlarm(naive_now)
        got = await s.getAlarm()
        assert got is not None
        assert abs(got / 1000 - naive_now.timestamp()) < 0.001

    run(body)


def test_writes_of_other_events_are_not_rolled_back_with_a_transaction() -> None:
    """An event in flight that writes while another event's transaction() is open waits
    for it, instead of landing inside it and being rolled back with it."""

    async def main() -> None:
        from stateroom.storage.kv import DurableObjectStorage
        from stateroom.storage.sqlite import SqliteBackend

        backend = SqliteBackend(in_memory=True)
        storage = DurableObjectStorage(backend.open("T", "ab" * 32))
        inside = asyncio.Event()

        async def failing_transaction() -> None:
            async def closure(txn: Any) -> None:
                await txn.put("b", 1)
                inside.set()
                await asyncio.sleep(0.05)
                raise RuntimeError("roll back")

            with pytest.raises(RuntimeError):
                await storage.transaction(closure)

        async def other_event() -> None:
            await inside.wait()
            with pytest.raises(Exception, match="transaction\\(\\) is in progress"):
                storage.sql.exec("SELECT 1")  # synchronous: cannot wait, so it refuses
            await storage.put("a", 1)  # waits for the transaction to end

        await asyncio.gather(failing_transaction(), other_event())
        assert await storage.get("a") == 1
        assert await storage.get("b") is None
        storage.close()
        backend.close()

    asyncio.run(main())


def test_calls_take_effect_when_made_awaited_or_not() -> None:
    """As on Cloudflare: a storage call starts when it is made; awaiting only gives the
    result. Nothing nobody awaits is lost, and errors wait for the await."""

    async def body(s: DurableObjectStorage) -> None:
        gate = s._txn._tracker
        assert isinstance(gate, OutputGate)
        s.put("a", 1)  # not awaited
        s.put({"b": 2, "c": 3})
        s.setAlarm(datetime(2030, 1, 1, tzinfo=UTC))
        s.delete("c")
        assert s.commit_pending and gate.pending
        assert await s.get(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert await s.getAlarm() == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
        failed = s.put("k")  # no value: the error waits for the await
        with pytest.raises(TypeError, match="no value"):
            await failed
        pending = s.get("a")
        assert await pending == 1 and await pending == 1  # awaitable more than once
        assert await asyncio.gather(s.get("a"), s.get("b")) == [1, 2]
        await s.sync()
        assert not s.commit_pending

        async def closure(txn: DurableObjectTransaction) -> None:
            txn.put("t", "in a transaction")  # not awaited either

        await s.transaction(closure)
        assert await s.get("t") == "in a transaction"

    run(body, write_tracker=OutputGate())


def test_delete_all_inside_a_transaction_is_refused() -> None:
    """As on Cloudflare: "Cannot call deleteAll() within a transaction", from the txn (at
    the call) and from ctx.storage inside the closure; the transaction's writes roll back."""

    async def body(s: DurableObjectStorage) -> None:
        await s.put("kept", 1)

        async def through_txn(txn: DurableObjectTransaction) -> None:
            with pytest.raises(DeleteAllInTransactionError, match="within a transaction"):
                txn.deleteAll()
            assert await txn.get("kept") == 1

        await s.transaction(through_txn)

        async def through_storage(txn: DurableObjectTransaction) -> None:
            await txn.put("kept", 2)
            await s.deleteAll()

        with pytest.raises(DeleteAllInTransactionError, match="within a transaction"):
            await s.transaction(through_storage)

        with pytest.raises(DeleteAllInTransactionError):
            s.transactionSync(lambda: s._delete_all_call(None, {}))
        assert await s.get("kept") == 1  # nothing deleted, the 2 rolled back

    run(body)
