"""Namespace bindings: Durable Object ids, the namespace on ``env``, and stubs.

An id is 32 bytes shown as 64 hex digits: 16 bytes of identity (random for
``newUniqueId``, a keyed hash of the name for ``idFromName``) followed by a
16-byte MAC under the namespace's key, so ``idFromString`` can tell an id of
this namespace from a typo or an id of another class.

``jurisdiction("eu")`` gives a subnamespace, as on Cloudflare: the same name there makes
a different object than in the namespace itself (the jurisdiction is part of the name's
hash). A self-hosted server has one location, so the jurisdiction restricts nothing
else; ``locationHint`` is accepted and ignored for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.api.rpc import DataCloneError, RpcTarget, clone
from stateroom.api.state import DurableObjectAbort
from stateroom.api.streams import ReadableStream
from stateroom.runtime.context import current_host
from stateroom.runtime.gates import ObjectResetError

if TYPE_CHECKING:
    from stateroom.runtime.actor import ActorHost, ActorNamespace
    from stateroom.runtime.channel import ObjectChannel


class DurableObjectId:
    __slots__ = ("hex", "name")

    def __init__(self, hex_id: str, name: str | None = None) -> None:
        self.hex = hex_id
        self.name = name

    def toString(self) -> str:
        return self.hex

    to_string = toString

    def equals(self, other: object) -> bool:
        return isinstance(other, DurableObjectId) and other.hex == self.hex

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    def __hash__(self) -> int:
        return hash(self.hex)

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"DurableObjectId({self.hex!r}, name={self.name!r})"


_NAMED_CACHE = 4096
# Cloudflare's jurisdictions (an unknown one is an error there too).
JURISDICTIONS = frozenset({"eu", "fedramp", "fedramp-high"})


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, b"id:" + body, hashlib.sha256).digest()[:16]


def name_to_id(secret: bytes, name: str, jurisdiction: str | None = None) -> str:
    """The hex id ``idFromName(name)`` gives in the namespace keyed by ``secret``."""
    scope = b"name:" if jurisdiction is None else f"{jurisdiction}:".encode()
    body = hmac.new(secret, scope + name.encode(), "sha256").digest()[:16]
    return (body + _mac(secret, body)).hex()


class DurableObjectNamespace:
    """What ``env.MY_BINDING`` is: makes ids and stubs for one Durable Object class."""

    def __init__(self, objects: ActorNamespace, jurisdiction: str | None = None) -> None:
        # The runtime's side of this binding: the live objects of the class.
        self._objects = objects
        self._jurisdiction = jurisdiction
        # name -> id: a Worker routing every request by name would otherwise compute
        # two HMACs per request. Bounded, and cleared whole when full.
        self._named: dict[str, str] = {}

    def _make(self, body: bytes, name: str | None) -> DurableObjectId:
        return DurableObjectId((body + _mac(self._objects.secret, body)).hex(), name)

    def idFromName(self, name: str) -> DurableObjectId:
        name = str(name)
        hex_id = self._named.get(name)
        if hex_id is None:
            hex_id = name_to_id(self._objects.secret, name, self._jurisdiction)
            if len(self._named) >= _NAMED_CACHE:
                self._named.clear()
            self._named[name] = hex_id
        return DurableObjectId(hex_id, name)

    id_from_name = idFromName

    def newUniqueId(self, options: Any = None) -> DurableObjectId:
        """A new random id; ``{"jurisdiction": "eu"}`` is checked and, with one location,
        changes nothing else."""
        wanted = options.get("jurisdiction") if isinstance(options, dict) else None
        if wanted is not None and wanted not in JURISDICTIONS:
            raise TypeError(f"Unknown jurisdiction {wanted!r}: use one of {sorted(JURISDICTIONS)}")
        return self._make(os.urandom(16), None)

    new_unique_id = newUniqueId

    def idFromString(self, id_string: str) -> DurableObjectId:
        try:
            raw = bytes.fromhex(id_string)
        except (ValueError, TypeError):
            raw = b""
        if len(raw) != 32 or len(id_string) != 64:
            raise TypeError("Invalid Durable Object ID: must be 64 hex digits")
        if not hmac.compare_digest(raw[16:], _mac(self._objects.secret, raw[:16])):
            raise TypeError(
                "Durable Object ID is not valid for this namespace "
                f"(binding {self._objects.binding}); was it made by another class?"
            )
        return DurableObjectId(id_string.lower())

    id_from_string = idFromString

    def get(self, object_id: DurableObjectId, options: Any = None) -> DurableObjectStub:
        if not isinstance(object_id, DurableObjectId):
            raise TypeError("get() expects a DurableObjectId; use getByName() for a name.")
        return DurableObjectStub(self._objects, object_id)

    def getByName(self, name: str, options: Any = None) -> DurableObjectStub:
        return self.get(self.idFromName(name), options)

    get_by_name = getByName

    def jurisdiction(self, jurisdiction: str) -> DurableObjectNamespace:
        """A subnamespace whose names make objects of their own (see the module docstring)."""
        if jurisdiction not in JURISDICTIONS:
            raise TypeError(
                f"Unknown jurisdiction {jurisdiction!r}: use one of {sorted(JURISDICTIONS)}"
            )
        return DurableObjectNamespace(self._objects, jurisdiction)


class DurableObjectStub:
    """A client for one object: ``await stub.fetch(request)`` or ``await stub.method(...)``."""

    __slots__ = ("_objects", "_reach", "id")

    def __init__(self, objects: ActorNamespace, object_id: DurableObjectId) -> None:
        self._objects = objects
        self.id = object_id
        self._reach: ObjectChannel | None = None

    def _owner(self) -> Callable[[Any], Any] | None:
        """How callbacks and RpcTargets this object returns reach the caller: as stubs
        that run them in the object."""
        return _owned_by(self._objects.host(self.id))

    @property
    def _channel(self) -> ObjectChannel:
        """The object's entry points (the stub's only way to it), made on first use."""
        reach = self._reach
        if reach is None:
            reach = self._reach = self._objects.channel(self.id)
        return reach

    @property
    def name(self) -> str | None:
        return self.id.name

    async def fetch(self, input: Request | str, **init: Any) -> Response:
        request = input if isinstance(input, Request) and not init else Request(input, **init)
        response: object = await _remote(self._channel.fetch(request))
        if not isinstance(response, Response):
            raise TypeError(
                f"{self._objects.cls.__name__}.fetch() returned {type(response).__name__}; "
                "it must return a Response."
            )
        body = response._body
        if isinstance(body, ReadableStream):
            # Its chunks are made in the object, each in its turn behind the output gate.
            response._body = ReadableStream(self._channel.stream(body))
        return response

    def __getattr__(self, method: str) -> _RpcMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _RpcMethod(self, method)


class _RpcMethod:
    """``stub.name``: call it (``await stub.name(...)``) or read it (``await stub.name``)."""

    __slots__ = ("_method", "_stub")

    def __init__(self, stub: DurableObjectStub, method: str) -> None:
        self._stub = stub
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> RpcPromise:
        # Copied now, at the call: what the caller changes afterwards does not travel.
        # Callbacks and RpcTargets the caller passes stay its own (they run in it).
        try:
            copied = clone((args, kwargs), _BY_REFERENCE, _owned_by(current_host.get(None)))
        except DataCloneError as exc:
            return RpcPromise(_raise(exc))
        return RpcPromise(self._call(*copied))

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = await _remote(self._stub._channel.call(self._method, args, kwargs))
        return clone(result, _BY_REFERENCE, self._stub._owner())

    def __await__(self) -> Generator[Any, None, Any]:
        # A promise too: it reaches the object after the calls made before it.
        return RpcPromise(self._read()).__await__()

    async def _read(self) -> Any:
        value = await _remote(self._stub._channel.get(self._method))
        return clone(value, _BY_REFERENCE, self._stub._owner())


class RpcPromise:
    """The result of an RPC call: await it, or call a method of the result through it
    without awaiting first (``await stub.get_counter().increment()``, Cloudflare's promise
    pipelining). It can be awaited more than once.

    The call is under way from the moment it is made, as on Cloudflare: one nobody
    awaits still runs (its error, if any, is logged at debug level)."""

    __slots__ = ("_task",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_unawaited_error)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    def __getattr__(self, name: str) -> _Pipelined:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Pipelined(self, name)


class _Pipelined:
    """A property or method of a result not awaited yet."""

    __slots__ = ("_name", "_promise")

    def __init__(self, promise: RpcPromise, name: str) -> None:
        self._promise = promise
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> RpcPromise:
        return RpcPromise(self._call(args, kwargs))

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = getattr(await self._promise, self._name)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    def __await__(self) -> Generator[Any, None, Any]:
        return self._read().__await__()

    async def _read(self) -> Any:
        value = getattr(await self._promise, self._name)
        return await value if isinstance(value, _RpcMethod) else value

    def __getattr__(self, name: str) -> _Pipelined:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Pipelined(RpcPromise(self._read()), name)


async def _remote(call: Awaitable[Any]) -> Any:
    """Await a channel call; an error it raises gets Cloudflare's properties first."""
    try:
        return await call
    except Exception as exc:
        _describe(exc)
        raise


