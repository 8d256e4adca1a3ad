"""Input and output gates, alone and wired to storage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from stateroom.runtime.gates import (
    BlockConcurrencyTimeoutError,
    ObjectResetError,
    OutputGate,
    OutputGateBrokenError,
)
from stateroom.runtime.input_gate import InputGate
from stateroom.storage import DurableObjectStorage, SqliteBackend, StorageBrokenError
from test_storage_coalesce import RecordingStore

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


# -- input gate -----------------------------------------------------------------
# The gate ActorHost runs (stateroom.runtime.input_gate), driven as ActorHost drives it.


class Runtime:
    """A minimal runtime: each event passes the gate as ActorHost.run() does, logging starts."""

    def __init__(self, gate: InputGate) -> None:
        self.gate = gate
        self.log: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    def deliver(self, name: str, handler: Callable[[], Awaitable[None]]) -> None:
        async def event() -> None:
            if self.gate.blocked:
                await self.gate.wait_turn()
            # The property under test: no event starts inside a critical section.
            self.log.append(f"start {name}" + (" WHILE CLOSED" if self.gate.depth else ""))
            await handler()

        self.tasks.append(asyncio.ensure_future(event()))

    async def drain(self) -> None:
        await asyncio.gather(*self.tasks)


def new_gate(fatal: list[BaseException] | None = None) -> InputGate:
    return InputGate(on_fatal=None if fatal is None else fatal.append)


def test_events_do_not_interleave_with_a_closed_gate() -> None:
    async def main() -> None:
        gate = new_gate()
        rt = Runtime(gate)
        storage_done = asyncio.Event()
        entered = asyncio.Event()

        async def a() -> None:
            async with gate.closed():  # e.g. a storage transaction in flight
                rt.log.append("a: critical section")
                entered.set()
                await storage_done.wait()  # real suspension: the loop runs other tasks
                rt.log.append("a: critical section ends")
            rt.log.append("a: after")

        async def other() -> None:
            rt.log.append("other runs")

        rt.deliver("a", a)
        await entered.wait()
        rt.deliver("b", other)
        rt.deliver("c", other)
        for _ in range(5):
            await asyncio.sleep(0)  # give b and c every chance to sneak in
        assert rt.log == ["start a", "a: critical section"]
        storage_done.set()
        await rt.drain()
        assert rt.log == [
            "start a",
            "a: critical section",
            "a: critical section ends",
            "a: after",
            "start b",
            "other runs",
            "start c",
            "other runs",
        ]

    run(main())


def test_waiters_keep_their_order_when_an_event_recloses_the_gate() -> None:
    async def main() -> None:
        gate = new_gate()
        rt = Runtime(gate)
        gate.close()

        def critical(name: str) -> Callable[[], Awaitable[None]]:
            async def handler() -> None:
                async with gate.closed():  # closes again as soon as it starts
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                    rt.log.append(f"{name} done")

            return handler

        for name in "wxyz":
            rt.deliver(name, critical(name))
        await asyncio.sleep(0)
        gate.reopen()
        await rt.drain()
        assert rt.log == [
            "start w", "w done", "start x", "x done", "start y", "y done", "start z", "z done"
        ]  # fmt: skip

    run(main())


def test_queued_callbacks_and_waiting_events_keep_one_order() -> None:
    """WebSocket events (callbacks) and requests (awaited turns) share one queue."""

    async def main() -> None:
        gate = new_gate()
        rt = Runtime(gate)
        gate.close()
        gate.enqueue(lambda: rt.log.append("message 1"))
        rt.deliver("request", lambda: asyncio.sleep(0))
        await asyncio.sleep(0)  # the request is now waiting for its turn
        gate.enqueue(lambda: rt.log.append("message 2"))
        assert gate.blocked and rt.log == []
        gate.reopen()
        await rt.drain()
        await asyncio.sleep(0)
        assert rt.log == ["message 1", "start request", "message 2"]
        assert gate.is_open()

    run(main())


def test_gate_counts_nested_sections() -> None:
    async def main() -> None:
        gate = new_gate()
        assert gate.is_open()
        with gate.closed():
            with gate.closed():
                assert gate.depth == 2
            assert not gate.is_open()
        assert gate.is_open()
        with pytest.raises(RuntimeError, match="without a matching close"):
            gate.reopen()

    run(main())


def test_cancelled_waiter_passes_its_turn_on() -> None:
    async def main() -> None:
        gate = new_gate()
        gate.close()
        first = asyncio.ensure_future(gate.wait_turn())
        second = asyncio.ensure_future(gate.wait_turn())
        await asyncio.sleep(0)
        first.cancel()
        gate.reopen()
        await second  # does not hang behind the cancelled one
        await asyncio.sleep(0)  # the hand-off ends once it has run
        assert gate.is_open()

    run(main())


def test_block_concurrency_while() -> None:
    async def main() -> None:
        fatal: list[BaseException] = []
        gate = new_gate(fatal)

        async def init() -> str:
            assert not gate.is_open()
            await asyncio.sleep(0)
            return "ready"

        blocked = gate.block_concurrency_while(init)
        assert gate.blocked  # closed at once, before the callback first runs
        assert await blocked == "ready"
        assert gate.is_open() and fatal == []

    run(main())


def test_block_concurrency_while_timeout_resets_the_object() -> None:
    async def main() -> None:
        fatal: list[BaseException] = []
        gate = new_gate(fatal)
        never = asyncio.Event()
        cancelled = asyncio.Event()

        async def stuck() -> None:
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(BlockConcurrencyTimeoutError, match=r"within 0\.05 s") as info:
            await gate.block_concurrency_while(stuck, timeout=0.05)
        assert isinstance(info.value, ObjectResetError)
        assert cancelled.is_set()
        assert fatal == [info.value]  # the owner resets the object
        assert gate.is_open()  # what waited goes on, to the next instance

    run(main())


def test_block_concurrency_while_exception_resets_the_object() -> None:
    async def main() -> None:
        fatal: list[BaseException] = []
        gate = new_gate(fatal)

        async def failing() -> None:
            raise TimeoutError("the callback's own timeout")

        with pytest.raises(TimeoutError) as info:
            await gate.block_concurrency_while(failing)
        assert not isinstance(info.value, BlockConcurrencyTimeoutError)
        assert fatal == [info.value]
        assert gate.is_open()

    run(main())


# -- output gate -------------------------------------------------------------------


def test_output_gate_hot_path_releases_at_once() -> None:
    gate = OutputGate()
    out: list[str] = []
    gate.hold(lambda: out.append("a"))
    assert out == ["a"]
    assert not gate.pending and gate.held == 0


def test_outputs_wait_for_earlier_writes_only_and_keep_order() -> None:
    gate = OutputGate()
    out: list[str] = []
    w1 = gate.begin_write()
    gate.hold(lambda: out.append("after w1"))
    w2 = gate.begin_write()
    gate.hold(lambda: out.append("after w2"))
    assert out == []
    gate.write_done(w2)  # w1 still pending: nothing may leave yet
    assert out == []
    gate.write_done(w1)
    assert out == ["after w1", "after w2"]
    w3 = gate.begin_write()
    gate.hold(lambda: out.append("after w3"))
    gate.write_done(w3)
    gate.write_done(w3)  # a duplicate report is harmless
    assert out == ["after w1", "after w2", "after w3"]


def test_later_writes_do_not_delay_earlier_outputs() -> None:
    gate = OutputGate()
    out: list[str] = []
    w1 = gate.begin_write()
    gate.hold(lambda: out.append("x"))
    w2 = gate.begin_write()  # started after x was produced
    gate.write_done(w1)
    assert out == ["x"]
    assert gate.pending
    gate.write_done(w2)


def test_failed_write_discards_held_outputs() -> None:
    broken: list[BaseException] = []
    gate = OutputGate(on_broken=broken.append)
    out: list[str] = []
    w1 = gate.begin_write()
    gate.hold(lambda: out.append("a"), lambda: out.append("discard a"))
    gate.hold(lambda: out.append("b"))
    error = OSError("disk full")
    gate.write_failed(w1, error)
    assert out == ["discard a"]
    assert broken == [error]
    gate.hold(lambda: out.append("c"), lambda: out.append("discard c"))
    assert out == ["discard a", "discard c"]  # nothing leaves a broken object
    gate.write_failed(gate.begin_write(), OSError("again"))
    assert broken == [error]  # reported once


def test_wait_released() -> None:
    async def main() -> None:
        gate = OutputGate()
        await gate.wait_released()  # nothing pending
        token = gate.begin_write()
        waiter = asyncio.ensure_future(gate.wait_released())
        await asyncio.sleep(0)
        assert not waiter.done()
        gate.write_done(token)
        await waiter
        gate.begin_write()
        waiter = asyncio.ensure_future(gate.wait_released())
        await asyncio.sleep(0)
        gate.break_(OSError("lost"))
        with pytest.raises(OutputGateBrokenError):
            await waiter

    run(main())


def test_a_failing_release_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    gate = OutputGate()
    out: list[str] = []
    token = gate.begin_write()

    def bad() -> None:
        raise RuntimeError("socket gone")

    gate.hold(bad)
    gate.hold(lambda: out.append("next"))
    with caplog.at_level(logging.ERROR):
        gate.write_done(token)
    assert out == ["next"]
    assert "releasing a held output failed" in caplog.text


# -- gates wired to storage ----------------------------------------------------------


def storage_with_gate(
    body: Callable[[DurableObjectStorage, RecordingStore, OutputGate, list[str]], Awaitable[Any]],
) -> None:
    backend = SqliteBackend(in_memory=True)
    log: list[str] = []
    broken: list[BaseException] = []
    gate = OutputGate(on_broken=lambda exc: log.append("gate broken"))
    store = RecordingStore(backend.open("Test", "9a"), log)

    async def main() -> None:
        storage = DurableObjectStorage(store, write_tracker=gate, on_broken=broken.append)
        await body(storage, store, gate, log)
        storage.close(commit=storage.broken is None)

    asyncio.run(main())
    backend.close()


def test_output_is_not_released_before_the_commit_completes() -> None:
    async def body(
        s: DurableObjectStorage, store: RecordingStore, gate: OutputGate, log: list[str]
    ) -> None:
        gate.hold(lambda: log.append("response 0"))  # before any write: leaves at once
        await s.put("a", 1)
        gate.hold(lambda: log.append("response 1"))
        s.sql.exec("CREATE TABLE t(x)")
        gate.hold(lambda: log.append("ws message"))
        assert log == ["response 0", "begin", "put a"]  # held, not sent
        await gate.wait_released()
        assert log == ["response 0", "begin", "put a", "commit", "response 1", "ws message"]

    storage_with_gate(body)


def test_outputs_are_discarded_when_the_commit_fails() -> None:
    async def body(
        s: DurableObjectStorage, store: RecordingStore, gate: OutputGate, log: list[str]
    ) -> None:
        store.fail_commit = OSError(5, "Input/output error")
        await s.put("a", 1)
        gate.hold(lambda: log.append("response"), lambda: log.append("500 instead"))
        with pytest.raises(StorageBrokenError):
            await s.flush()
        assert log == ["begin", "put a", "commit failed", "rollback", "500 instead", "gate broken"]
        gate.hold(lambda: log.append("late response"), lambda: log.append("late dropped"))
        assert log[-1] == "late dropped"

    storage_with_gate(body)
