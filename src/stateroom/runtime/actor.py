"""Actor hosts: exactly one live instance per object id, one event at a time.

An ``ActorHost`` owns one Durable Object: it constructs the instance on
activation, delivers events (requests, RPC calls, WebSocket events) in arrival
order, holds them while the input gate is closed, and evicts the instance after
it has been idle. An ``ActorNamespace`` owns the hosts of one class.

The hot path (a WebSocket message for an object whose gate is open) is a
direct call: no task, no queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from stateroom.runtime import hibernation
from stateroom.runtime.context import current_host
from stateroom.runtime.eager import start_eagerly

if TYPE_CHECKING:
    from stateroom.api.entrypoints import DurableObject
    from stateroom.api.namespace import DurableObjectId
    from stateroom.api.state import DurableObjectState
    from stateroom.api.websockets import WebSocket

logger = logging.getLogger("stateroom.runtime")

T = TypeVar("T")


@dataclass
class RuntimeOptions:
    """Timeouts of the object runtime; tests shorten them."""

    # Cloudflare evicts an idle object after about 10 s without events.
    idle_timeout: float = 10.0
    # blockConcurrencyWhile() callbacks that run longer reset the object.
    block_timeout: float = 30.0
    # An object whose only ties are hibernatable WebSockets leaves memory after this.
    hibernation_timeout: float = 10.0


class ActorNamespace:
    """All live objects of one Durable Object class, by id."""

    def __init__(
        self,
        binding: str,
        cls: type[DurableObject],
        env: Any,
        secret: bytes,
        options: RuntimeOptions,
    ) -> None:
        self.binding = binding
        self.cls = cls
        self.env = env
        self.secret = secret
        self.options = options
        self.hosts: dict[str, ActorHost] = {}

    def host(self, object_id: DurableObjectId) -> ActorHost:
        key = object_id.hex
        host = self.hosts.get(key)
        if host is None:
            host = self.hosts[key] = ActorHost(self, object_id)
        return host

    def evict(self, host: ActorHost) -> None:
        if self.hosts.get(host.id.hex) is host:
            del self.hosts[host.id.hex]

    async def shutdown(self) -> None:
        for host in list(self.hosts.values()):
            host.evict()


class _Turn:
    """A queued request or RPC call, woken when its turn comes."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def __call__(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class ActorHost:
    """One Durable Object: its instance, the order of its events, its lifetime."""

    def __init__(self, namespace: ActorNamespace, object_id: DurableObjectId) -> None:
        self.namespace = namespace
        self.id = object_id
        self.instance: DurableObject | None = None
        self.ctx: DurableObjectState | None = None
        self.loop = asyncio.get_running_loop()
        # Events waiting for their turn: callables run in order by _drain().
        self._queue: deque[Callable[[], None]] = deque()
        self._gate_closed = 0
        self._handoff = False
        # True whenever an arriving event must queue rather than run now.
        self.blocked = False
        self._busy = 0
        self._sockets = 0
        self._last_active = self.loop.time()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.evicted = False
        # Hibernation API state: lives on the host so it survives the instance.
        self.hibernatable: dict[WebSocket, None] = {}
        self.auto_response: tuple[str, str] | None = None
        self.event_timeout_ms: int | None = None

    # -- activation -------------------------------------------------------

    def activate(self) -> DurableObject:
        """Construct the instance if it is not live (the constructor runs again after eviction)."""
        instance = self.instance
        if instance is not None:
            return instance
        from stateroom.api.state import DurableObjectState

        token = current_host.set(self)
        try:
            self.ctx = DurableObjectState(self)
            instance = self.namespace.cls(self.ctx, self.namespace.env)
        finally:
            current_host.reset(token)
        self.instance = instance
        return instance

    # -- event delivery -------------------------------------------------------

    async def run(self, fn: Callable[[DurableObject], Awaitable[T]]) -> T:
        """Run one event that produces a result (a request or an RPC call) in its turn."""
        if self.blocked:
            await self._wait_turn()
        if self.evicted:  # reset while this event waited: the id has a new host
            return await self.namespace.host(self.id).run(fn)
        self._busy += 1
        self._cancel_idle()
        token = current_host.set(self)
        try:
            return await fn(self.activate())
        finally:
            current_host.reset(token)
            self._busy -= 1
            self._became_idle()

    async def _wait_turn(self) -> None:
        turn = _Turn(self.loop.create_future())
        self._queue.append(turn)
        self.blocked = True
        await turn.future
        # Let the queue move on once this event has reached its first suspension.
        self.loop.call_soon(self._resume_after_handoff)

    def deliver_socket_event(self, ws: WebSocket, kind: str, args: tuple[Any, ...]) -> None:
        """Deliver a WebSocket event now, or queue it behind earlier events."""
        auto = self.auto_response
        if auto is not None and kind == "message" and ws._tags is not None and args[0] == auto[0]:
            # Answered by the runtime: the object is neither woken nor told.
            ws._auto_respond(auto[1])
            return
        if self.blocked:
            self._queue.append(lambda: self._socket_event(ws, kind, args))
            return
        self._socket_event(ws, kind, args)

    def _socket_event(self, ws: WebSocket, kind: str, args: tuple[Any, ...]) -> None:
        token = current_host.set(self)
        try:
            if ws._tags is None:
                pending = ws._dispatch(kind, args)
            else:
                pending = hibernation.dispatch(self, ws, kind, args)
            if pending is not None:
                self.start(pending)
        except Exception:
            logger.exception("Uncaught exception in a WebSocket %s handler", kind)
        finally:
            current_host.reset(token)

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a handler's coroutine now; only if it suspends does it become a task."""
        task = start_eagerly(coro, self.loop)
        if task is not None:
            self._track(task)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work an event started (waitUntil) as part of the object, in a task."""
        task = self.loop.create_task(coro)
        self._track(task)
        return task

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._busy += 1
        self._cancel_idle()
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self._busy -= 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("Uncaught exception in a Durable Object task", exc_info=task.exception())
        self._became_idle()

    # -- input gate -----------------------------------------------------------

    def close_gate(self) -> None:
        """Hold every new event until the matching ``open_gate()`` (counted, nestable)."""
        self._gate_closed += 1
        self.blocked = True

    def open_gate(self) -> None:
        self._gate_closed -= 1
        if self._gate_closed == 0:
            self._drain()

    def _resume_after_handoff(self) -> None:
        self._handoff = False
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue and not self._gate_closed and not self._handoff:
            item = queue.popleft()
            if isinstance(item, _Turn):
                # The waiting event resumes on a later loop turn; nothing else may
                # start before it has run up to its first suspension.
                self._handoff = True
            item()
        self.blocked = bool(self._gate_closed or self._handoff or queue)

    # -- lifetime --------------------------------------------------------------

    def socket_opened(self) -> None:
        self._sockets += 1
        self._cancel_idle()

    def socket_closed(self) -> None:
        self._sockets -= 1
        self._became_idle()

    @property
    def open_sockets(self) -> int:
        return self._sockets

    def hibernatable_accepted(self, ws: WebSocket) -> None:
        self.hibernatable[ws] = None

    def hibernatable_closed(self, ws: WebSocket) -> None:
        self.hibernatable.pop(ws, None)
        if self.instance is None and not self.hibernatable and not self._busy:
            self.evict()  # hibernated and now without sockets: nothing left to keep
        else:
            self._became_idle()

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _timeout(self) -> float:
        options = self.namespace.options
        return options.hibernation_timeout if self.hibernatable else options.idle_timeout

    def _became_idle(self) -> None:
        if self._busy or self._sockets or self.evicted or self.instance is None:
            return
        self._last_active = self.loop.time()
        if self._idle_handle is None:
            self._idle_handle = self.loop.call_later(self._timeout(), self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self._busy or self._sockets or self._queue or self.instance is None:
            return
        remaining = self._last_active + self._timeout() - self.loop.time()
        if remaining > 0.001:
            self._idle_handle = self.loop.call_later(remaining, self._idle_check)
            return
        if self.hibernatable:
            logger.debug("Hibernating object %s (%d sockets)", self.id, len(self.hibernatable))
            self.hibernate()
        else:
            logger.debug("Evicting idle object %s", self.id)
            self.evict()

    def hibernate(self) -> None:
        """Drop the instance but keep the host, its sockets and their attachments."""
        self._cancel_idle()
        self.instance = None
        self.ctx = None

    def reset(self, reason: str) -> None:
        """Throw the instance away after a fatal error; the next event starts afresh."""
        logger.error("Resetting Durable Object %s: %s", self.id, reason)
        if self.hibernatable:
            self.hibernate()  # its hibernatable sockets stay open, as on Cloudflare
        else:
            self.evict()

    def evict(self) -> None:
        """Drop the instance from memory; the next event constructs a new one."""
        self._cancel_idle()
        self.evicted = True
        self.instance = None
        self.ctx = None
        self.namespace.evict(self)
