"""How stubs and the alarm scheduler reach an object: typed entry points, by id.

workerd's ``ActorChannel`` (``io-channels.h``): a stub holds a channel to an object
id, never the object. What goes through it is what a process boundary can carry: a
request, a method name and its arguments, an alarm time. The in-process channel
here finds (or creates) the object's host and runs the event in its turn; a
front/shard split puts a remote channel with the same methods in its place, and
neither stubs nor the scheduler change.

What each entry point does on the instance (call ``fetch``, look an RPC method up,
run ``alarm``) lives here too, on the callee's side: it runs where the object lives.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stateroom.runtime.context import current_host
from stateroom.runtime.trace import note_object, tag_exception

if TYPE_CHECKING:
    from stateroom.api.entrypoints import DurableObject
    from stateroom.api.namespace import DurableObjectId
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response
    from stateroom.runtime.actor import ActorHost, ActorNamespace
    from stateroom.storage.kv import DurableObjectStorage

logger = logging.getLogger("stateroom.runtime")


class ObjectChannel(Protocol):
    """The entry points of one object (workerd's ``ActorChannel``)."""

    async def fetch(self, request: Request) -> Response:
        """The object's ``fetch(request)``; what it returns (a ``Response``, one hopes)."""
        ...

    async def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """An RPC call: the object's public method ``method``, awaited if it is async."""
        ...

    async def get(self, name: str) -> Any:
        """A property read through a stub (``await stub.name``): the attribute's value."""
        ...

    async def alarm(self, when_ms: int, retry: int) -> None:
        """The alarm set for ``when_ms`` is due: run ``alarm()``; it raises if that did."""
        ...

    def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A response body the object streams, as its caller reads it (``fetch``'s result)."""
        ...

    async def clear_alarm(self, when_ms: int) -> None:
        """Delete the alarm if it is still the one set for ``when_ms`` (retries gave up)."""
        ...


class LocalChannel:
    """An object in this process: each call is an event its host runs in its turn."""

    __slots__ = ("namespace", "object_id")

    def __init__(self, namespace: ActorNamespace, object_id: DurableObjectId) -> None:
        self.namespace = namespace
        self.object_id = object_id

    async def fetch(self, request: Request) -> Response:
        host = self.namespace.host(self.object_id)
        note_object(host)
        try:
            return await host.run(functools.partial(_fetch, request))
        except Exception as exc:
            tag_exception(exc, host)
            raise

    async def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        host = self.namespace.host(self.object_id)
        note_object(host)
        try:
            return await host.run(functools.partial(_call, method, args, kwargs))
        except Exception as exc:
            tag_exception(exc, host)
            raise

    async def get(self, name: str) -> Any:
        host = self.namespace.host(self.object_id)
        return await host.run(functools.partial(_get, name))

    async def alarm(self, when_ms: int, retry: int) -> None:
        host = self.namespace.host(self.object_id)
        try:
            await host.run(functools.partial(_alarm, when_ms, retry))
        except Exception as exc:
            tag_exception(exc, host)
            raise

    async def clear_alarm(self, when_ms: int) -> None:
        host = self.namespace.host(self.object_id)
        await host.run(functools.partial(_clear_alarm, when_ms))

    def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return HostedStream(self.namespace.host(self.object_id), chunks)


class HostedStream:
    """A body an object streams (an ``async def`` generator in its ``fetch``), read from
    outside it, chunk by chunk.

    Each chunk is produced in the object's context (its storage and ``ctx`` work there),
    and leaves only once the writes made before it are durable (the output gate), as
    a response does. The object stays in memory until the stream ends or is closed.
    """

    __slots__ = ("_context", "_done", "_host", "_source")

    def __init__(self, host: ActorHost, source: AsyncIterator[bytes]) -> None:
        self._host = host
        self._source = source
        context = contextvars.copy_context()
        context.run(current_host.set, host)
        self._context = context
        self._done = False
        host.hold()

    def __aiter__(self) -> HostedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        task = asyncio.get_running_loop().create_task(
            _next_chunk(self._source), context=self._context
        )
        try:
            chunk = await task
        except BaseException:
            self._finish()
            raise
        if chunk is None:
            self._finish()
            raise StopAsyncIteration
        gate = self._host.output_gate
        if gate is not None and gate.pending:
            await gate.wait_released()
        return chunk

    async def aclose(self) -> None:
        if self._done:
            return
        self._finish()
        closer = getattr(self._source, "aclose", None)
        if closer is not None:
            await asyncio.get_running_loop().create_task(closer(), context=self._context)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._host.release()


async def _next_chunk(source: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return None


# -- what the entry points do on the instance ---------------------------------------------


async def _fetch(request: Request, obj: DurableObject) -> Any:
    return await obj.fetch(request)


async def _call(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], obj: DurableObject
) -> Any:
    target = getattr(obj, method, None)
    if method.startswith("_") or not callable(target):
        raise TypeError(f'The RPC receiver does not implement the method "{method}".')
    result = target(*args, **kwargs)
    if hasattr(result, "__await__"):
        result = await result
    return result


async def _get(name: str, obj: DurableObject) -> Any:
    if name.startswith("_"):
        raise TypeError(f'The RPC receiver does not expose "{name}".')
    return getattr(obj, name, None)  # a missing property reads as undefined does: None


@dataclass(frozen=True)
class AlarmInvocationInfo:
    """What ``alarm(alarmInfo)`` receives."""

    retryCount: int
    isRetry: bool

    @property
    def retry_count(self) -> int:
        return self.retryCount

    @property
    def is_retry(self) -> bool:
        return self.isRetry


async def _alarm(when_ms: int, retry: int, obj: DurableObject) -> None:
    storage = _live_storage()
    if await storage.getAlarm() != when_ms:
        return  # deleted or moved since this timer was set
    handler = getattr(obj, "alarm", None)
    if handler is None:
        logger.warning(
            "%s has an alarm but defines no alarm() handler; alarm deleted",
            type(obj).__name__,
        )
    else:
        info = AlarmInvocationInfo(retryCount=retry, isRetry=retry > 0)
        wants_info = bool(inspect.signature(handler).parameters)
        storage.alarm_running = True
        try:
            result: Any = handler(info) if wants_info else handler()
            if inspect.isawaitable(result):
                await result
        finally:
            storage.alarm_running = False
    if await storage.getAlarm() == when_ms:
        await storage.deleteAlarm()


async def _clear_alarm(when_ms: int, obj: DurableObject) -> None:
    storage = _live_storage()
    if await storage.getAlarm() == when_ms:
        await storage.deleteAlarm()


def _live_storage() -> DurableObjectStorage:
    """Storage of the object whose event is running (its host may differ from the one the
    alarm started on, if that one was reset meanwhile)."""
    host = current_host.get()
    assert host is not None
    return host.open_storage()