def _describe(error: BaseException) -> None:
    """Cloudflare's properties on an error a stub call raises: ``remote`` when the object's
    own code raised it (``ctx.abort()`` included), ``retryable`` when the runtime reset the
    object under the call (a new instance will take the next one), ``overloaded`` never
    (stateroom queues without a limit)."""
    reset = isinstance(error, ObjectResetError) and not isinstance(error, DurableObjectAbort)
    with contextlib.suppress(AttributeError):  # an exception type without __dict__
        error.remote = not reset  # type: ignore[attr-defined]
        error.retryable = reset  # type: ignore[attr-defined]
        error.overloaded = False  # type: ignore[attr-defined]


async def _raise(error: BaseException) -> Any:
    raise error


# What an RPC call passes by reference rather than copying (see api/rpc.py).
class OwnedFunction:
    """A callback (a function or an ``RpcTarget``'s method) of a Durable Object, as another
    side holds it: calling it runs the original in its owner, as one of the owner's
    events (in its turn, behind its input gate), and returns a promise of the result, as
    a stub of a function does on Cloudflare. Arguments and result are copied."""

    __slots__ = ("_fn", "_host")

    def __init__(self, fn: Callable[..., Any], host: ActorHost) -> None:
        self._fn = fn
        self._host = host

    def __call__(self, *args: Any, **kwargs: Any) -> RpcPromise:
        try:
            copied = clone((args, kwargs), _BY_REFERENCE, _owned_by(current_host.get(None)))
        except DataCloneError as exc:
            return RpcPromise(_raise(exc))
        return RpcPromise(self._run(*copied))

    async def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn = self._fn

        async def event(_instance: Any) -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        result = await _remote(self._host.run(event))
        return clone(result, _BY_REFERENCE, _owned_by(self._host))

    def __repr__(self) -> str:
        return f"<callback {getattr(self._fn, '__qualname__', self._fn)!r} of {self._host.id}>"


