"""Start a coroutine at once, and only make a task if it really suspends.

Most WebSocket handlers finish without awaiting anything that suspends (an echo,
a broadcast, a storage read served from SQLite). Running them to their first
suspension inline saves a task, a loop turn and a context switch per message;
the rest of a handler that does suspend continues in an ordinary task, so
``asyncio.current_task()``, timeouts and cancellation behave as usual there.
This is what ``asyncio.eager_task_factory`` does on Python 3.12+.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, Final

# The type of an ``async def`` function's coroutine: checked by type, not by hasattr().
COROUTINE: Final = types.CoroutineType
# Called directly for an ``async def`` coroutine: no method look-up on each call.
_CORO_AWAIT: Final[Any] = types.CoroutineType.__await__


def start_eagerly(
    coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop
) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it first suspends; ``None`` if it finished (exceptions propagate)."""
    # A for loop over the awaitable, not coro.send(None): a coroutine that finishes
    # ends it without a StopIteration raised and caught (~0.15 us). mypyc compiles it
    # to PyIter_Next, where next() with a sentinel was a look-up in builtins and a call.
    awaitable = _CORO_AWAIT(coro) if type(coro) is COROUTINE else coro.__await__()
    for yielded in awaitable:
        # The rest goes on through the iterator, which every awaitable (a Future too)
        # has; only coroutines have send() and throw() themselves.
        return loop.create_task(_Resume(awaitable, yielded).run())
    return None


class _Resume:
    """Hands the future a suspended awaitable is waiting on to a real task."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Generator[Any, None, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    async def run(self) -> Any:
        return await self

    def __await__(self) -> Generator[Any, None, Any]:
        coro = self.coro
        yielded = self.yielded
        self.yielded = None
        while True:
            try:
                yield yielded
            except BaseException as exc:  # cancellation and throw() go to the coroutine
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value
