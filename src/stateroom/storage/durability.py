"""Making committed writes durable off the event loop.

Each object's SQLite database runs in WAL mode with ``synchronous=NORMAL``: ``COMMIT``
appends the transaction's frames to the ``-wal`` file and returns without an fsync. The
fsync that makes them durable runs here, on a small thread pool, so the event loop goes
on serving every other object meanwhile (an fsync here takes 0.3 to 1 ms, and used to run
on the loop for every commit of every object). The output gate holds whatever depends on
a commit until its future here is done.

A file has at most one fsync in flight: commits made while it runs wait for the next
one, which covers all of them (a group commit per object). Different objects' files are
synced in parallel. A new database file, or a ``-wal`` file created since the store was
opened, is durable only once its directory entry is, so the first sync after an open
also syncs the directories that gained an entry.

Without a running event loop (a script, a synchronous test) the sync runs inline.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["FileSync", "sync_files"]

logger = logging.getLogger(__name__)


def sync_files(wal: Path, directories: list[Path]) -> None:
    """fsync ``directories``, then ``wal`` (if it exists: SQLite deletes it on close,
    after a checkpoint that synced its content into the database file)."""
    for directory in directories:
        _fsync_dir(directory)
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class FileSync:
    """The durability of one object's database: fsyncs in commit order, coalesced."""

    __slots__ = ("_directories", "_executor", "_next", "_running", "_wal")

    def __init__(self, executor: ThreadPoolExecutor, wal: Path, directories: list[Path]) -> None:
        self._executor = executor
        self._wal = wal
        self._directories = directories  # synced by the next sync, then forgotten
        self._next: asyncio.Future[None] | None = None  # the sync that will cover new commits
        self._running = False

    def after_commit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future done once everything committed so far is durable (or failed to be)."""
        durable = self._next
        if durable is None:
            durable = self._next = loop.create_future()
            if not self._running:
                self._start(loop)
        return durable

    def sync_now(self) -> None:
        """Make everything committed so far durable before returning (no event loop)."""
        directories, self._directories = self._directories, []
        sync_files(self._wal, directories)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        done, self._next = self._next, None
        assert done is not None
        self._running = True
        directories, self._directories = self._directories, []
        work = loop.run_in_executor(self._executor, sync_files, self._wal, directories)
        work.add_done_callback(lambda w: self._finished(loop, w, done, directories))

    def _finished(
        self,
        loop: asyncio.AbstractEventLoop,
        work: asyncio.Future[None],
        done: asyncio.Future[None],
        directories: list[Path],
    ) -> None:
        self._running = False
        exc = None if work.cancelled() else work.exception()
        if work.cancelled():
            exc = RuntimeError("the storage sync was cancelled (the server is stopping)")
        if exc is not None:
            self._directories = directories + self._directories  # not known to be durable
            logger.error("fsync of %s failed: %s", self._wal, exc)
            if not done.done():
                done.set_exception(exc)
        elif not done.done():
            done.set_result(None)
        if self._next is not None:
            self._start(loop)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of directory %s not supported", directory)
    finally:
        os.close(fd)
