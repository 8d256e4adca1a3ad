"""Unit tests for runtime/eager.py: handlers run inline until they really suspend."""

from __future__ import annotations

import asyncio

import pytest

from stateroom.runtime.eager import start_eagerly


def test_a_handler_that_never_suspends_runs_inline() -> None:
    ran: list[str] = []

    async def handler() -> str:
        ran.append("body")
        return "ignored"

    async def main() -> None:
        assert start_eagerly(handler(), asyncio.get_running_loop()) is None
        assert ran == ["body"]  # before any loop turn

    asyncio.run(main())


def test_exceptions_propagate_to_the_caller() -> None:
    async def handler() -> None:
        raise ValueError("boom")

    async def main() -> None:
        with pytest.raises(ValueError, match="boom"):
            start_eagerly(handler(), asyncio.get_running_loop())

    asyncio.run(main())


def test_a_bare_yield_to_the_loop_continues_in_a_task() -> None:
    # asyncio.sleep(0) suspends by yielding None, which must not read as "finished".
    steps: list[str] = []

    async def handler() -> int:
        steps.append("before")
        await asyncio.sleep(0)
        steps.append("after")
        return 7

    async def main() -> None:
        task = start_eagerly(handler(), asyncio.get_running_loop())
        assert task is not None and steps == ["before"]
        assert await task == 7
        assert steps == ["before", "after"]

    asyncio.run(main())


def test_a_suspended_handler_sees_results_errors_and_cancellation() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[str] = loop.create_future()

        async def waits() -> str:
            return "got " + await gate

        task = start_eagerly(waits(), loop)
        assert task is not None
        gate.set_result("it")
        assert await task == "got it"

        failing: asyncio.Future[str] = loop.create_future()

        async def fails() -> str:
            try:
                return await failing
            except KeyError:
                return "handled"

        task = start_eagerly(fails(), loop)
        assert task is not None
        failing.set_exception(KeyError("k"))
        assert await task == "handled"

        cancelled: list[bool] = []

        async def forever() -> None:
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        task = start_eagerly(forever(), loop)
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancelled == [True]

    asyncio.run(main())


def test_an_awaitable_that_is_not_a_coroutine_continues_in_a_task() -> None:
    # A handler may return any awaitable (here a Future); what resumes it must not
    # assume a coroutine's send() and throw().
    async def main() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        task = start_eagerly(future, loop)  # type: ignore[arg-type]
        assert task is not None
        loop.call_soon(future.set_result, 7)
        assert await task == 7

    asyncio.run(main())


def test_cancelling_a_resumed_awaitable_reaches_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        task = start_eagerly(future, loop)  # type: ignore[arg-type]
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert future.cancelled()

    asyncio.run(main())