class OwnedTarget:
    """An ``RpcTarget`` of a Durable Object, as another side holds it: its methods are
    ``OwnedFunction``s (they run in the owner); other attributes read as copies."""

    __slots__ = ("_host", "_target")

    def __init__(self, target: RpcTarget, host: ActorHost) -> None:
        self._target = target
        self._host = host

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._target, name)
        if callable(value):
            return OwnedFunction(value, self._host)
        return clone(value, _BY_REFERENCE, _owned_by(self._host))

    def __repr__(self) -> str:
        return f"<{type(self._target).__name__} of {self._host.id}>"


def _owned_by(host: ActorHost | None) -> Callable[[Any], Any] | None:
    """How a callback or ``RpcTarget`` that ``host`` passes on travels: as a stub that runs
    it in ``host`` (None, for the Worker, which has no event order: as it is)."""
    if host is None:
        return None

    def wrap(value: Any) -> Any:
        if isinstance(value, RpcTarget):
            return OwnedTarget(value, host)
        return OwnedFunction(value, host)

    return wrap


def _unawaited_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("an RPC call failed: %r", task.exception())


logger = logging.getLogger("stateroom.rpc")

_BY_REFERENCE = (
    DurableObjectStub,
    DurableObjectId,
    DurableObjectNamespace,
    OwnedFunction,
    OwnedTarget,
)
