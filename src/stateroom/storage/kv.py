"""``ctx.storage``: Cloudflare's Durable Object Storage API.

``DurableObjectStorage`` is what user code sees as ``ctx.storage``: the
asynchronous KV methods (``get``, ``put``, ``delete``, ``list``,
``deleteAll``), ``transaction()`` and ``transactionSync()``, ``sync()``,
the alarm methods, ``ctx.storage.sql`` and the synchronous ``ctx.storage.kv``.
Names are Cloudflare's (camelCase); snake_case aliases exist for Python taste.

The runtime constructs one per object instance over an ``ObjectStore`` and
wires three hooks (all optional):

* ``write_tracker``: the object's ``OutputGate``; outputs wait for writes.
* ``input_gate``: closed while an async ``transaction()`` closure runs.
* ``on_broken``: called once if a commit fails; the runtime resets the object.

plus ``schedule_commit`` (when a batch commits; default ``loop.call_soon``)
and ``on_alarm_changed`` (the committed alarm time, after every commit that
changed it, so the runtime can re-arm its timer).

Every KV method completes synchronously: the ``await`` never suspends, so no
other event can run in between (the input gate is trivially respected), and
awaiting a ``put()`` does not split a coalesced batch.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, Protocol, TypeVar

from stateroom.storage.backend import ListQuery, ObjectStore
from stateroom.storage.coalesce import CommitScheduler, ImplicitTransaction, WriteTracker
from stateroom.storage.encoding import decode, encode
from stateroom.storage.errors import (
    DeleteAllInTransactionError,
    StorageBrokenError,
    StorageLimitError,
    TransactionClosedError,
)
from stateroom.storage.sql import SqlStorage

__all__ = [
    "DurableObjectStorage",
    "DurableObjectTransaction",
    "InputGateLike",
    "StorageLimits",
    "SyncKvStorage",
]

T = TypeVar("T")

_DELETE_ALL_IN_TRANSACTION: Final = "Cannot call deleteAll() within a transaction"

_MISSING: Any = object()  # put(key) without a value (None is a value)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# Option names each method accepts, snake_case spellings mapped to Cloudflare's.
_ALIASES = {
    "allow_concurrency": "allowConcurrency",
    "allow_unconfirmed": "allowUnconfirmed",
    "no_cache": "noCache",
    "start_after": "startAfter",
}
_GET_OPTIONS = frozenset({"allowConcurrency", "noCache"})
_PUT_OPTIONS = frozenset({"allowConcurrency", "allowUnconfirmed", "noCache"})
_LIST_OPTIONS = _GET_OPTIONS | {"start", "startAfter", "end", "prefix", "reverse", "limit"}
_ALARM_WRITE_OPTIONS = frozenset({"allowConcurrency", "allowUnconfirmed"})
_ALARM_READ_OPTIONS = frozenset({"allowConcurrency"})


@dataclass(frozen=True, slots=True)
class StorageLimits:
    """Cloudflare's limits for SQLite-backed Durable Objects (tests may lower them)."""

    max_key_bytes: int = 2048
    """A key's UTF-8 size."""
    max_entry_bytes: int = 2 * 1024 * 1024
    """A key's UTF-8 size plus its encoded value's size."""
    max_keys_per_call: int = 128
    """Keys in one multi-key ``get``/``delete`` or pairs in one ``put(dict)``."""


class InputGateLike(Protocol):
    """What ``transaction()`` needs from the input gate (``InputGate`` implements it)."""

    def closed(self) -> AbstractAsyncContextManager[object]: ...


