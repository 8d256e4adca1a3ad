"""``pyodide.ffi`` over CPython: the foreign-function adapters Cloudflare's Workers call.

In Pyodide these convert between Python and JavaScript values. Under stateroom every
value is already a Python object (a ``js.Response`` is a ``stateroom.Response``, a
WebSocket end is a ``stateroom.WebSocket``), so:

* ``to_js(value)`` returns the value as Python containers that also answer the
  ``JsProxy`` methods Worker code calls on them (``to_py()``, ``object_values()``):
  lists become ``JsArray`` (a ``list``), dicts become ``JsMap`` (a ``dict``) or whatever
  ``dict_converter`` builds (``js.Object.fromEntries`` makes a ``JsObject``, a ``dict``
  whose keys are also attributes). They store, send and compare as the plain types.
* ``create_proxy(fn)`` / ``create_once_callable(fn)`` return callables that call ``fn``
  (a proxy keeps a bound method alive as an event listener, as in Pyodide; ``destroy()``
  makes further calls fail as they would there).
* ``run_sync(coro)`` runs a coroutine to completion from synchronous code. Pyodide does
  this with JavaScript Promise Integration, which suspends the Python stack while the
  event loop goes on. CPython cannot suspend a plain function, so here the coroutine
  runs on a private event loop in a helper thread while the caller (and with it the
  Worker's event loop) waits: use it for self-contained work (a sleep, a computation,
  an outbound ``fetch``), not for objects of the running Worker (storage, sockets).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = [
    "IN_BROWSER",
    "JsArray",
    "JsBuffer",
    "JsException",
    "JsMap",
    "JsNull",
    "JsObject",
    "JsProxy",
    "create_once_callable",
    "create_proxy",
    "destroy_proxies",
    "jsnull",
    "run_sync",
    "to_js",
]

T = TypeVar("T")

IN_BROWSER = False


class JsProxy:
    """Marks a value that plays the part of a JavaScript object.

    Pyodide wraps every JavaScript value in a ``JsProxy``; here the values that stand for
    JavaScript objects (``to_js`` results, ``js.Object``, ``js.Date``, ...) derive from it,
    so ``isinstance(x, JsProxy)`` tells them from values that are Python to begin with.
    """

    __slots__ = ()

    def to_py(self, *, depth: int = -1, default_converter: Any = None) -> Any:
        return _to_py(self, depth)

    def object_values(self) -> list[Any]:
        """``Object.values(proxy)``."""
        if isinstance(self, Mapping):
            return list(self.values())
        if isinstance(self, Iterable):
            return list(self)
        return []

    def object_keys(self) -> list[Any]:
        if isinstance(self, Mapping):
            return list(self.keys())
        return []

    def object_entries(self) -> list[list[Any]]:
        if isinstance(self, Mapping):
            return [[k, v] for k, v in self.items()]
        return []


class JsArray(list[Any], JsProxy):
    """What ``to_js(list)`` gives: a ``list`` (stored, sent and compared as one)."""

    __slots__ = ()

    def to_py(self, *, depth: int = -1, default_converter: Any = None) -> list[Any]:
        return _to_py(self, depth)  # type: ignore[no-any-return]

    @property
    def length(self) -> int:
        return len(self)

    def push(self, *items: Any) -> int:
        self.extend(items)
        return len(self)


class JsMap(dict[Any, Any], JsProxy):
    """What ``to_js(dict)`` gives without a ``dict_converter`` (a JavaScript ``Map``)."""

    __slots__ = ()

    def to_py(self, *, depth: int = -1, default_converter: Any = None) -> dict[Any, Any]:
        return _to_py(self, depth)  # type: ignore[no-any-return]

    def has(self, key: Any) -> bool:
        return key in self

    def set(self, key: Any, value: Any) -> JsMap:
        self[key] = value
        return self

    @property
    def size(self) -> int:
        return len(self)


class JsObject(dict[str, Any], JsProxy):
    """A plain JavaScript object: a ``dict`` whose keys are also attributes."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            return None  # a missing property is ``undefined``

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        self.pop(name, None)

    def to_py(self, *, depth: int = -1, default_converter: Any = None) -> dict[str, Any]:
        return _to_py(self, depth)  # type: ignore[no-any-return]


