"""``ctx`` of a Durable Object: its id, storage, and control over its events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from stateroom.api.namespace import DurableObjectId
    from stateroom.runtime.actor import ActorHost

T = TypeVar("T")


class DurableObjectState:
    """The state handed to a Durable Object's constructor as ``ctx``."""

    def __init__(self, host: ActorHost) -> None:
        self._host = host
        self.id: DurableObjectId = host.id

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:
        """Keep the object alive until ``awaitable`` finishes."""

        async def run() -> None:
            await awaitable

        self._host.spawn(run())

    wait_until = waitUntil

    async def blockConcurrencyWhile(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Deliver no other event to this object until ``fn()`` completes."""
        host = self._host
        host.close_gate()
        try:
            return await asyncio.wait_for(fn(), host.namespace.options.block_timeout)
        except TimeoutError:
            host.reset("blockConcurrencyWhile() callback did not complete within the time limit")
            raise
        finally:
            host.open_gate()

    block_concurrency_while = blockConcurrencyWhile