def _options(
    method: str,
    allowed: frozenset[str],
    options: Mapping[str, Any] | None,
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (options or {}), kwargs:
        for name, value in source.items():
            canonical = _ALIASES.get(name, name)
            if canonical not in allowed:
                raise TypeError(f"{method}() got an unexpected option {name!r}")
            if canonical in merged:
                raise TypeError(f"{method}() got option {canonical!r} twice")
            merged[canonical] = value
    return merged


def _alarm_ms(scheduled_time: object) -> int:
    """Milliseconds since the epoch for ``setAlarm()``'s argument.

    Numbers are truncated like JavaScript's ``new Date(n)``. A naive datetime
    is local time, as Python's ``datetime.timestamp()`` reads it, so that
    ``datetime.now() + timedelta(seconds=10)`` means ten seconds from now.
    """
    return _epoch_ms(scheduled_time, "setAlarm()")


def _epoch_ms(when: object, what: str) -> int:
    if isinstance(when, bool):
        raise TypeError(f"{what} takes a datetime or milliseconds since the epoch, not bool")
    if isinstance(when, int):
        return when
    if isinstance(when, float):
        if not math.isfinite(when):
            raise ValueError(f"{what} time must be finite")
        return int(when)
    if isinstance(when, datetime):
        aware = when.astimezone(UTC)
        return (aware - _EPOCH) // _MS
    raise TypeError(
        f"{what} takes a datetime or milliseconds since the epoch, not {type(when).__name__!r}"
    )


class DurableObjectStorage:
    """``ctx.storage`` of one object instance (see the module docstring)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        write_tracker: WriteTracker | None = None,
        input_gate: InputGateLike | None = None,
        schedule_commit: CommitScheduler | None = None,
        on_broken: Callable[[StorageBrokenError], None] | None = None,
        on_alarm_changed: Callable[[int | None], None] | None = None,
        limits: StorageLimits | None = None,
        delete_all_deletes_alarm: bool = True,
    ) -> None:
        self._store = store
        self._txn = ImplicitTransaction(
            store,
            write_tracker=write_tracker,
            schedule_commit=schedule_commit,
            on_broken=on_broken,
        )
        self._input_gate = input_gate
        self._on_alarm_changed = on_alarm_changed
        self._alarm_hook_pending = False
        self._limits = limits or StorageLimits()
        self._delete_all_deletes_alarm = delete_all_deletes_alarm
        self.sql = SqlStorage(store, self._txn)
        self.kv = SyncKvStorage(self)
        self._exclusive_done: asyncio.Future[None] | None = None
        # Set by the alarm scheduler while alarm() runs: getAlarm() then answers None
        # until setAlarm() or deleteAlarm() is called, as on Cloudflare.
        self.alarm_running = False

    async def _turn(self) -> None:
        """Wait while another task's ``transaction()`` is open.

        The input gate holds back new events, but an event already in flight may
        resume from other I/O meanwhile; its storage calls must not land inside (and
        be rolled back with) the other event's transaction.
        """
        owner = self._txn.exclusive_owner
        while owner is not None and owner is not asyncio.current_task():
            assert self._exclusive_done is not None
            await asyncio.shield(self._exclusive_done)
            owner = self._txn.exclusive_owner

    # -- runtime hooks ------------------------------------------------------------

    @property
    def store(self) -> ObjectStore:
        return self._store

    @property
    def commit_pending(self) -> bool:
        """Whether writes exist that are not durable yet."""
        return self._txn.commit_pending

    @property
    def broken(self) -> StorageBrokenError | None:
        """The commit failure that broke this storage, or None."""
        return self._txn.broken

    async def flush(self) -> None:
        """Wait until everything written so far is durable (``StorageBrokenError`` if lost)."""
        await self._txn.flush()

    def remember_name(self, name: str) -> None:
        """Store the object's name with its next write (see ``ObjectStore.set_name``)."""
        self._txn.name_to_store = name

    def commit_now(self) -> None:
        """Commit pending writes synchronously (before eviction or shutdown)."""
        self._txn.commit_now()

    def close(self, *, commit: bool = True) -> None:
        """Commit pending writes (unless ``commit=False``) and close the store."""
        self._txn.close(commit=commit)

    # -- validation -------------------------------------------------------------------

    def _check_key(self, key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"storage keys must be str, not {type(key).__name__!r}")
        self._key_size(key)
        return key

    def _key_size(self, key: str) -> int:
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("storage keys must be valid Unicode (no lone surrogates)") from None
        if size > self._limits.max_key_bytes:
            raise StorageLimitError(
                f"Keys cannot be larger than {self._limits.max_key_bytes} bytes. "
                f"A key of size {size} was provided."
            )
        return size

    def _entry(self, key: object, value: Any) -> tuple[str, bytes]:
        key = self._check_key(key)
        key_size = self._key_size(key)
        blob = encode(value)
        if key_size + len(blob) > self._limits.max_entry_bytes:
            raise StorageLimitError(
                f"Key and value combined cannot be larger than {self._limits.max_entry_bytes} "
                f"bytes. A key of size {key_size} and a value of size {len(blob)} were provided."
            )
        return key, blob

    def _keys(self, keys: Sequence[object]) -> list[str]:
        if len(keys) > self._limits.max_keys_per_call:
            raise StorageLimitError(
                f"Maximum number of keys is {self._limits.max_keys_per_call}. "
                f"{len(keys)} keys were provided."
            )
        return [self._check_key(key) for key in keys]

    def _list_query(self, opts: Mapping[str, Any]) -> ListQuery:
        for name in ("start", "startAfter", "end", "prefix"):
            value = opts.get(name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"list() option {name!r} must be str, not {type(value).__name__}")
        if opts.get("start") is not None and opts.get("startAfter") is not None:
            raise TypeError("list() cannot be called with both start and startAfter values.")
        limit = opts.get("limit")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"list() limit must be an int, not {type(limit).__name__}")
            if limit <= 0:
                raise ValueError("List limit must be positive.")
        return ListQuery(
            start=opts.get("start"),
            start_after=opts.get("startAfter"),
            end=opts.get("end"),
            prefix=opts.get("prefix"),
            reverse=bool(opts.get("reverse", False)),
            limit=limit,
        )

    # -- synchronous core (shared by the async API, transactions and .kv) ------------

    def _get(self, keys: str | Sequence[str]) -> Any:
        if isinstance(keys, str):
            self._check_key(keys)
            with self._txn.operation(begin=False):
                blob = self._store.kv_get(keys)
            return None if blob is None else decode(blob)
        if not isinstance(keys, (list, tuple)):
            raise TypeError(
                f"get() takes a key (str) or a list of keys, not {type(keys).__name__!r}"
            )
        checked = self._keys(keys)
        with self._txn.operation(begin=False):
            pairs = self._store.kv_get_many(checked)
        return {key: decode(blob) for key, blob in pairs}

    def _put(self, key_or_entries: Any, value: Any, confirmed: bool) -> None:
        if isinstance(key_or_entries, str):
            if value is _MISSING:
                raise TypeError("put() called with a key but no value")
            key, blob = self._entry(key_or_entries, value)
            with self._txn.operation(write=True, confirmed=confirmed):
                self._store.kv_put(key, blob)
            return
        if isinstance(key_or_entries, Mapping):
            if value is not _MISSING:
                raise TypeError("put() with a dict of entries takes no separate value")
            if len(key_or_entries) > self._limits.max_keys_per_call:
                raise StorageLimitError(
                    f"Maximum number of key value pairs is {self._limits.max_keys_per_call}. "
                    f"{len(key_or_entries)} pairs were provided."
                )
            entries = [self._entry(k, v) for k, v in key_or_entries.items()]
            if entries:
                with self._txn.operation(write=True, confirmed=confirmed):
                    self._store.kv_put_many(entries)
            return
        raise TypeError(
            f"put() takes a key (str) and a value, or a dict of entries, "
            f"not {type(key_or_entries).__name__!r}"
        )

    def _delete(self, keys: str | Sequence[str], confirmed: bool) -> bool | int:
        if isinstance(keys, str):
            self._check_key(keys)
            with self._txn.operation(write=True, confirmed=confirmed):
                return self._store.kv_delete(keys)
        if not isinstance(keys, (list, tuple)):
            raise TypeError(
                f"delete() takes a key (str) or a list of keys, not {type(keys).__name__!r}"
            )
        checked = self._keys(keys)
        if not checked:
            return 0
        with self._txn.operation(write=True, confirmed=confirmed):
            return self._store.kv_delete_many(checked)

    def _list(self, opts: Mapping[str, Any]) -> list[tuple[str, bytes]]:
        query = self._list_query(opts)
        with self._txn.operation(begin=False):
            return self._store.kv_list(query)

    def _delete_all(self, confirmed: bool) -> None:
        include_alarm = self._delete_all_deletes_alarm
        with self._txn.operation(write=True, confirmed=confirmed):
            self._store.delete_all(include_alarm=include_alarm)
        if include_alarm:
            self._alarm_changed()

    def _get_alarm(self) -> int | None:
        with self._txn.operation(begin=False):
            return self._store.get_alarm()

    def _set_alarm(self, when_ms: int | None, confirmed: bool) -> None:
        with self._txn.operation(write=True, confirmed=confirmed):
            self._store.set_alarm(when_ms)
        self.alarm_running = False
        self._alarm_changed()

    def _alarm_changed(self) -> None:
        if self._on_alarm_changed is None or self._alarm_hook_pending:
            return
        self._alarm_hook_pending = True
        self._txn.add_post_commit(self._report_alarm)

    def _report_alarm(self) -> None:
        self._alarm_hook_pending = False
        if self._on_alarm_changed is not None:
            self._on_alarm_changed(self._store.get_alarm())

    # -- the asynchronous KV API ------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Run a storage call now, when it is made (as Cloudflare starts it), and return
        an awaitable of its result: a write nobody awaits still happens, and the output
        gate still holds what is sent after it. Only while another event's
        ``transaction()`` is open does the call wait for its turn, in a task."""
        owner = self._txn.exclusive_owner
        if owner is not None and owner is not asyncio.current_task():
            return asyncio.ensure_future(self._after_turn(fn, args))
        try:
            result = fn(*args)
        except Exception as exc:
            return Failed(exc)
        # Most calls give None: one shared awaitable for them, no allocation per call.
        return _SETTLED_NONE if result is None else Settled(result)

    async def _after_turn(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        await self._turn()
        return fn(*args)

    def get(
        self, keys: str | Sequence[str], options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[Any]:
        """One key: its value or None. A list of keys (at most 128): a dict of
        the keys that exist, in key (UTF-8 byte) order."""
        if self._txn.exclusive_owner is None and not options and not kwargs:
            try:  # the usual call, without the general path's indirection
                return Settled(self._get(keys))
            except Exception as exc:
                return Failed(exc)
        return self._call(self._get_call, keys, options, kwargs)

    def _get_call(
        self, keys: str | Sequence[str], options: Mapping[str, Any] | None, kwargs: dict[str, Any]
    ) -> Any:
        _options("get", _GET_OPTIONS, options, kwargs)
        return self._get(keys)

    def put(
        self,
        key_or_entries: str | Mapping[str, Any],
        value: Any = _MISSING,
        options: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> Awaitable[None]:
        """``put(key, value)`` or ``put({key: value, ...})`` (at most 128 pairs).

        With a dict, a second positional argument is taken as the options.
        """
        if self._txn.exclusive_owner is None and options is None and not kwargs:
            try:  # the usual call, without the general path's indirection
                self._put_call(key_or_entries, value, None, kwargs)
            except Exception as exc:
                return Failed(exc)
            return _SETTLED_NONE
        return self._call(self._put_call, key_or_entries, value, options, kwargs)

    def _put_call(
        self,
        key_or_entries: str | Mapping[str, Any],
        value: Any,
        options: Mapping[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        if not isinstance(key_or_entries, str) and options is None and isinstance(value, Mapping):
            options, value = value, _MISSING
        opts = _options("put", _PUT_OPTIONS, options, kwargs)
        self._put(key_or_entries, value, not opts.get("allowUnconfirmed", False))

    def delete(
        self, keys: str | Sequence[str], options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[bool | int]:
        """One key: whether it existed. A list (at most 128): how many existed."""
        return self._call(self._delete_call, keys, options, kwargs)

    def _delete_call(
        self, keys: str | Sequence[str], options: Mapping[str, Any] | None, kwargs: dict[str, Any]
    ) -> bool | int:
        opts = _options("delete", _PUT_OPTIONS, options, kwargs)
        return self._delete(keys, not opts.get("allowUnconfirmed", False))

    def list(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[dict[str, Any]]:
        """Pairs in key order: ``start`` (inclusive) or ``startAfter``, ``end``
        (exclusive), ``prefix``, ``reverse``, ``limit``."""
        return self._call(self._list_call, options, kwargs)

    def _list_call(
        self, options: Mapping[str, Any] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        opts = _options("list", _LIST_OPTIONS, options, kwargs)
        return {key: decode(blob) for key, blob in self._list(opts)}

    def deleteAll(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Awaitable[None]:
        """Delete every KV pair and every SQL table (and the alarm, as on
        Cloudflare since compatibility date 2026-02-24, unless the storage was
        created with ``delete_all_deletes_alarm=False``)."""
        return self._call(self._delete_all_call, options, kwargs)

    def _delete_all_call(self, options: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> None:
        if self._txn.in_explicit_transaction:
            raise DeleteAllInTransactionError(_DELETE_ALL_IN_TRANSACTION)
        opts = _options("deleteAll", _PUT_OPTIONS, options, kwargs)
        self._delete_all(not opts.get("allowUnconfirmed", False))

    async def transaction(self, closure: Callable[[DurableObjectTransaction], Any]) -> Any:
        """Run ``closure(txn)`` atomically: an exception (or ``txn.rollback()``)
        undoes every write made through ``txn``. Returns the closure's result.

        When the runtime gave an input gate, it stays closed while the closure
        runs, so no other event interleaves with it even across awaits.
        """
        await self._turn()
        gate: AbstractAsyncContextManager[object] = (
            self._input_gate.closed() if self._input_gate is not None else _NULL_ASYNC
        )
        outer = self._txn.exclusive_owner is None
        if outer:
            self._txn.exclusive_owner = asyncio.current_task()
            self._exclusive_done = asyncio.get_running_loop().create_future()
        try:
            return await self._transaction(gate, closure)
        finally:
            if outer:
                self._txn.exclusive_owner = None
                done, self._exclusive_done = self._exclusive_done, None
                if done is not None and not done.done():
                    done.set_result(None)

    async def _transaction(
        self,
        gate: AbstractAsyncContextManager[object],
        closure: Callable[[DurableObjectTransaction], Any],
    ) -> Any:
        async with gate:
            name = self._txn.savepoint_begin()
            txn = DurableObjectTransaction(self, name)
            try:
                result = closure(txn)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException:
                txn._finish()
                self._txn.savepoint_end(name, rollback=True)
                raise
            txn._finish()
            self._txn.savepoint_end(name, rollback=txn._rolled_back)
            return result

    def transactionSync(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` atomically; an exception rolls its writes back and propagates."""
        self._txn.check_exclusive()
        name = self._txn.savepoint_begin()
        try:
            result = fn()
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(
                    "transactionSync() callback returned an awaitable; "
                    "use transaction() for async callbacks"
                )
        except BaseException:
            self._txn.savepoint_end(name, rollback=True)
            raise
        self._txn.savepoint_end(name, rollback=False)
        return result

    async def sync(self) -> None:
        """Resolve once every write made so far is durable."""
        await self._turn()
        await self._txn.flush()

    # -- point-in-time recovery ---------------------------------------------------------

    async def getCurrentBookmark(self) -> str:
        """A bookmark of the object's state including every write made so far."""
        await self.sync()
        return await self.store.current_bookmark()

    async def getBookmarkForTime(self, timestamp: Any) -> str:
        """The bookmark of the object's state at ``timestamp`` (ms since the epoch, or a
        datetime), within the store's retention window."""
        return await self.store.bookmark_for_time(_epoch_ms(timestamp, "getBookmarkForTime()"))

    async def onNextSessionRestoreBookmark(self, bookmark: str) -> str:
        """Restore the object to ``bookmark`` when it next starts (``ctx.abort()``
        restarts it now); returns a bookmark that undoes the restore."""
        await self.sync()
        return await self.store.restore_on_next_session(bookmark)

    get_current_bookmark = getCurrentBookmark
    get_bookmark_for_time = getBookmarkForTime
    on_next_session_restore_bookmark = onNextSessionRestoreBookmark

    def getAlarm(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[int | None]:
        """The alarm time in milliseconds since the epoch, or None."""
        return self._call(self._get_alarm_call, options, kwargs)

    def _get_alarm_call(
        self, options: Mapping[str, Any] | None, kwargs: dict[str, Any]
    ) -> int | None:
        _options("getAlarm", _ALARM_READ_OPTIONS, options, kwargs)
        return None if self.alarm_running else self._get_alarm()

    def setAlarm(
        self,
        scheduled_time: datetime | int | float,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[None]:
        """Set the alarm: a datetime, or milliseconds since the epoch."""
        return self._call(self._set_alarm_call, scheduled_time, options, kwargs)

    def _set_alarm_call(
        self,
        scheduled_time: datetime | int | float,
        options: Mapping[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        opts = _options("setAlarm", _ALARM_WRITE_OPTIONS, options, kwargs)
        self._set_alarm(_alarm_ms(scheduled_time), not opts.get("allowUnconfirmed", False))

    def deleteAlarm(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[None]:
        """Clear the alarm, if any."""
        return self._call(self._delete_alarm_call, options, kwargs)

    def _delete_alarm_call(self, options: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> None:
        opts = _options("deleteAlarm", _ALARM_WRITE_OPTIONS, options, kwargs)
        self._set_alarm(None, not opts.get("allowUnconfirmed", False))

    delete_all = deleteAll
    transaction_sync = transactionSync
    get_alarm = getAlarm
    set_alarm = setAlarm
    delete_alarm = deleteAlarm


class Settled(Generic[T]):
    """What a storage call returns: it already ran, so awaiting it suspends nothing and
    gives its result. Nobody awaiting it loses nothing either.

    An awaitable, not a coroutine: ``await``, ``asyncio.gather()`` and
    ``asyncio.ensure_future()`` take it; ``asyncio.create_task()`` wants a coroutine.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self._value
        yield  # a generator function: ``await`` returns its value without suspending


_SETTLED_NONE: Final[Settled[Any]] = Settled(None)


class Failed:
    """A storage call that already failed: awaiting it raises the error."""

    __slots__ = ("_error",)

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def __await__(self) -> Generator[Any, None, Any]:
        raise self._error
        yield  # a generator function, as Settled's


class _NullAsync(AbstractAsyncContextManager[object]):
    async def __aexit__(self, *exc: object) -> None:
        return None


_NULL_ASYNC = _NullAsync()


class DurableObjectTransaction:
    """The ``txn`` handed to a ``transaction()`` closure."""

    def __init__(self, storage: DurableObjectStorage, savepoint: str) -> None:
        self._storage = storage
        self._savepoint = savepoint
        self._rolled_back = False
        self._finished = False

    def _check(self, method: str) -> None:
        if self._rolled_back:
            raise TransactionClosedError(f"Cannot {method}() on rolled back transaction")
        if self._finished:
            raise TransactionClosedError(
                f"Cannot {method}() on a transaction that has already completed"
            )

    def _finish(self) -> None:
        self._finished = True

    def rollback(self) -> None:
        """Undo every write made in this transaction; later calls on it raise."""
        self._check("rollback")
        self._storage._txn.savepoint_rollback(self._savepoint)
        self._rolled_back = True

    def _open(self, method: str) -> Failed | None:
        """None while the transaction takes calls; else the failed awaitable to return."""
        try:
            self._check(method)
        except TransactionClosedError as exc:
            return Failed(exc)
        return None

    # Each call runs now, like ``ctx.storage``'s (see ``DurableObjectStorage._call``).

    def get(
        self, keys: str | Sequence[str], options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[Any]:
        return self._open("get") or self._storage.get(keys, options, **kwargs)

    def put(
        self,
        key_or_entries: str | Mapping[str, Any],
        value: Any = _MISSING,
        options: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> Awaitable[None]:
        return self._open("put") or self._storage.put(key_or_entries, value, options, **kwargs)

    def delete(
        self, keys: str | Sequence[str], options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[bool | int]:
        return self._open("delete") or self._storage.delete(keys, options, **kwargs)

    def list(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[dict[str, Any]]:
        return self._open("list") or self._storage.list(options, **kwargs)

    def deleteAll(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Awaitable[None]:
        """Refused, as on Cloudflare (where it throws at the call)."""
        raise DeleteAllInTransactionError(_DELETE_ALL_IN_TRANSACTION)

    def getAlarm(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[int | None]:
        return self._open("getAlarm") or self._storage.getAlarm(options, **kwargs)

    def setAlarm(
        self,
        scheduled_time: datetime | int | float,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[None]:
        return self._open("setAlarm") or self._storage.setAlarm(scheduled_time, options, **kwargs)

    def deleteAlarm(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Awaitable[None]:
        return self._open("deleteAlarm") or self._storage.deleteAlarm(options, **kwargs)

    delete_all = deleteAll
    get_alarm = getAlarm
    set_alarm = setAlarm
    delete_alarm = deleteAlarm


class SyncKvStorage:
    """``ctx.storage.kv``: Cloudflare's synchronous KV API for SQLite-backed objects."""

    __slots__ = ("_storage",)

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage

    def get(self, key: str) -> Any:
        """The value stored under ``key``, or None."""
        if not isinstance(key, str):
            raise TypeError(f"storage keys must be str, not {type(key).__name__!r}")
        self._storage._txn.check_exclusive()
        return self._storage._get(key)

    def put(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"storage keys must be str, not {type(key).__name__!r}")
        self._storage._txn.check_exclusive()
        self._storage._put(key, value, True)

    def delete(self, key: str) -> bool:
        if not isinstance(key, str):
            raise TypeError(f"storage keys must be str, not {type(key).__name__!r}")
        self._storage._txn.check_exclusive()
        return bool(self._storage._delete(key, True))

    def list(
        self, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Iterator[tuple[str, Any]]:
        """``(key, value)`` pairs in key order, with ``list()``'s options."""
        opts = _options("list", _LIST_OPTIONS, options, kwargs)
        self._storage._txn.check_exclusive()
        return ((key, decode(blob)) for key, blob in self._storage._list(opts))
