"""Automatic write coalescing: one transaction per event-loop turn.

Cloudflare: "If you invoke put() (or delete()) multiple times without
performing any await in the meantime, the operations will automatically be
combined and submitted atomically." This module implements that rule for any
``ObjectStore``:

* The first storage operation that may write opens a transaction on the store
  (``begin()``) and schedules exactly one commit, by default with
  ``loop.call_soon``: the callback runs after everything already runnable in
  this turn, so every write made before the object next waits on real I/O
  lands in the same transaction.
* The commit callback runs ``COMMIT``. A store that is durable when ``commit()``
  returns (an fsync per commit) finishes the batch at once; a store backed by
  the commit log returns a ``Pending`` record instead, and the batch finishes
  when the log has made it durable, while the object runs on and the next
  batch opens. Finishing releases the batch's write token on the write tracker
  (the output gate), so responses and WebSocket messages produced after the
  writes leave only now, and ``flush()`` waiters wake.
* If ``COMMIT`` fails (disk full, I/O error) or the engine rolled the
  transaction back on its own, writes the object already acted upon are gone.
  The store is rolled back, the tracker is told (held outputs are discarded),
  ``on_broken`` fires, and every later operation raises
  ``StorageBrokenError``: the runtime must reset the object.

Explicit transactions (``transaction()``, ``transactionSync()``) are
savepoints inside the implicit transaction. A commit that comes due while one
is open waits until it ends.

Without a running event loop (a synchronous test, a script) there are no
turns: each operation commits before it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from stateroom.storage.backend import ObjectStore
from stateroom.storage.errors import StorageBrokenError, TransactionBusyError
from stateroom.storage.log import Pending

__all__ = ["CommitScheduler", "ImplicitTransaction", "WriteTracker"]

logger = logging.getLogger(__name__)

CommitScheduler = Callable[[Callable[[], None]], object]
"""Runs the given callback once, later in this event-loop turn (default: ``loop.call_soon``)."""


class WriteTracker(Protocol):
    """What the storage layer tells the output gate (``OutputGate`` implements this)."""

    def begin_write(self) -> int:
        """A write that outputs must wait for has started; returns its token."""
        ...

    def write_done(self, token: int) -> None:
        """The write is durable."""
        ...

    def write_failed(self, token: int, exc: BaseException) -> None:
        """The write is lost; outputs that waited for it must never leave."""
        ...


class ImplicitTransaction:
    """Groups an object's writes into durable batches (see the module docstring)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        write_tracker: WriteTracker | None = None,
        schedule_commit: CommitScheduler | None = None,
        on_broken: Callable[[StorageBrokenError], None] | None = None,
    ) -> None:
        # The task of an open async transaction(): other tasks' storage calls wait or fail.
        self.exclusive_owner: asyncio.Task[Any] | None = None
        self._store = store
        self._tracker = write_tracker
        self._scheduler = schedule_commit
        self._on_broken = on_broken
        self._broken: StorageBrokenError | None = None
        self._open = False  # we began a transaction that is not committed yet
        self._commit_scheduled = False
        self._immediate = False  # no event loop: commit at the end of the operation
        self._dirty = False  # the open batch holds writes
        self._token: int | None = None  # write-tracker token of the open batch
        self._waiters: list[asyncio.Future[None]] = []
        self._post_commit: list[Callable[[], None]] = []
        self._depth = 0  # open savepoints (explicit transactions)
        self._deferred = False  # a commit came due while a savepoint was open
        # Committed batches the log has not made durable yet, and the newest of them.
        self._inflight = 0
        self._last_pending: Pending | None = None
        self._after_durable = False  # a commit came due while the last batch was in flight
        # The object's name, stored with its first batch that writes (for tools, and
        # for ctx.id.name of an object an alarm wakes after a restart).
        self.name_to_store: str | None = None

    # -- state the runtime reads ---------------------------------------------

    @property
    def broken(self) -> StorageBrokenError | None:
        """The failure that broke storage, or None."""
        return self._broken

    @property
    def commit_pending(self) -> bool:
        """Whether writes exist that are not yet durable."""
        return self._dirty or self._inflight > 0

    @property
    def in_explicit_transaction(self) -> bool:
        return self._depth > 0

    def check(self) -> None:
        """Raise ``StorageBrokenError`` if a commit has failed."""
        if self._broken is not None:
            raise StorageBrokenError(str(self._broken)) from self._broken

    # -- operations ----------------------------------------------------------

    @contextmanager
    def operation(
        self, *, write: bool = False, confirmed: bool = True, begin: bool = True
    ) -> Iterator[None]:
        """Bracket one storage call.

        ``begin``: the call needs the implicit transaction (anything that may
        write). ``write``: it certainly writes (``note_write()`` can also be
        called from inside, once a statement turns out to have written).
        ``confirmed=False`` is ``allowUnconfirmed``: outputs need not wait.
        """
        if self._broken is not None:
            self.check()
        if begin:
            self._ensure_open()
        if write:
            self.note_write(confirmed)
        try:
            yield
        except BaseException:
            self._after_error()
            raise
        finally:
            if self._immediate and self._depth == 0 and self._commit_scheduled:
                self._commit_due()

    def check_exclusive(self) -> None:
        """Synchronous APIs cannot wait for another event's open ``transaction()``."""
        owner = self.exclusive_owner
        if owner is not None and owner is not asyncio.current_task():
            raise TransactionBusyError(
                "another event's transaction() is in progress on this object: await a "
                "storage call (which waits for it) before using the synchronous APIs"
            )

    def note_write(self, confirmed: bool = True) -> None:
        """Record that the open batch now holds a write."""
        self._dirty = True
        if confirmed and self._token is None and self._tracker is not None:
            self._token = self._tracker.begin_write()

    def add_post_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the open batch is durable (not if it fails)."""
        self._post_commit.append(callback)

    def _ensure_open(self) -> None:
        if not self._open:
            self._store.begin()
            self._open = True
        if not self._commit_scheduled and self._depth == 0:
            self._schedule()

    def _schedule(self) -> None:
        self._commit_scheduled = True
        if self._scheduler is not None:
            self._scheduler(self._commit_due)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._immediate = True
            return
        loop.call_soon(self._commit_due)

    def _after_error(self) -> None:
        # SQLite rolls a transaction back by itself on some errors (SQLITE_FULL,
        # SQLITE_IOERR...). If ours vanished, earlier writes of this batch did too.
        if self._open and self._broken is None and not self._store.in_transaction:
            self._fail(StorageBrokenError("the storage engine aborted the open transaction"))

    # -- savepoints ------------------------------------------------------------

    def savepoint_begin(self) -> str:
        """Open a savepoint for an explicit transaction; returns its name."""
        self.check()
        self._ensure_open()
        self._depth += 1
        name = f"_stateroom_sp{self._depth}"
        try:
            self._store.savepoint(name)
        except BaseException:
            self._depth -= 1
            self._after_error()
            raise
        return name

    def savepoint_rollback(self, name: str) -> None:
        """Undo the savepoint's changes, keeping it open."""
        self.check()
        try:
            self._store.rollback_to(name)
        except BaseException:
            self._after_error()
            raise

    def savepoint_end(self, name: str, *, rollback: bool) -> None:
        """Close the savepoint, undoing its changes first if ``rollback``."""
        try:
            if self._broken is None:
                if rollback:
                    self._store.rollback_to(name)
                self._store.release(name)
        except BaseException:
            self._after_error()
            raise
        finally:
            self._depth -= 1
            if self._depth == 0 and self._broken is None:
                if self._deferred:
                    self._deferred = False
                    self._schedule()
                if self._immediate and self._commit_scheduled:
                    self._commit_due()

    # -- commit --------------------------------------------------------------------

    def _commit_due(self) -> None:
        last = self._last_pending
        if last is not None and not last.done and not self._immediate:
            # The previous batch is still on its way to the log: commit when it lands.
            # Outputs of this batch could not leave before it anyway, and writes made
            # meanwhile join this batch (fewer, larger records: group commit per object).
            self._after_durable = True
            return
        self._commit_scheduled = False
        self._immediate = False
        if self._broken is not None:
            return
        if self._depth > 0:
            self._deferred = True
            return
        self._commit(raise_errors=False)

    def commit_now(self) -> None:
        """Commit the open batch right away (for shutdown or hibernation).

        Raises ``StorageBrokenError`` if the commit fails (the object is then
        broken, as with a failed automatic commit).
        """
        self.check()
        if self._depth > 0:
            raise RuntimeError("cannot commit while transaction() is still running")
        self._commit(raise_errors=True)

    def _commit(self, *, raise_errors: bool) -> None:
        if not self._open:
            self._finish_batch()
            return
        pending: Pending | None = None
        try:
            if self._store.in_transaction:
                name = self.name_to_store
                if name is not None and self._dirty:
                    self.name_to_store = None
                    self._store.set_name(name)
                pending = self._store.commit()
            elif self._dirty:
                raise StorageBrokenError("the storage engine aborted the open transaction")
        except BaseException as exc:
            self._fail(exc)
            if raise_errors:
                self.check()
            return
        self._open = False
        if pending is None or (pending.done and pending.error is None):
            self._finish_batch()
            return
        # Durable later: the batch's token, waiters and callbacks wait for the log.
        token, self._token = self._token, None
        self._dirty = False
        waiters, self._waiters = self._waiters, []
        callbacks, self._post_commit = self._post_commit, []
        self._inflight += 1
        self._last_pending = pending

        def settled(error: BaseException | None) -> None:
            self._inflight -= 1
            if self._last_pending is pending:
                self._last_pending = None
            if error is not None:
                self._fail(error)  # later batches depended on this one: they fail too
                broken = self._broken
                assert broken is not None
                if token is not None and self._tracker is not None:
                    self._tracker.write_failed(token, broken)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(broken)
                return
            self._settle(token, waiters, callbacks)
            if self._after_durable and self._last_pending is None:
                self._after_durable = False
                self._commit_due()

        pending.add_callback(settled)

    def _finish_batch(self) -> None:
        token, self._token = self._token, None
        self._dirty = False
        waiters, self._waiters = self._waiters, []
        callbacks, self._post_commit = self._post_commit, []
        self._settle(token, waiters, callbacks)

    def _settle(
        self,
        token: int | None,
        waiters: list[asyncio.Future[None]],
        callbacks: list[Callable[[], None]],
    ) -> None:
        if token is not None and self._tracker is not None:
            self._tracker.write_done(token)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("post-commit callback failed")

    def _fail(self, exc: BaseException) -> None:
        if self._broken is not None:
            return
        if isinstance(exc, StorageBrokenError):
            broken = exc
        else:
            broken = StorageBrokenError(f"commit failed; the object must be reset: {exc!r}")
            broken.__cause__ = exc
        self._broken = broken
        logger.error("storage of object %s broke: %s", self._store.object_id, broken)
        self._open = False
        self._dirty = False
        try:
            if self._store.in_transaction:
                self._store.rollback()
        except Exception:
            logger.warning("rollback after failed commit also failed", exc_info=True)
        token, self._token = self._token, None
        waiters, self._waiters = self._waiters, []
        self._post_commit = []
        if token is not None and self._tracker is not None:
            self._tracker.write_failed(token, broken)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(broken)
        if self._on_broken is not None:
            try:
                self._on_broken(broken)
            except Exception:
                logger.exception("on_broken callback failed")

    async def flush(self) -> None:
        """Wait until every write made so far is durable.

        Raises ``StorageBrokenError`` if the commit fails. Returns at once when
        nothing is pending. Inside ``transaction()`` it waits for the commit
        that follows the transaction, so do not await it there.
        """
        self.check()
        waiter = asyncio.get_running_loop().create_future()
        if self._open:
            if not self._commit_scheduled and self._depth == 0:
                self._schedule()
            self._waiters.append(waiter)
        elif self._last_pending is not None:
            last = self._last_pending
            last.add_callback(
                lambda error: (
                    None
                    if waiter.done()
                    else waiter.set_result(None)
                    if error is None
                    else waiter.set_exception(
                        self._broken if self._broken is not None else StorageBrokenError(str(error))
                    )
                )
            )
        else:
            return
        await waiter

    def close(self, *, commit: bool = True) -> None:
        """Commit (or, with ``commit=False``, abandon) the open batch and close the store."""
        try:
            if commit and self._broken is None and self._open and self._depth == 0:
                self._commit(raise_errors=False)
        finally:
            self._store.close()
