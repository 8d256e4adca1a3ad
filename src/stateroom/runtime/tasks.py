"""Tasks an object starts keep it in memory: ``asyncio.create_task(work())`` in a handler.

On Cloudflare an object is not evicted while it has work in flight. The runtime already
counts the events it runs and the tasks it starts itself (``waitUntil``, a handler that
suspends); a task user code starts with ``asyncio.create_task`` is counted by the loop's
task factory installed here: a task created while an object's code runs (``current_host``
set in the task's context) holds that object until it ends. A task that never ends keeps
its object in memory for good, as pending work would on Cloudflare.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

from stateroom.runtime.context import current_host

_Coro = Coroutine[Any, Any, Any] | Generator[Any, None, Any]


class _HostTaskFactory:
    """The loop's task factory: the loop's own (or the one it had), then the hold."""

    __slots__ = ("previous",)

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: _Coro,
        *,
        context: contextvars.Context | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        previous = self.previous
        if previous is not None:
            if context is None:
                task = previous(loop, coro, **kwargs)
            else:
                task = previous(loop, coro, context=context, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, context=context, **kwargs)
        host = current_host.get(None) if context is None else context.get(current_host)
        if host is not None:
            host.hold()
            task.add_done_callback(lambda _: host.release())
        return task  # type: ignore[no-any-return]


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Count the tasks objects start on ``loop`` (once per loop)."""
    factory = loop.get_task_factory()
    if not isinstance(factory, _HostTaskFactory):
        loop.set_task_factory(_HostTaskFactory(factory))
