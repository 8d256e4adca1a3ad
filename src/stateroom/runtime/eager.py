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
from collections.abc import Coroutine, Generator
from typing import Any


def start_eagerly(
    coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop
) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it first suspends; ``None`` if it finished (exceptions propagate)."""
    # next() on the awaitable, not coro.send(None): a coroutine that finishes then
    # ends the iteration without raising and catching a StopIteration (~0.15 us).
    yielded = next(coro.__await__(), _FINISHED)
    if yielded is _FINISHED:
        return None
    return loop.create_task(_Resume(coro, yielded).run())


_FINISHED: Any = object()  # not None: ``await asyncio.sleep(0)`` suspends by yielding None


class _Resume:
    """Hands the future a suspended coroutine is waiting on to a real task."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
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
