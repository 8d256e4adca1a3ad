"""``DurableObject`` and ``WorkerEntrypoint`` as Cloudflare's Python SDK defines them.

They are subclasses of stateroom's classes of the same name, so stateroom runs them as
it runs its own. What the SDK adds, done here the same way from the outside:

* ``env`` reaches ``__init__`` wrapped (``workers.rpc._EnvWrapper``) and ``ctx`` of a
  Durable Object as a ``DurableObjectContext`` (stateroom's ``DurableObjectState`` plus
  ``abort()``), before the subclass's own ``__init__`` body runs, once however deep the
  class hierarchy;
* ``fetch(request)`` receives a ``workers.Request``;
* the Worker's ``env`` and ``ctx`` become the module-level ``workers.env`` and
  ``workers.wait_until``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, NoReturn

import stateroom
from pyodide.ffi import JsObject
from workers.request import Request
from workers.rpc import _EnvWrapper

logger = logging.getLogger("stateroom.workers")


class DurableObjectContext:
    """A Durable Object's ``ctx``: stateroom's ``DurableObjectState`` plus ``abort()``.

    Every other attribute (``storage``, ``id``, ``acceptWebSocket``, ...) is the state's
    own. Wrapping is idempotent: ``DurableObjectContext(c) is c`` for a context ``c``.
    """

    _ctx: Any

    def __new__(cls, ctx: Any) -> DurableObjectContext:
        if isinstance(ctx, DurableObjectContext):
            return ctx
        wrapper = super().__new__(cls)
        wrapper._ctx = ctx
        return wrapper

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    @property
    def storage(self) -> _Storage:
        """The object's storage (its calls take effect when made, as on Cloudflare), with
        SQL rows that also read as attributes."""
        return _Storage(self._ctx.storage)

    def abort(self, reason: str | None = None) -> NoReturn:
        """Reset the object now and raise ``DurableObjectAbort`` (stateroom's own
        ``ctx.abort()``)."""
        state: stateroom.DurableObjectState = self._ctx
        state.abort(reason)

    def __repr__(self) -> str:
        return f"DurableObjectContext({self._ctx!r})"


class _Storage:
    """stateroom's ``DurableObjectStorage``, with ``sql`` rows as ``JsObject``s.

    Storage calls need no help here: stateroom runs each one when it is called (an
    un-awaited ``ctx.storage.setAlarm(t)``, as Cloudflare's own Python Durable Object
    test writes it, takes effect) and returns an awaitable of its result.
    """

    __slots__ = ("_storage",)

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        return _Sql(attr) if name == "sql" else attr

    def __repr__(self) -> str:
        return f"<storage {self._storage!r}>"


class _Sql:
    """``ctx.storage.sql`` whose rows also read as attributes (``row.greeting``), as a row
    does in Python on Cloudflare (a JavaScript object); they are still dicts."""

    __slots__ = ("_sql",)

    def __init__(self, sql: Any) -> None:
        self._sql = sql

    def exec(self, query: str, *bindings: Any) -> _Cursor:
        return _Cursor(self._sql.exec(query, *bindings))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sql, name)


class _Cursor:
    """A SQL cursor whose rows are ``JsObject``s (dicts with attribute access)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __iter__(self) -> _Cursor:
        return self

    def __next__(self) -> JsObject:
        return JsObject(next(self._cursor))

    def toArray(self) -> list[JsObject]:
        return [JsObject(row) for row in self._cursor.toArray()]

    to_array = toArray

    def one(self) -> JsObject:
        return JsObject(self._cursor.one())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _Current:
    """The running Worker's ``env`` and ``ctx``, for ``from workers import env``."""

    env: _EnvWrapper | None = None
    ctx: Any = None


def _wrap_init(cls: type, wrap_ctx: bool) -> None:
    """Make ``cls.__init__`` (if it defines one) see a wrapped ctx and env."""
    original = cls.__dict__.get("__init__")
    if original is None or getattr(original, "_workers_wrapped", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, ctx: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        if wrap_ctx:
            ctx = DurableObjectContext(ctx)
        else:
            _Current.ctx = ctx
        env = _EnvWrapper(env)
        _Current.env = env
        original(self, ctx, env, *args, **kwargs)

    __init__._workers_wrapped = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


def _wrap_fetch(cls: type) -> None:
    """Make ``cls.fetch`` (if it defines one) receive a ``workers.Request``."""
    original: Callable[..., Any] | None = cls.__dict__.get("fetch")
    if original is None or getattr(original, "_workers_wrapped", False):
        return

    @functools.wraps(original)
    async def fetch(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(request, stateroom.Request):
            request = Request._adopt(request)
        result = original(self, request, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    fetch._workers_wrapped = True  # type: ignore[attr-defined]
    cls.fetch = fetch  # type: ignore[attr-defined]


class DurableObject(stateroom.DurableObject):
    """Base class of a Durable Object: ``self.ctx`` (a ``DurableObjectContext``) and
    ``self.env``."""

    ctx: Any
    env: Any

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_init(cls, wrap_ctx=True)
        _wrap_fetch(cls)


class WorkerEntrypoint(stateroom.WorkerEntrypoint):
    """Base class of a Worker (``class Default(WorkerEntrypoint)``): ``self.ctx``,
    ``self.env``."""

    ctx: Any
    env: Any

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_init(cls, wrap_ctx=False)
        _wrap_fetch(cls)


_wrap_init(DurableObject, wrap_ctx=True)
_wrap_init(WorkerEntrypoint, wrap_ctx=False)


def handler(func: Callable[..., Any]) -> Callable[..., Any]:
    """The SDK's decorator for module-level handlers (``on_fetch``): converts a request
    argument to ``workers.Request`` and wraps ``env``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], stateroom.Request):
            args = (Request._adopt(args[0]), *args[1:])
        if len(args) > 1:
            args = (args[0], _EnvWrapper(args[1]), *args[2:])
        return func(*args, **kwargs)

    return wrapper
