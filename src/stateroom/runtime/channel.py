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

import functools
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stateroom.runtime.context import current_host
from stateroom.runtime.trace import note_object, tag_exception

if TYPE_CHECKING:
    from stateroom.api.entrypoints import DurableObject
    from stateroom.api.namespace import DurableObjectId
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response
    from stateroom.runtime.actor import ActorNamespace
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
