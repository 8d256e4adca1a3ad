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

import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from stateroom.api.requests import Request
from stateroom.api.responses import Response

if TYPE_CHECKING:
    from stateroom.runtime.actor import ActorNamespace
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
            scope = b"name:" if self._jurisdiction is None else f"{self._jurisdiction}:".encode()
            body = hmac.new(self._objects.secret, scope + name.encode(), "sha256").digest()
            hex_id = self._make(body[:16], name).hex
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
        response: object = await self._channel.fetch(request)
        if not isinstance(response, Response):
            raise TypeError(
                f"{self._objects.cls.__name__}.fetch() returned {type(response).__name__}; "
                "it must return a Response."
            )
        return response

    def __getattr__(self, method: str) -> _RpcMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _RpcMethod(self, method)


class _RpcMethod:
    __slots__ = ("_method", "_stub")

    def __init__(self, stub: DurableObjectStub, method: str) -> None:
        self._stub = stub
        self._method = method

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._stub._channel.call(self._method, args, kwargs)
