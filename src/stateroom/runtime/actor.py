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
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from stateroom.runtime.alarms import AlarmScheduler
from stateroom.runtime.channel import LocalChannel
from stateroom.runtime.context import current_host
from stateroom.runtime.eager import start_eagerly
from stateroom.runtime.gates import (
    BlockConcurrencyTimeoutError,
    ExceededCpuError,
    ObjectResetError,
    OutputGate,
)
from stateroom.runtime.hibernation import HibernationManager, SocketHooks
from stateroom.runtime.input_gate import InputGate
from stateroom.runtime.metrics import TimedWriteTracker
from stateroom.runtime.options import RuntimeOptions
from stateroom.runtime.tasks import install as install_task_counting
from stateroom.runtime.trace import describe, log_uncaught
from stateroom.storage.backend import StorageBackend
from stateroom.storage.kv import DurableObjectStorage

if TYPE_CHECKING:
    from stateroom.api.entrypoints import DurableObject
    from stateroom.api.namespace import DurableObjectId
    from stateroom.api.state import DurableObjectState
    from stateroom.api.websockets import WebSocket

logger = logging.getLogger("stateroom.runtime")

T = TypeVar("T")


class ActorNamespace:
    """All live objects of one Durable Object class, by id."""

    def __init__(
        self,
        binding: str,
        cls: type[DurableObject],
        env: Any,
        secret: bytes,
        options: RuntimeOptions,
        backend: StorageBackend,
        storage_name: str,
        sql_enabled: bool = True,
        *,
        make_state: Callable[[ActorHost], DurableObjectState],
        make_id: Callable[[str, str | None], DurableObjectId],
        socket_hooks: SocketHooks,
    ) -> None:
        self.binding = binding
        self.cls = cls
        self.env = env
        self.secret = secret
        self.options = options
        self.backend = backend
        self.storage_name = storage_name
        self.sql_enabled = sql_enabled
        # Hooks into the API layer, which the runtime does not import (workerd's pattern):
        # the ``ctx`` an instance is constructed with, and an id from its hex form.
        self.make_state = make_state
        self.make_id = make_id
        self.socket_hooks = socket_hooks
        self.hosts: dict[str, ActorHost] = {}
        self.alarms = AlarmScheduler(self)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to count on
            install_task_counting(asyncio.get_running_loop())

    def persisted_alarms(self) -> list[tuple[str, int, str | None]]:
        """(object id, alarm ms, name) for every stored object of this class with an alarm."""
        backend = self.backend
        kept = backend.stored_alarms(self.storage_name)
        if kept is not None:
            return kept
        found = []
        for hex_id in backend.stored_objects(self.storage_name):
            host = self.hosts.get(hex_id)
            if host is not None and host.storage is not None:
                when = host.storage.store.get_alarm()
                name = host.id.name
            else:
                try:
                    store = backend.open(self.storage_name, hex_id)
                except Exception:
                    logger.exception("cannot read the alarm of %s/%s", self.storage_name, hex_id)
                    continue
                try:
                    when = store.get_alarm()
                    name = store.get_name() if when is not None else None
                finally:
                    store.close()
            if when is not None:
                found.append((hex_id, when, name))
        return found

    def channel(self, object_id: DurableObjectId) -> LocalChannel:
        """The entry points of one object of this class (what a stub holds)."""
        return LocalChannel(self, object_id)

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
        self.alarms.cancel_all()
        for host in list(self.hosts.values()):
            host.evict()


