"""What crosses an RPC call to a Durable Object: copies, as Cloudflare's structured clone.

On Cloudflare an RPC call's arguments and result are serialized (the structured clone
algorithm), so the callee cannot change the caller's objects, nor the caller the
callee's. stateroom calls within one process, and copies the same way: a mutation
on either side stays on that side, and a value that could not cross a process (an open
file, an arbitrary instance) is refused at the call with ``DataCloneError``, where it
would be refused on Cloudflare, rather than working here and failing there.

What is copied: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` (and
``bytearray``, ``memoryview``), dates and times, ``list``, ``tuple``, ``dict``, ``set``,
``frozenset``, and exceptions (same type, copied arguments), with shared references and
cycles kept, as structured clone keeps them.

What is passed by reference, as Cloudflare passes it by stub: stubs of Durable Objects,
their ids, ``RpcTarget`` instances and functions (callbacks). An ``RpcTarget`` or function
that leaves a Durable Object reaches the other side as a stub of it (``wrap``, see
``stateroom.api.namespace``): calling it runs the original in its owner, as one of the
owner's events, in its turn behind the owner's input gate, as on Cloudflare.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["DataCloneError", "RpcTarget", "clone"]

# Immutable: a copy would be equal and indistinguishable.
_AS_IS = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
)


class RpcTarget:
    """Subclass this to pass an object over RPC by reference (Cloudflare's ``RpcTarget``):
    the receiver calls its methods instead of getting a copy."""


class DataCloneError(TypeError):
    """A value of a type that cannot cross an RPC call (``DataCloneError`` on Cloudflare)."""


def clone(
    value: Any,
    by_reference: tuple[type, ...] = (),
    wrap: Callable[[Any], Any] | None = None,
) -> Any:
    """A structured-clone copy of ``value``; instances of ``by_reference`` are passed as
    they are, and so are ``RpcTarget``s and functions, through ``wrap`` if given."""
    return _Cloner(by_reference, wrap).copy(value)


class _Cloner:
    __slots__ = ("_by_reference", "_memo", "_wrap")

    def __init__(self, by_reference: tuple[type, ...], wrap: Callable[[Any], Any] | None) -> None:
        self._by_reference = by_reference
        self._wrap = wrap
        self._memo: dict[int, Any] = {}

    def copy(self, value: Any) -> Any:
        if isinstance(value, _AS_IS):
            return value
        seen = self._memo.get(id(value))
        if seen is not None:
            return seen
        kind = type(value)
        copy: Any
        if kind is list:
            copy = self._memo[id(value)] = []
            copy.extend(self.copy(item) for item in value)
        elif kind is dict:
            copy = self._memo[id(value)] = {}
            for key, item in value.items():
                copy[self.copy(key)] = self.copy(item)
        elif kind is tuple:
            copy = self._memo[id(value)] = tuple(self.copy(item) for item in value)
        elif kind is set or kind is frozenset:
            copy = self._memo[id(value)] = kind(self.copy(item) for item in value)
        elif kind is bytearray:
            copy = self._memo[id(value)] = bytearray(value)
        elif kind is memoryview:
            copy = self._memo[id(value)] = bytes(value)
        elif isinstance(value, BaseException):
            copy = self._memo[id(value)] = _copy_error(value, self.copy)
        elif isinstance(value, self._by_reference):
            return value
        elif isinstance(value, RpcTarget) or callable(value):
            wrap = self._wrap
            if wrap is None:
                return value
            copy = self._memo[id(value)] = wrap(value)
        else:
            raise DataCloneError(
                f'Could not serialize object of type "{kind.__name__}". This type does not '
                "support serialization: pass plain data (dict, list, str, numbers, bytes, "
                "datetime), a stub, or an RpcTarget subclass to pass it by reference."
            )
        return copy


def _copy_error(error: BaseException, copy: Callable[[Any], Any]) -> BaseException:
    """The same type with copied arguments; an ``Exception`` with its message otherwise."""
    try:
        copied = type(error)(*copy(error.args))
    except Exception:
        copied = Exception(str(error))
    return copied
