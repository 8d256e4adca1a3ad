"""Tasks an object starts keep it in memory: ``asyncio.create_task(work())`` in a handler.

On Cloudflare an object is not evicted while it has work in flight. The runtime already
counts the events it runs and the tasks it starts itself (``waitUntil``, a handler that
suspends); a task user code starts with ``asyncio.create_task`` is counted by the loop's
task factory installed here: a task created while an object's code runs (``current_host``
set in the task's context) holds that object until it ends. A task that never ends keeps
its object in memory for good, as pending work would on Cloudflare.

Every task the loop makes passes through the factory (one HTTP request makes one or
two), so it is a plain function with as little as possible in it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from stateroom.runtime.context import current_host

_Task = asyncio.Task
_host_here = current_host.get


def _counting(
    loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context | None = None
) -> asyncio.Task[Any]:
    """The task factory: the task, as the loop would make it, held by its object if any."""
    if context is None:
        task = _Task(coro, loop=loop)
        host = _host_here(None)
    else:
        task = _Task(coro, loop=loop, context=context)
        host = context.get(current_host)
    if host is not None:
        _hold(host, task)
    return task


def _hold(host: Any, task: asyncio.Task[Any]) -> None:
    host.hold()
    task.add_done_callback(lambda _: host.release())


def _chained(previous: Callable[..., Any]) -> Callable[..., Any]:
    """The same, over a task factory the loop already had."""

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context | None = None
    ) -> Any:
        if context is None:
            task = previous(loop, coro)
            host = _host_here(None)
        else:
            task = previous(loop, coro, context=context)
            host = context.get(current_host)
        if host is not None:
            _hold(host, task)
        return task

    factory._stateroom_counting = True  # type: ignore[attr-defined]
    return factory


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Count the tasks objects start on ``loop`` (once per loop)."""
    factory = loop.get_task_factory()
    if factory is _counting or getattr(factory, "_stateroom_counting", False):
        return
    loop.set_task_factory(_counting if factory is None else _chained(factory))