class JsNull(JsProxy):
    """JavaScript ``null`` (``jsnull``); ``undefined`` is ``None``."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "jsnull"


jsnull = JsNull()

JsBuffer = memoryview
"""Binary data: JavaScript's ``ArrayBuffer`` views arrive as ``memoryview``/``bytes`` here."""


class JsException(Exception):
    """An error thrown by "JavaScript": here, by a ``js`` adapter (``name`` says its kind)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _to_py(value: Any, depth: int) -> Any:
    if depth == 0:
        return value
    if isinstance(value, Mapping):
        return {k: _to_py(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_py(v, depth - 1) for v in value]
    if isinstance(value, JsNull):
        return None
    return value


def to_js(
    obj: Any,
    *,
    depth: int = -1,
    pyproxies: Any = None,
    create_pyproxies: bool = True,
    dict_converter: Callable[[Iterable[list[Any]]], Any] | None = None,
    default_converter: Callable[..., Any] | None = None,
    eager_converter: Callable[..., Any] | None = None,
) -> Any:
    """Pyodide's ``to_js``: lists and tuples become ``JsArray``, dicts ``JsMap`` or
    ``dict_converter(entries)`` (``js.Object.fromEntries`` gives a ``JsObject``).

    Everything else (numbers, strings, bytes, ``None``, stateroom objects) is already
    what the Worker's APIs take and is returned as it is.
    """

    def convert(value: Any, level: int) -> Any:
        if level == 0 or isinstance(value, str | bytes | int | float | type(None)):
            return value
        if isinstance(value, JsProxy):
            return value
        if isinstance(value, Mapping):
            entries = [[k, convert(v, level - 1)] for k, v in value.items()]
            if dict_converter is not None:
                return dict_converter(entries)
            return JsMap(entries)
        if isinstance(value, list | tuple):
            return JsArray(convert(v, level - 1) for v in value)
        if isinstance(value, set | frozenset):
            return value  # a JavaScript Set; stateroom's own values take sets as they are
        if default_converter is not None:
            return default_converter(value, lambda v: convert(v, level - 1), None)
        return value

    return convert(obj, depth)


class _Proxy:
    """A callable standing for a Python function handed to "JavaScript"."""

    __slots__ = ("_fn", "_once")

    def __init__(self, fn: Callable[..., Any] | None, once: bool) -> None:
        self._fn = fn
        self._once = once

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self._fn
        if fn is None:
            raise RuntimeError("This borrowed proxy was automatically destroyed or destroy()ed")
        if self._once:
            self._fn = None
        return fn(*args, **kwargs)

    def destroy(self) -> None:
        self._fn = None

    def copy(self) -> _Proxy:
        return _Proxy(self._fn, self._once)

    def __repr__(self) -> str:
        return f"<proxy of {self._fn!r}>"


def create_proxy(
    obj: Callable[..., Any], *, capture_this: bool = False, roundtrip: bool = True
) -> Callable[..., Any]:
    """A callable that calls ``obj`` until ``destroy()`` is called on it."""
    if not callable(obj):
        return obj  # Pyodide proxies any object; here only calls matter
    return _Proxy(obj, once=False)


def create_once_callable(obj: Callable[..., Any], *, _may_syncify: bool = False) -> Any:
    """A callable that calls ``obj`` once; a second call raises."""
    return _Proxy(obj, once=True)


def destroy_proxies(proxies: Iterable[Any]) -> None:
    for proxy in proxies:
        if isinstance(proxy, _Proxy):
            proxy.destroy()


def run_sync(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion and return its result (see the module docstring).

    With no event loop running in this thread it simply runs the awaitable; inside the
    Worker's loop it runs it on a private loop in a helper thread and blocks until done.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(_await(awaitable)))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name="pyodide.ffi.run_sync", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
