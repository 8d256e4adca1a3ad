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

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import stateroom
from pyodide.ffi import JsObject
from workers.request import Request
from workers.rpc import _EnvWrapper

logger = logging.getLogger("stateroom.workers")


class DurableObjectAbort(Exception):
    """Raised by ``ctx.abort(reason)``: the object has been reset.

    The SDK derives it from ``BaseException`` so that a handler's ``except Exception``
    cannot swallow it; stateroom resets the object before raising, so a swallowed abort
    still leaves the object gone, and the caller's stub sees it as an ordinary error
    carrying the reason, as a caller does on Cloudflare.
    """


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
    def storage(self) -> _StartedWrites:
        """The object's storage; its writes start when called, as on Cloudflare."""
        return _StartedWrites(self._ctx.storage)

    def abort(self, reason: str | None = None) -> None:
        """Reset the object now (its next event constructs a new instance, its uncommitted
        writes are dropped) and raise ``DurableObjectAbort`` to end the running handler."""
        message = reason or "Durable Object abort requested"
        host = getattr(self._ctx, "_host", None)
        if host is None:
            raise RuntimeError("abort() needs the ctx stateroom gave this Durable Object")
        if host.ctx is self._ctx:  # not reset already (an abort from a dying instance)
            host.reset(f"ctx.abort(): {message}")
        raise DurableObjectAbort(message)

    def __repr__(self) -> str:
        return f"DurableObjectContext({self._ctx!r})"


_WRITES = frozenset(
    {
        "put",
        "delete",
        "deleteAll",
        "delete_all",
        "setAlarm",
        "set_alarm",
        "deleteAlarm",
        "delete_alarm",
    }
)


class _StartedWrites:
    """A Durable Object's storage whose writes take effect when they are called.

    On Cloudflare a write such as ``ctx.storage.setAlarm(t)`` is made when it is called;
    awaiting the promise it returns only waits for its confirmation, so Workers often
    leave it un-awaited (Cloudflare's own Python Durable Object test does). A Python
    coroutine does nothing until awaited, so here each write is run at once up to its
    first suspension (normally to its end), and what is returned can still be awaited.
    Everything else is stateroom's ``DurableObjectStorage`` itself.
    """

    __slots__ = ("_storage",)

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        if name == "sql":
            return _Sql(attr)
        if name not in _WRITES:
            return attr

        @functools.wraps(attr)
        def write(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            return _start(attr(*args, **kwargs))

        return write

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


def _start(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """Run ``coro`` now until it suspends; a future of its result (done if it finished)."""
    loop = asyncio.get_running_loop()
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        done = loop.create_future()
        done.set_result(stop.value)
        return done
    except Exception as exc:
        failed = loop.create_future()
        failed.set_exception(exc)
        return failed
    return loop.create_task(_Rest(coro, yielded).run())


class _Rest:
    """The rest of a coroutine that suspended on ``yielded``: resumed by a task."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    async def run(self) -> Any:
        return await self

    def __await__(self) -> Generator[Any, Any, Any]:
        pending = self._yielded
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # cancellation or an error thrown in: pass it on
                try:
                    pending = self._coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = self._coro.send(sent)
            except StopIteration as stop:
                return stop.value


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
