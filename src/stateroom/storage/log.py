"""The commit log: where an object's write becomes durable, for every object at once.

Each object keeps its data in its own SQLite database, written without an fsync of
its own (``synchronous=OFF``). What makes a commit durable is a *record* in a log
shared by every object of the server: the commit's WAL frames (full page images,
see ``wal.py``), tagged with the object and the epoch of its activation. The log
flushes in groups: one fsync (locally) or one transaction (PostgreSQL) covers the
records of every object that arrived meanwhile, and each object's records keep
their order. Until its record is durable, nothing that depends on a commit leaves
the object: ``ImplicitTransaction`` holds the output gate on the ``Pending``
handle ``append()`` returns.

Two implementations: ``local_log.LocalCommitLog`` (the embedded default: segment
files beside the data, a writer thread off the event loop) and
``postgres_log.PostgresCommitLog`` (records, snapshots and epochs in PostgreSQL).

Epochs fence activations. ``acquire()`` gives a new activation an epoch greater
than any before it; a store whose records carry a superseded epoch has them
refused (``FencedError``), and the object must be reset at once: another
activation owns it now.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from stateroom.storage.errors import StorageError

__all__ = [
    "NO_HISTORY",
    "CommitLog",
    "FencedError",
    "LogRecord",
    "LogUnavailableError",
    "NoHistoryError",
    "Pending",
    "Restored",
    "both",
]

logger = logging.getLogger(__name__)


class FencedError(StorageError):
    """The record's activation was superseded: another activation of the object took
    a newer epoch, so this one may not write any more (it must reset at once)."""


NO_HISTORY = (
    "point-in-time recovery needs a store that keeps history: run with --storage "
    "postgresql://… (the local store keeps no history yet)"
)


class NoHistoryError(StorageError):
    """The store keeps no history to recover from (bookmarks are not available)."""


class LogUnavailableError(StorageError):
    """The log could not make the record durable (disk full, I/O error, database
    unreachable). Retryable: the write was not acknowledged and nothing that depended
    on it left the object."""

    retryable = True


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One commit of one object: its WAL frames, as ``wal.py`` captured them.

    ``frames`` is the raw WAL byte range of the commit (24-byte frame headers and
    pages, ending in a commit frame); ``page_size`` is the database's.
    """

    namespace: str
    object_id: str
    epoch: int
    page_size: int
    frames: bytes


@dataclass(frozen=True, slots=True)
class Restored:
    """What a remote log holds of an object: the newest snapshot (a whole database
    image, or empty for none) and every record after it, in order."""

    snapshot: bytes
    records: list[LogRecord]


class Pending:
    """Completion of one appended record: durable, or failed with a reason.

    Callbacks run on the event loop's thread, in append order per object, exactly
    once. Adding a callback after completion runs it at once.
    """

    __slots__ = ("_callbacks", "done", "error", "position")

    def __init__(self) -> None:
        # Where the record sits in the log (what checkpoints compare), or -1.
        self.position = -1
        self.done = False
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[BaseException | None], None]] = []

    def add_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        """``callback(None)`` once durable, ``callback(exc)`` if the record is lost."""
        if self.done:
            callback(self.error)
        else:
            self._callbacks.append(callback)

    def resolve(self, error: BaseException | None = None) -> None:
        """Complete the record (the log calls this on the loop's thread)."""
        if self.done:
            return
        self.done = True
        self.error = error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                logger.exception("a commit-log completion callback failed")


class CommitLog(ABC):
    """Durability for every object's commits, flushed in groups (module docstring)."""

    @abstractmethod
    def append(self, record: LogRecord) -> Pending:
        """Queue ``record`` for the next group flush and return at once.

        Called on the event loop's thread. Records of one object become durable
        in the order they were appended.
        """

    @abstractmethod
    async def acquire(self, namespace: str, object_id: str) -> int:
        """Start an activation of the object: an epoch newer than every earlier one.

        Records carrying an older epoch are refused from now on (``FencedError``).
        Must be durable before it returns, so that a superseded activation cannot
        write after its successor has read the object's state.
        """

    @abstractmethod
    async def restore(self, namespace: str, object_id: str) -> Restored | None:
        """The object's durable state, for a machine whose local copy is missing or
        stale; ``None`` when this log keeps no history (the local files are it)."""

    # -- alarms (a log whose objects have no local files to scan at start) ------------

    def note_alarm(
        self, namespace: str, object_id: str, epoch: int, when_ms: int | None, name: str | None
    ) -> Pending | None:
        """Record the object's committed alarm where a restarted server finds it (a remote
        log); the commit that set it is acknowledged only once this is durable too."""
        return None

    def stored_alarms(self, namespace: str) -> list[tuple[str, int, str | None]] | None:
        """(object id, alarm ms, name) of the namespace's objects with an alarm, as loaded
        at start; None when the local files are where alarms are found."""
        return None

    # -- point-in-time recovery (a log that keeps history) --------------------------

    async def current_position(self, namespace: str, object_id: str) -> int:
        """Where the object's history is now (after its durable records)."""
        raise NoHistoryError(NO_HISTORY)

    async def position_at(self, namespace: str, object_id: str, when_ms: int) -> int:
        """Where the object's history was at ``when_ms`` (ms since the epoch)."""
        raise NoHistoryError(NO_HISTORY)

    async def request_restore(self, namespace: str, object_id: str, position: int) -> int:
        """Make the object's next activation start from ``position``; returns the
        position it is at now (to undo with)."""
        raise NoHistoryError(NO_HISTORY)

    async def take_restore(self, namespace: str, object_id: str, epoch: int) -> Restored | None:
        """If a restore was requested: the object's state at that position, recorded as
        its newest state (fenced by ``epoch``), and the request cleared; else None."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Flush everything appended, wait until it is durable, and release the log."""

    async def aclose(self) -> None:
        """``close()`` on the event loop (a remote log settles its records there)."""
        self.close()


def both(first: Pending, second: Pending) -> Pending:
    """Completes when both have: durable if both are, else with the first error."""
    joined = Pending()
    joined.position = first.position
    remaining = [2]

    def settled(error: BaseException | None) -> None:
        if error is not None:
            joined.resolve(error)
            return
        remaining[0] -= 1
        if remaining[0] == 0:
            joined.resolve(None)

    first.add_callback(settled)
    second.add_callback(settled)
    return joined
