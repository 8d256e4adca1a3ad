"""The contract between ``ctx.storage`` and the engine that holds the bytes.

``DurableObjectStorage`` (the user-facing API, ``kv.py`` and ``sql.py``) owns
the semantics: value encoding, limits, write coalescing, gates. A
``StorageBackend`` owns durability: it opens one ``ObjectStore`` per object
and executes primitive operations on it. The embedded default is
``stateroom.storage.sqlite.SqliteBackend`` (one SQLite file per object).

What a backend must guarantee
-----------------------------

* **Synchronous operations.** Every method returns when done. Cloudflare's
  SQL API is synchronous (``sql.exec()`` returns rows, not a promise), so the
  storage an object sees has to answer without the event loop turning. A
  networked backend therefore needs the object's working set local, e.g. an
  embedded SQLite per object whose committed pages or WAL frames it ships to
  PostgreSQL/S3 in ``commit()``, which is how Cloudflare does it.
* **One writer.** A store is used by exactly one live object instance and is
  never called from two threads at once. ``open()`` must refuse a second open
  of an object that is already open anywhere (``StoreInUseError``).
* **Transactions.** ``begin()`` starts a transaction; everything until
  ``commit()`` or ``rollback()`` is atomic. Savepoints nest inside it. Reads
  inside a transaction see its own uncommitted writes.
* **Durability on commit.** When ``commit()`` returns None, or once the
  ``Pending`` it returns completes, the transaction survives process death
  (``kill -9``) and power loss. If it raises, the transaction may
  or may not have become durable, and the caller treats the object as broken.
* **Key order.** KV keys compare by their UTF-8 bytes (Cloudflare's order),
  which is also code point order.
* **SQL dialect.** ``sql_exec()`` runs SQLite SQL, with names starting with
  ``_cf_`` or ``_stateroom_`` (any case) reserved for the runtime and refused
  to user statements, and transaction statements refused (``transaction()``
  and ``transactionSync()`` are the API for those). A backend without an SQL
  engine raises ``NotImplementedError`` from ``sql_exec()``; KV and alarms
  still work.
* **Alarm persistence.** The alarm time is stored in the same transaction as
  the data, so ``setAlarm()`` coalesces with the writes around it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stateroom.storage.log import Pending

__all__ = [
    "RESERVED_PREFIXES",
    "ListQuery",
    "ObjectStore",
    "SqlResult",
    "SqlValue",
    "StorageBackend",
    "is_reserved_name",
]

SqlValue = int | float | str | bytes | None
"""What a SQL column holds, and what a binding may be (``bool`` binds as int)."""

RESERVED_PREFIXES: tuple[str, ...] = ("_cf_", "_stateroom_")
"""Table/index/trigger/view name prefixes user SQL may not touch (compared
case-insensitively, because SQLite names are)."""


def is_reserved_name(name: str) -> bool:
    """Whether ``name`` belongs to the runtime rather than to user SQL."""
    return name.lower().startswith(RESERVED_PREFIXES)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated ``list()`` request; bounds compare as UTF-8 bytes.

    ``start`` is inclusive, ``start_after`` exclusive (never both), ``end``
    exclusive; ``prefix`` narrows further. ``reverse`` flips the order but
    not the meaning of the bounds (as in Cloudflare). ``limit`` is positive or
    ``None`` for all.
    """

    start: str | None = None
    start_after: str | None = None
    end: str | None = None
    prefix: str | None = None
    reverse: bool = False
    limit: int | None = None


@dataclass(slots=True)
class SqlResult:
    """Everything one ``sql_exec()`` call produced, fully read.

    ``rows`` holds the last statement's rows as tuples in ``column_names``
    order. ``rows_written`` counts rows inserted, updated or deleted by all
    statements; ``rows_read`` approximates Cloudflare's billing counter (rows
    returned plus rows written). ``wrote`` is True when the call may have
    changed durable state (including schema), which is what decides whether
    outputs must wait for a commit.
    """

    column_names: list[str]
    rows: list[tuple[SqlValue, ...]] = field(default_factory=list)
    rows_read: int = 0
    rows_written: int = 0
    wrote: bool = False