class ActorHost:
    """One Durable Object: its instance, the order of its events, its lifetime."""

    def __init__(self, namespace: ActorNamespace, object_id: DurableObjectId) -> None:
        self.namespace = namespace
        self.id = object_id
        self.instance: DurableObject | None = None
        self.ctx: DurableObjectState | None = None
        self.loop = asyncio.get_running_loop()
        # The loop's clock, bound once: read on every message to a hibernatable socket.
        self.clock: Callable[[], float] = self.loop.time
        # Every event passes the input gate: at once, or in its turn.
        self.gate = InputGate(on_fatal=self._block_failed)
        self._busy = 0
        # Sockets accepted with accept(): they pin the object in memory.
        self.listener_sockets: dict[WebSocket, None] = {}
        self._last_active = self.clock()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.evicted = False
        # The hibernation API's sockets, tags, attachments, auto-response and event
        # timeout: they outlive the instance, so they live here, in its manager.
        self.hibernation = HibernationManager(self, namespace.socket_hooks)
        # Storage is opened on first use and closed when the instance leaves memory.
        self.storage: DurableObjectStorage | None = None
        self.output_gate: OutputGate | None = None
        # The context socket events from the network run in (current_host set), made on
        # the first one: entering it costs less per message than setting and resetting.
        self.socket_context: contextvars.Context | None = None
        # Set by the CPU watchdog (from its thread) when an event of this object held
        # the event loop past the CPU limit: the reason the object is reset.
        self.cpu_exceeded: str | None = None

    # -- activation -------------------------------------------------------

    def activate(self) -> DurableObject:
        """Construct the instance if it is not live (the constructor runs again after eviction)."""
        instance = self.instance
        if instance is not None:
            return instance
        if self.evicted:
            raise ObjectResetError(
                f"Durable Object {self.id} was reset while this event ran; its work is discarded"
            )
        token = current_host.set(self)
        started = self.clock()
        try:
            self.ctx = self.namespace.make_state(self)
            instance = self.namespace.cls(self.ctx, self.namespace.env)
        finally:
            current_host.reset(token)
        self.instance = instance
        self.namespace.options.metrics.activated(
            self.namespace.binding,
            self.id.hex,
            self.id.name,
            self.clock() - started,
            bool(self.hibernation.sockets),
        )
        self._became_idle()  # a wake by a socket event must be able to end in hibernation
        return instance

    def preparing(self) -> Awaitable[None] | None:
        """What must finish before a new instance is constructed: its data comes from
        elsewhere first (a remote log fences the previous activation and restores)."""
        ns = self.namespace
        return ns.backend.prepare(ns.storage_name, self.id.hex)

    def open_storage(self) -> DurableObjectStorage:
        storage = self.storage
        if storage is None:
            if self.evicted or self.ctx is None:
                # Work of an instance that was reset, evicted or hibernated: the storage
                # now belongs to whatever instance comes next.
                raise ObjectResetError(
                    f"Durable Object {self.id} is no longer live; its storage is closed"
                )
            ns = self.namespace
            store = ns.backend.open(ns.storage_name, self.id.hex)
            gate = self.output_gate = OutputGate(on_broken=self._storage_broken)
            metrics = ns.options.metrics
            storage = self.storage = DurableObjectStorage(
                store,
                # With metrics on, each commit is timed on its way to the gate.
                write_tracker=TimedWriteTracker(gate, metrics) if metrics.enabled else gate,
                input_gate=self.gate,
                on_alarm_changed=lambda when: ns.alarms.update(self.id, when),
            )
            name = self.id.name
            if name is not None:
                storage.remember_name(name)
            if not ns.sql_enabled:
                storage.sql = _SqlDisabled(ns.cls.__name__)  # type: ignore[assignment]
        return storage

    def _storage_broken(self, exc: BaseException) -> None:
        if isinstance(exc, ObjectResetError):
            return  # reset() broke the gate itself: the reset is already under way
        self.reset(f"a storage write failed, its outputs were discarded: {exc}")

    def _close_storage(self, commit: bool) -> None:
        storage = self.storage
        if storage is not None:
            self.storage = None
            self.output_gate = None
            try:
                storage.close(commit=commit)
            except Exception:
                logger.exception("closing the storage of %s failed", self.id)

    # -- event delivery -------------------------------------------------------

    async def run(self, fn: Callable[[DurableObject], Awaitable[T]]) -> T:
        """Run one event that produces a result (a request or an RPC call) in its turn."""
        input_gate = self.gate
        if input_gate.blocked:
            await input_gate.wait_turn()
        if self.evicted:  # reset while this event waited: the id has a new host
            return await self.namespace.host(self.id).run(fn)
        self._busy += 1
        self._cancel_idle()
        token = current_host.set(self)
        try:
            if self.instance is None:
                preparing = self.preparing()
                if preparing is not None:
                    await preparing
            instance = self.activate()
            if input_gate.depth:
                # The constructor started blockConcurrencyWhile(): this event waits too.
                await input_gate.wait_turn()
                instance = self.activate()
            result = await fn(instance)
            if self.cpu_exceeded is not None:
                raise self._exceeded_cpu()
            gate = self.output_gate
            if gate is not None and gate.pending:
                # The result is an output: it leaves only once earlier writes are durable.
                await gate.wait_released()
            return result
        finally:
            current_host.reset(token)
            self._busy -= 1
            self._became_idle()

    def _exceeded_cpu(self) -> ExceededCpuError:
        """The event that just ended ran past the CPU limit: reset, and tell its caller."""
        reason = self.cpu_exceeded or "exceeded its CPU time limit"
        self.cpu_exceeded = None
        self.namespace.options.metrics.cpu_limit_resets += 1
        self.reset(reason)
        return ExceededCpuError(reason)

    def deliver_socket_event(self, ws: WebSocket, kind: str, args: tuple[Any, ...]) -> None:
        """Deliver an event of a socket accepted with ``accept()`` now, or queue it.

        (Sockets accepted with ``acceptWebSocket()`` are the hibernation manager's.)
        """
        if self.gate.blocked:
            self.gate.enqueue(lambda: self._socket_event(ws, kind, args))
            return
        self._socket_event(ws, kind, args)

    def _socket_event(self, ws: WebSocket, kind: str, args: tuple[Any, ...]) -> None:
        if self.evicted:
            return  # its listeners belonged to an instance that is gone
        token = current_host.set(self)
        try:
            pending = self.namespace.socket_hooks.dispatch(ws, kind, args)
            if pending is not None:
                self.start(pending)
        except Exception:
            log_uncaught(logger, self, f"a WebSocket {kind} handler")
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

    def hold(self) -> None:
        """Keep the object in memory until ``release()`` (a body it still streams)."""
        self._busy += 1
        self._cancel_idle()

    def release(self) -> None:
        self._busy -= 1
        self._became_idle()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._busy += 1
        self._cancel_idle()
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self._busy -= 1
        if not task.cancelled() and task.exception() is not None:
            info = describe(self)
            logger.error(
                "Uncaught exception in a task of %s",
                info,
                exc_info=task.exception(),
                extra=info.fields(),
            )
        self._became_idle()

    def _block_failed(self, exc: BaseException) -> None:
        """A ``blockConcurrencyWhile()`` callback raised or ran too long: reset, as Cloudflare."""
        if isinstance(exc, BlockConcurrencyTimeoutError):
            self.reset(str(exc))
        else:
            self.reset(f"blockConcurrencyWhile() callback raised {exc!r}")

    # -- lifetime --------------------------------------------------------------

    def socket_opened(self, ws: WebSocket) -> None:
        self.listener_sockets[ws] = None
        self._cancel_idle()

    def socket_closed(self, ws: WebSocket) -> None:
        self.listener_sockets.pop(ws, None)
        self._became_idle()

    @property
    def open_sockets(self) -> int:
        return len(self.listener_sockets)

    def hibernatable_closed(self) -> None:
        """A hibernatable socket's connection is gone (its manager has let it go)."""
        if self.instance is None and not self.hibernation.sockets and not self._busy:
            self.evict()  # hibernated and now without sockets: nothing left to keep
        else:
            self._became_idle()

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _timeout(self) -> float:
        options = self.namespace.options
        return options.hibernation_timeout if self.hibernation.sockets else options.idle_timeout

    def _became_idle(self) -> None:
        if self._busy or self.listener_sockets or self.evicted or self.instance is None:
            return
        self._last_active = self.clock()
        if self._idle_handle is None:
            self._idle_handle = self.loop.call_later(self._timeout(), self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self._busy or self.listener_sockets or self.gate.queue or self.instance is None:
            return
        if self.storage is not None and self.storage.commit_pending:
            self._idle_handle = self.loop.call_later(0.01, self._idle_check)
            return
        remaining = self._last_active + self._timeout() - self.loop.time()
        if remaining > 0.001:
            self._idle_handle = self.loop.call_later(remaining, self._idle_check)
            return
        sockets = len(self.hibernation.sockets)
        if sockets:
            logger.debug("Hibernating object %s (%d sockets)", self.id, sockets)
            self.hibernate()
        else:
            logger.debug("Evicting idle object %s", self.id)
            self.evict()

    def hibernate(self) -> None:
        """Drop the instance but keep the host, its sockets and their attachments."""
        self._cancel_idle()
        self.instance = None
        self.ctx = None
        self._close_storage(commit=True)
        self.namespace.options.metrics.left_memory(True)

    def reset(self, reason: str) -> None:
        """Throw the instance away after a fatal error; the next event starts afresh.

        Outputs still held by the output gate are discarded, and sockets accepted with
        accept() are closed (1011): their listeners belonged to the dead instance.
        Hibernatable sockets stay open, as on Cloudflare.
        """
        logger.error("Resetting Durable Object %s: %s", self.id, reason)
        self.namespace.options.metrics.resets += 1
        gate = self.output_gate
        if gate is not None:
            gate.break_(ObjectResetError(reason))
        self._close_storage(commit=False)
        for ws in list(self.listener_sockets):
            with contextlib.suppress(Exception):
                ws.close(1011, "Durable Object reset")
        self.listener_sockets.clear()
        ns = self.namespace
        ns.backend.release(ns.storage_name, self.id.hex)  # a new activation comes next
        if self.hibernation.sockets:
            self.hibernate()  # its hibernatable sockets stay open, as on Cloudflare
        else:
            self.evict()

    def evict(self) -> None:
        """Drop the instance from memory; the next event constructs a new one."""
        self._cancel_idle()
        if not self.evicted:
            self.namespace.options.metrics.left_memory(False)
        self.evicted = True
        self.instance = None
        self.ctx = None
        self._close_storage(commit=True)
        ns = self.namespace
        ns.backend.release(ns.storage_name, self.id.hex)
        ns.evict(self)


class _SqlDisabled:
    """``ctx.storage.sql`` of a class created with ``new_classes`` (key-value storage only)."""

    def __init__(self, class_name: str) -> None:
        self._class_name = class_name

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            f"SQL is not enabled for {self._class_name}: it was created with `new_classes`. "
            "Create SQLite-backed classes with `new_sqlite_classes` in [[migrations]]."
        )
