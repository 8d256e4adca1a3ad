"""Base classes user code subclasses: ``WorkerEntrypoint`` and ``DurableObject``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response
    from stateroom.api.state import DurableObjectState

logger = logging.getLogger("stateroom.worker")


class ExecutionContext:
    """The ``ctx`` of a Worker: work that may outlive the response."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:
        """Keep running ``awaitable`` after the response is sent (errors are logged)."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    wait_until = waitUntil

    def passThroughOnException(self) -> None:
        """Accepted for compatibility: a self-hosted Worker has no origin to fall back to."""

    pass_through_on_exception = passThroughOnException

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Uncaught exception in waitUntil()", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for pending waitUntil work (used at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class ScheduledController:
    """What ``scheduled(controller)`` receives: the ``cron`` that fired and its
    ``scheduledTime`` (ms since the epoch, UTC), as on Cloudflare."""

    __slots__ = ("_retry", "cron", "scheduledTime")

    type = "scheduled"

    def __init__(self, cron: str, scheduled_time: float) -> None:
        self.cron = cron
        self.scheduledTime = scheduled_time
        self._retry = True

    @property
    def scheduled_time(self) -> float:
        return self.scheduledTime

    def noRetry(self) -> None:
        """Accepted: a failed run is not retried here in any case (logged instead)."""
        self._retry = False

    no_retry = noRetry

    def __repr__(self) -> str:
        return f"ScheduledController(cron={self.cron!r}, scheduledTime={self.scheduledTime})"


class WorkerEntrypoint:
    """A stateless Worker: subclass it as ``Default`` and define ``async fetch(request)``."""

    def __init__(self, ctx: ExecutionContext, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Request) -> Response:
        raise NotImplementedError("Worker does not define fetch(request).")


class DurableObject:
    """A Durable Object class: one instance per id, with ``self.ctx`` and ``self.env``."""

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Request) -> Response:
        raise NotImplementedError(f"{type(self).__name__} does not define fetch(request).")