class ObjectStore(ABC):
    """The storage of one Durable Object (see the module docstring for the contract)."""

    namespace: str
    object_id: str

    # -- transactions -------------------------------------------------------

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether a transaction begun with ``begin()`` is still open.

        Must reflect the engine's real state: after an engine-side automatic
        rollback (disk full, I/O error) it is False even though no
        ``rollback()`` was called, which is how lost writes are detected.
        """

    @abstractmethod
    def begin(self) -> None:
        """Start a transaction (it may start as a read and become a write)."""

    @abstractmethod
    def commit(self) -> Pending | None:
        """Commit the open transaction.

        Returns None once it is durable, or, for a store backed by a commit log,
        the log's ``Pending`` record: the commit is visible to this store at once
        and durable when the record completes (nothing that depends on it may
        leave the object before that).
        """

    @abstractmethod
    def rollback(self) -> None:
        """Abandon the open transaction."""

    @abstractmethod
    def savepoint(self, name: str) -> None:
        """Open a nested savepoint inside the current transaction."""

    @abstractmethod
    def release(self, name: str) -> None:
        """Fold the savepoint (and any nested inside it) into its parent."""

    @abstractmethod
    def rollback_to(self, name: str) -> None:
        """Undo everything since ``savepoint(name)``; the savepoint stays open."""

    # -- key-value ----------------------------------------------------------

    @abstractmethod
    def kv_get(self, key: str) -> bytes | None:
        """The stored bytes for ``key``, or None."""

    @abstractmethod
    def kv_get_many(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        """The found ``(key, value)`` pairs of ``keys``, in key order."""

    @abstractmethod
    def kv_put(self, key: str, value: bytes) -> None:
        """Insert or replace one pair."""

    @abstractmethod
    def kv_put_many(self, entries: Sequence[tuple[str, bytes]]) -> None:
        """Insert or replace several pairs (later duplicates win)."""

    @abstractmethod
    def kv_delete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""

    @abstractmethod
    def kv_delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; how many existed (each distinct key counted once)."""

    @abstractmethod
    def kv_list(self, query: ListQuery) -> list[tuple[str, bytes]]:
        """Pairs in ``query``'s range, in (reverse) key order, at most ``limit``."""

    @abstractmethod
    def delete_all(self, *, include_alarm: bool) -> None:
        """Delete every KV pair and every user SQL table, index, view and trigger.

        With ``include_alarm`` the alarm is cleared too (Cloudflare's behaviour
        from compatibility date 2026-02-24). Runs inside the open transaction,
        so it is atomic with the writes around it.
        """

    # -- SQL ----------------------------------------------------------------

    @abstractmethod
    def sql_exec(self, query: str, bindings: Sequence[object]) -> SqlResult:
        """Run user SQL (possibly several statements; bindings go to the last).

        ``bindings`` are as the user passed them: the store converts them
        (``bool`` to int, ``bytearray`` to bytes) and raises ``TypeError`` or
        ``ValueError`` for values SQL cannot hold.

        Must be called inside a transaction (the caller opens one first, as the
        statement may write). Raises ``SqlError`` subclasses.
        """

    @property
    @abstractmethod
    def database_size(self) -> int:
        """Bytes the object's data occupies (``sql.databaseSize``)."""

    # -- alarm --------------------------------------------------------------

    @abstractmethod
    def get_alarm(self) -> int | None:
        """The scheduled alarm, in milliseconds since the epoch, or None."""

    @abstractmethod
    def set_alarm(self, when_ms: int | None) -> None:
        """Store (or with None, clear) the alarm time."""

    # -- point-in-time recovery ----------------------------------------------

    async def current_bookmark(self) -> str:
        """A bookmark of the object's durable state now (``getCurrentBookmark``)."""
        from stateroom.storage.log import NO_HISTORY, NoHistoryError

        raise NoHistoryError(NO_HISTORY)

    async def bookmark_for_time(self, when_ms: int) -> str:
        """The bookmark of the object's state at ``when_ms`` (``getBookmarkForTime``)."""
        from stateroom.storage.log import NO_HISTORY, NoHistoryError

        raise NoHistoryError(NO_HISTORY)

    async def restore_on_next_session(self, bookmark: str) -> str:
        """Start the object's next activation from ``bookmark``; the undo bookmark."""
        from stateroom.storage.log import NO_HISTORY, NoHistoryError

        raise NoHistoryError(NO_HISTORY)

    # -- name ---------------------------------------------------------------

    def get_name(self) -> str | None:
        """The name the object was addressed by (``idFromName``), if it was stored."""
        return None

    def set_name(self, name: str) -> None:  # noqa: B027 (optional: names help tools)
        """Store the object's name, inside the open transaction."""

    # -- lifetime -----------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the store. An open transaction is rolled back (not committed)."""


class StorageBackend(ABC):
    """Opens the per-object stores of one server."""

    @abstractmethod
    def open(self, namespace: str, object_id: str) -> ObjectStore:
        """Open (creating if needed) the store of one object.

        ``namespace`` names the Durable Object class or namespace (a safe path
        component); ``object_id`` is the object's id in lowercase hex.
        """

    def prepare(self, namespace: str, object_id: str) -> Awaitable[None] | None:
        """What must finish before the object's instance is constructed, or None.

        A backend whose durable copy is elsewhere (a remote commit log) fences the
        object's previous activation and restores its data here; the local default
        has nothing to do. The runtime awaits the result before the constructor.
        """
        return None

    def stored_alarms(self, namespace: str) -> list[tuple[str, int, str | None]] | None:
        """(object id, alarm ms, name) of every object of ``namespace`` with an alarm, if
        the backend keeps them apart; None: open each stored object to read its alarm."""
        return None

    def release(self, namespace: str, object_id: str) -> None:  # noqa: B027 (optional)
        """The object's activation ended (reset or evicted, not hibernated): the next one
        prepares again (a remote log fences this one and restores)."""

    @abstractmethod
    def stored_objects(self, namespace: str) -> list[str]:
        """Ids (lowercase hex) of the objects of ``namespace`` that have stored data."""

    @abstractmethod
    def rename_namespace(self, old: str, new: str) -> bool:
        """Give ``old``'s stored objects to ``new`` (a ``renamed_classes`` migration).

        Only if ``old`` has data and ``new`` has none; returns whether anything moved.
        Called at start-up, before any store of either namespace is open.
        """

    @abstractmethod
    def delete_namespace(self, namespace: str) -> int:
        """Delete every stored object of ``namespace`` (a ``deleted_classes`` migration);
        returns how many there were. Called at start-up, before any of its stores is open.
        """

    @abstractmethod
    def close(self) -> None:
        """Close every store this backend opened."""
