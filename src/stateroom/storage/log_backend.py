"""The embedded default backend: one SQLite file per object, made durable by one log.

Each object's database is a file as before (``sqlite.py``: same SQL, KV, limits
and errors), but it is written with ``synchronous=OFF``: it never fsyncs. After a
commit, the commit's WAL frames go to the commit log (``log.py``), shared by every
object, which flushes them in groups; the output gate holds whatever depends on
the commit until its record is durable.

Three rules keep every file recoverable from the log:

* **A file only ever holds durable commits, or commits still in its WAL.** The
  WAL is copied into the file (checkpointed) only once every record of it is
  durable: by ``checkpoint()``, and when the connection closes (SQLite
  checkpoints on close, which is why a connection with records in flight stays
  open until they settle).
* **Records after the log's checkpoint position replay onto the files.** A
  global checkpoint syncs the filesystem (``syncfs``: one call, however many
  files) and only then advances that position, past records whose pages are
  in files; on start-up, every record after it is written into its file (full
  page images, so replay is idempotent) and every WAL is deleted: a WAL holds
  either replayed commits or commits that never became durable.
* **A failed record poisons its connection**: the file is restored to its last
  durable state (durable WAL frames applied to a copy) before the connection
  may close, and the object is reset, as on Cloudflare when a write cannot be
  confirmed.

One process owns a data directory (``.lock``); a second gets a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import resource
import shutil
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable
from pathlib import Path

from stateroom.storage.errors import StorageError, StoreInUseError, damaged
from stateroom.storage.local_log import LocalCommitLog
from stateroom.storage.log import CommitLog, LogRecord, Pending, both
from stateroom.storage.sqlite import (
    EMPTY_PAGE_SIZE,
    SqliteBackend,
    SqliteObjectStore,
    _connect,
    _make_dirs,
    empty_database,
    is_damage,
)
from stateroom.storage.wal import WAL_HEADER, WalTail, apply, apply_to_file, image_frames

__all__ = ["LoggedObjectStore", "LoggedSqliteBackend"]

logger = logging.getLogger(__name__)

LOG_DIRECTORY = ".commit-log"  # a dot: no namespace can be named like it
_CHECKPOINT_BYTES = 32 * 1024 * 1024
_CHECKPOINT_INTERVAL = 30.0
_MAX_OPEN = 1024  # open SQLite connections (each ~150 KiB and 3 file descriptors)
_IDLE_CLOSE = 10.0  # seconds an unused connection stays open
_EMPTY_FRAMES = image_frames(empty_database(), EMPTY_PAGE_SIZE)
_TRIM_AFTER = 32  # connections closed in one sweep that make the heap worth trimming
_WAL_CHECKPOINT_BYTES = 256 * 1024  # an object's WAL is copied into its file past this


class _Entry:
    """One object's open connection and what the log has of it."""

    __slots__ = (
        "alarm_changed",
        "base",
        "conn",
        "durable_wal_end",
        "epoch",
        "first_position",
        "inflight",
        "is_new",
        "key",
        "lru",
        "path",
        "poisoned",
        "store",
        "tail",
        "used",
        "wal_dirty",
        "wal_fd",
    )

    def __init__(self, key: tuple[str, str], path: Path, conn: sqlite3.Connection) -> None:
        self.lru: OrderedDict[tuple[str, str], _Entry] | None = None
        self.used = time.monotonic()
        self.key = key
        self.path = path
        self.conn = conn
        self.store: LoggedObjectStore | None = None
        self.tail = WalTail()
        self.wal_fd = -1
        self.epoch = 0
        self.inflight = 0  # records appended, not settled
        self.first_position = -1  # log position of the oldest record not in the file
        self.wal_dirty = False  # the WAL holds frames not checkpointed into the file
        self.durable_wal_end = 0  # WAL offset after the last durable record
        self.poisoned = False  # a record failed: the WAL holds non-durable commits
        self.is_new = False  # the file did not exist before this connection
        self.base = b""  # template pages (as WAL frames) the first record must carry
        self.alarm_changed = False  # set_alarm() since the last record

    def touch(self) -> None:
        """Most recently used: last in the pool's eviction order."""
        lru = self.lru
        if lru is not None:
            lru.move_to_end(self.key)
            self.used = time.monotonic()


class LoggedObjectStore(SqliteObjectStore):
    """An object's SQLite database whose commits the backend's log makes durable.

    Its connection comes from the backend's bounded pool: an idle store may lose it
    (``_detach``) and gets it back, reopened, on its next call.
    """

    _entry: _Entry | None
    _live: sqlite3.Connection | None

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = self._live
        if conn is None:
            backend = self._backend
            assert isinstance(backend, LoggedSqliteBackend)
            conn = backend._reattach(self)
        else:
            entry = self._entry
            if entry is not None:
                entry.touch()
        return conn

    @_conn.setter
    def _conn(self, conn: sqlite3.Connection) -> None:
        self._live = conn

    @property
    def in_transaction(self) -> bool:
        return not self._closed and self._live is not None and self._live.in_transaction

    def close(self) -> None:
        if self._live is None and not self._closed:
            self._closed = True  # detached by the pool: nothing open to roll back
            backend = self._backend
            assert isinstance(backend, LoggedSqliteBackend)
            backend._release(self)
            return
        super().close()

    def commit(self) -> Pending | None:
        self._commit()
        backend = self._backend
        assert isinstance(backend, LoggedSqliteBackend) and self._entry is not None
        return backend._captured(self._entry)

    def set_alarm(self, when_ms: int | None) -> None:
        super().set_alarm(when_ms)
        entry = self._entry
        if entry is not None:
            entry.alarm_changed = True

    # Bookmarks are the log's positions in the object's history, as fixed-width hex:
    # opaque to the application, and ordered as strings the way they are in time.

    def _log(self) -> CommitLog:
        backend = self._backend
        assert isinstance(backend, LoggedSqliteBackend)
        return backend.log

    async def current_bookmark(self) -> str:
        return _bookmark(await self._log().current_position(self.namespace, self.object_id))

    async def bookmark_for_time(self, when_ms: int) -> str:
        position = await self._log().position_at(self.namespace, self.object_id, when_ms)
        return _bookmark(position)

    async def restore_on_next_session(self, bookmark: str) -> str:
        undo = await self._log().request_restore(
            self.namespace, self.object_id, _position(bookmark)
        )
        return _bookmark(undo)


def _bookmark(position: int) -> str:
    return f"{position:016x}"


def _position(bookmark: str) -> int:
    if not isinstance(bookmark, str) or len(bookmark) != 16:
        raise ValueError(f"not a bookmark of this store: {bookmark!r}")
    try:
        return int(bookmark, 16)
    except ValueError:
        raise ValueError(f"not a bookmark of this store: {bookmark!r}") from None


class LoggedSqliteBackend(SqliteBackend):
    """Files per object under ``data_dir``, durability from ``log`` (default: the
    embedded ``LocalCommitLog`` in ``data_dir/log``). See the module docstring."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        log: CommitLog | None = None,
        checkpoint_bytes: int = _CHECKPOINT_BYTES,
        checkpoint_interval: float = _CHECKPOINT_INTERVAL,
        max_open: int | None = None,
        idle_close: float = _IDLE_CLOSE,
    ) -> None:
        super().__init__(data_dir)
        # Open connections, least recently used first: at most max_open (3 fds each),
        # and none unused for idle_close seconds (an idle object costs no connection).
        self.max_open = _default_pool() if max_open is None else max_open
        self.idle_close = idle_close
        self._sweeper: asyncio.TimerHandle | None = None
        self._lru: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        assert self.data_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.data_dir)
        self.checkpoint_bytes = checkpoint_bytes
        self.checkpoint_interval = checkpoint_interval
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._dirty_files = False  # files were written since the last global checkpoint
        self._checkpointed = 0  # log position of the last global checkpoint
        self._checkpointing = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed_backend = False
        # Objects this process holds an epoch for (remote logs): their files are current.
        self._epochs: dict[tuple[str, str], int] = {}
        # Preparations waiting for an earlier activation's connection to close.
        self._gone: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        self._preparing: dict[tuple[str, str], asyncio.Future[None]] = {}
        try:
            if log is None:
                local = LocalCommitLog(self.data_dir / LOG_DIRECTORY)
                self._recover(local)
                local.start()
                log = local
            else:
                # The durable copy is the remote log: local files are a cache, and
                # anything left from an earlier run may be stale.
                for stale in self.data_dir.glob("*/*.sqlite3*"):
                    stale.unlink()
            self.log = log
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.remote = not isinstance(log, LocalCommitLog)

    # -- recovery -------------------------------------------------------------------

    def _recover(self, log: LocalCommitLog) -> None:
        assert self.data_dir is not None
        records = log.recover()
        replayed: dict[tuple[str, str], int] = {}
        try:
            for _position, record in records:
                key = (record.namespace, record.object_id)
                fd = replayed.get(key)
                if fd is None:
                    path = self.path_for(*key)
                    _make_dirs(path.parent)
                    _remove(path, "-wal", "-shm")
                    fd = replayed[key] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                apply_to_file(fd, record.frames, record.page_size)
        finally:
            for fd in replayed.values():
                os.close(fd)
        # WALs left by a crash: their commits were either replayed or never durable.
        stale = list(self.data_dir.glob("*/*.sqlite3-wal"))
        for wal in stale:
            wal.unlink()
            Path(str(wal)[: -len("-wal")] + "-shm").unlink(missing_ok=True)
        if records or stale:
            logger.info(
                "recovered %d commits of %d objects from the commit log; dropped %d "
                "unacknowledged WALs",
                len(records),
                len(replayed),
                len(stale),
            )
            _sync_filesystem(self.data_dir)
            log.checkpoint(log.appended)
        self._checkpointed = log.appended

    # -- activation (remote logs) ----------------------------------------------------

    def prepare(self, namespace: str, object_id: str) -> Awaitable[None] | None:
        if not self.remote:
            return None
        key = (namespace, object_id)
        if key in self._epochs:
            return None
        future = self._preparing.get(key)
        if future is None:
            task = asyncio.ensure_future(self._prepare(key))
            self._preparing[key] = task
            task.add_done_callback(lambda _: self._preparing.pop(key, None))
            future = task
        return future

    def stored_alarms(self, namespace: str) -> list[tuple[str, int, str | None]] | None:
        return self.log.stored_alarms(namespace)

    def release(self, namespace: str, object_id: str) -> None:
        # The next activation takes a new epoch (and a restore it may have asked for).
        self._epochs.pop((namespace, object_id), None)

    async def _prepare(self, key: tuple[str, str]) -> None:
        """Fence earlier activations, then rebuild the local file from the log."""
        epoch = await self.log.acquire(*key)
        # A restore asked for with onNextSessionRestoreBookmark() takes effect now.
        restored = await self.log.take_restore(*key, epoch)
        if restored is None:
            restored = await self.log.restore(*key)
        path = self.path_for(*key)

        def rebuild() -> None:
            _make_dirs(path.parent)
            _remove(path, "-wal", "-shm")
            if restored is None or (not restored.snapshot and not restored.records):
                path.unlink(missing_ok=True)
                return
            image = bytearray(restored.snapshot)
            for record in restored.records:
                apply(image, record.frames, record.page_size)
            tmp = path.with_name(path.name + ".restore")
            tmp.write_bytes(image)
            os.replace(tmp, path)

        while (entry := self._entries.get(key)) is not None:
            if entry.store is not None:
                raise StoreInUseError(f"object {key[0]}/{key[1]} is open while being restored")
            # The previous activation's last records are still settling: its file is
            # rebuilt once they have (and its connection is closed).
            gone = asyncio.get_running_loop().create_future()
            self._gone.setdefault(key, []).append(gone)
            await gone
        await asyncio.get_running_loop().run_in_executor(None, rebuild)
        self._epochs[key] = epoch

    # -- opening and closing -------------------------------------------------------

    def open(self, namespace: str, object_id: str) -> LoggedObjectStore:
        if self._closed_backend:
            raise StorageError("the storage backend is closed")
        key = (namespace, object_id)
        if key in self._open:
            raise StoreInUseError(f"object {namespace}/{object_id} is already open")
        entry = self._entries.get(key)
        if entry is not None and entry.poisoned:
            self._repair(entry)
            entry = None
        if entry is None:
            store = LoggedObjectStore.__new__(LoggedObjectStore)
            store._live = None
            store._entry = None
            entry = self._attach(store, namespace, object_id)
            SqliteObjectStore.__init__(store, entry.conn, namespace, object_id, backend=self)
            if entry.is_new:
                # The new file's pages are logged at once, written or not, so the log alone
                # can always rebuild it.
                self._captured(entry)
        else:
            store = LoggedObjectStore.__new__(LoggedObjectStore)
            store._live = None
            store._entry = None
            SqliteObjectStore.__init__(store, entry.conn, namespace, object_id, backend=self)
            store._entry = entry
            entry.store = store
            entry.touch()
        self._open[key] = store
        return store

    def _attach(self, store: LoggedObjectStore, namespace: str, object_id: str) -> _Entry:
        """Open the object's connection (making room in the pool) and bind it to ``store``."""
        key = (namespace, object_id)
        self._make_room()
        path = self.path_for(namespace, object_id)
        is_new = not path.exists()
        if is_new:
            _make_dirs(path.parent)
            # A copy of an empty database already in WAL mode with stateroom's marks:
            # much cheaper than letting SQLite create one (its switch to WAL mode alone
            # creates, writes and deletes a rollback journal).
            with open(path, "xb") as file:
                file.write(empty_database())
        epoch = 0
        if self.remote:
            found = self._epochs.get(key)
            if found is None:
                raise StorageError(
                    f"object {namespace}/{object_id} was not prepared: a remote log "
                    "needs backend.prepare() before the object's storage opens"
                )
            epoch = found
        try:
            conn = _connect(str(path), exclusive=True, logged=True)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            if self.remote:
                # Only a cache: drop it; the next activation restores from the log.
                self._epochs.pop(key, None)
                _remove(path, "", "-wal", "-shm")
            raise damaged(path, namespace, object_id, exc, cache=self.remote) from exc
        entry = self._entries[key] = _Entry(key, path, conn)
        entry.epoch = epoch
        entry.is_new = is_new
        if is_new:
            entry.base = _EMPTY_FRAMES
        entry.wal_fd = os.open(f"{path}-wal", os.O_RDONLY | os.O_CREAT, 0o644)
        if is_new:
            self._dirty_files = True
        entry.store = store
        store._entry = entry
        store._live = conn
        entry.lru = self._lru
        self._lru[key] = entry
        if self._sweeper is None and self.idle_close > 0:
            with contextlib.suppress(RuntimeError):  # no loop: nothing sweeps
                self._sweeper = asyncio.get_running_loop().call_later(
                    self.idle_close / 2, self._sweep
                )
        return entry

    def _sweep(self) -> None:
        """Close connections unused for ``idle_close`` seconds."""
        self._sweeper = None
        if self._closed_backend:
            return
        cutoff = time.monotonic() - self.idle_close
        closed = 0
        for entry in list(self._lru.values()):
            if entry.used > cutoff:
                break
            store = entry.store
            if entry.inflight or entry.poisoned or store is None or store.in_transaction:
                continue
            self._detach(entry)
            closed += 1
        if closed >= _TRIM_AFTER:
            # Closed connections free their page caches inside the heap, where glibc keeps
            # them; give them back, or idle objects would still cost their connection's RSS.
            _trim_heap()
        if self._lru:
            self._sweeper = asyncio.get_running_loop().call_later(self.idle_close / 2, self._sweep)

    def _reattach(self, store: LoggedObjectStore) -> sqlite3.Connection:
        """A store whose connection the pool closed is used again: reopen it."""
        if store._closed:
            raise StorageError("the object's storage is closed")
        entry = self._attach(store, store.namespace, store.object_id)
        entry.conn.set_authorizer(store._authorize)
        store._forget_tables()
        return entry.conn

    def _make_room(self, limit: int | None = None) -> None:
        """Close least recently used idle connections until one more fits (or, with
        ``limit``, until at most that many are open)."""
        lru = self._lru
        bound = self.max_open - 1 if limit is None else limit
        if len(lru) <= bound:
            return
        for entry in list(lru.values()):
            if len(lru) <= bound:
                return
            store = entry.store
            if entry.inflight or entry.poisoned or store is None or store.in_transaction:
                continue  # busy: records in flight, or a transaction open
            self._detach(entry)

    def _detach(self, entry: _Entry) -> None:
        """Close an idle store's connection (it reopens on its next call)."""
        store = entry.store
        assert store is not None
        store._live = None
        store._entry = None
        entry.store = None
        self._finish(entry)

    def _release(self, store: SqliteObjectStore) -> None:
        key = (store.namespace, store.object_id)
        if self._open.get(key) is store:
            del self._open[key]
        entry = self._entries.get(key)
        if entry is None or entry.store is not store:
            return
        entry.store = None
        if entry.inflight == 0:
            self._finish(entry)

    def _closed_entry(self, key: tuple[str, str]) -> None:
        for waiter in self._gone.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self, entry: _Entry) -> None:
        """Close a connection no store uses and no record waits for."""
        if entry.poisoned:
            self._repair(entry)
            return
        self._forget(entry)
        self._close_connection(entry)  # checkpoints the WAL: every frame in it is durable
        if entry.wal_dirty:
            self._dirty_files = True

    def _forget(self, entry: _Entry) -> None:
        self._entries.pop(entry.key, None)
        self._lru.pop(entry.key, None)

    def _close_connection(self, entry: _Entry) -> None:
        try:
            entry.conn.close()
        finally:
            os.close(entry.wal_fd)
            self._closed_entry(entry.key)

    def _repair(self, entry: _Entry) -> None:
        """Bring a poisoned object's file back to its last durable commit, and close it."""
        self._forget(entry)
        path = entry.path
        if self.remote:
            # The log has the durable state: drop the cache; the next activation
            # takes a new epoch and restores.
            self._epochs.pop(entry.key, None)
            self._close_connection(entry)
            _remove(path, "", "-wal", "-shm")
            return
        copy = path.with_name(path.name + ".repair")
        try:
            shutil.copyfile(path, copy)
            durable = b""
            if entry.durable_wal_end > WAL_HEADER:
                durable = os.pread(entry.wal_fd, entry.durable_wal_end - WAL_HEADER, WAL_HEADER)
            if durable:
                fd = os.open(copy, os.O_RDWR)
                try:
                    apply_to_file(fd, durable, entry.tail.page_size)
                finally:
                    os.close(fd)
            entry.conn.close()  # checkpoints the lost commits into the original...
            os.replace(copy, path)  # ...which the durable copy now replaces
        finally:
            os.close(entry.wal_fd)
            copy.unlink(missing_ok=True)
            self._closed_entry(entry.key)
        Path(f"{path}-wal").unlink(missing_ok=True)
        self._dirty_files = True
        logger.warning(
            "storage of %s/%s rolled back to its last durable commit after a failed log write",
            *entry.key,
        )

    # -- the log ----------------------------------------------------------------------

    def _captured(self, entry: _Entry) -> Pending | None:
        frames = entry.tail.capture(entry.wal_fd)
        page_size = entry.tail.page_size
        base = entry.base
        if base:
            # A new file starts as a copy of the template, whose pages never went through
            # the WAL: they lead its first record (recovery and restores need them).
            entry.base = b""
            frames = base + frames
            page_size = EMPTY_PAGE_SIZE
        if not frames:
            return None
        entry.wal_dirty = True
        wal_end = entry.tail.offset
        try:
            pending = self.log.append(
                LogRecord(entry.key[0], entry.key[1], entry.epoch, page_size, frames)
            )
        except BaseException:
            entry.poisoned = True
            raise
        entry.inflight += 1
        if entry.first_position < 0:
            entry.first_position = pending.position
        acknowledged = pending
        if entry.alarm_changed:
            entry.alarm_changed = False
            store = entry.store
            if store is not None:
                # The committed alarm (a rolled-back change leaves it as it was).
                noted = self.log.note_alarm(
                    entry.key[0], entry.key[1], entry.epoch, store.get_alarm(), store.get_name()
                )
                if noted is not None:
                    acknowledged = both(pending, noted)

        def settled(error: BaseException | None) -> None:
            entry.inflight -= 1
            if error is not None:
                entry.poisoned = True
            elif not entry.poisoned:
                entry.durable_wal_end = wal_end
            if entry.inflight or entry.key not in self._entries:
                return
            if entry.store is None:
                self._finish(entry)
            elif len(self._lru) > self.max_open:
                self._make_room(self.max_open)  # over the bound while this one was busy
            elif (
                entry.tail.offset >= _WAL_CHECKPOINT_BYTES
                and not entry.poisoned
                and not entry.store.in_transaction
            ):
                # Keep the WAL short and its blocks reused: writing over allocated
                # blocks does not wait for the filesystem's journal, growing a file does.
                self._checkpoint_entry(entry)

        pending.add_callback(settled)
        self._arm_checkpoint()
        return acknowledged

    def _arm_checkpoint(self) -> None:
        log = self.log
        if not isinstance(log, LocalCommitLog) or self._checkpointing:
            return
        if log.appended - self._checkpointed >= self.checkpoint_bytes:
            self._start_checkpoint()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.checkpoint_interval, self._start_checkpoint)

    def _start_checkpoint(self) -> None:
        """Checkpoint idle WALs into their files, then sync and advance the log (in a thread)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log = self.log
        if self._checkpointing or self._closed_backend or not isinstance(log, LocalCommitLog):
            return
        bound = self._checkpoint_files()
        if bound <= self._checkpointed:
            return
        self._checkpointing = True
        assert self.data_dir is not None
        data_dir = self.data_dir

        def sync() -> None:
            _sync_filesystem(data_dir)
            log.checkpoint(bound)

        def done(future: asyncio.Future[None]) -> None:
            self._checkpointing = False
            if future.cancelled() or future.exception() is not None:
                logger.error("commit-log checkpoint failed", exc_info=future.exception())
                return
            self._checkpointed = bound

        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, sync).add_done_callback(done)

    def _checkpoint_files(self) -> int:
        """Copy every fully durable WAL into its file; the log position all files now
        cover (once synced)."""
        log = self.log
        assert isinstance(log, LocalCommitLog)
        bound = log.appended
        for entry in self._entries.values():
            if not entry.wal_dirty:
                continue
            store = entry.store
            if entry.inflight or entry.poisoned or (store is not None and store.in_transaction):
                if entry.first_position >= 0:
                    bound = min(bound, entry.first_position)
                continue
            self._checkpoint_entry(entry)
        return bound

    def _checkpoint_entry(self, entry: _Entry) -> None:
        """Copy a WAL whose every frame is durable into its file; the WAL restarts."""
        _wal_checkpoint(entry)
        entry.tail.reset()
        entry.durable_wal_end = 0
        entry.wal_dirty = False
        entry.first_position = -1
        self._dirty_files = True

    def checkpoint_now(self) -> None:
        """A global checkpoint, synchronously (start-up migrations, shutdown)."""
        log = self.log
        if not isinstance(log, LocalCommitLog):
            return
        log.wait_durable(log.appended)
        bound = self._checkpoint_files()
        assert self.data_dir is not None
        _sync_filesystem(self.data_dir)
        log.checkpoint(bound)
        self._checkpointed = bound

    # -- migrations and shutdown -------------------------------------------------------

    def rename_namespace(self, old: str, new: str) -> bool:
        moved = super().rename_namespace(old, new)
        if moved:
            self.checkpoint_now()
        return moved

    def delete_namespace(self, namespace: str) -> int:
        count = super().delete_namespace(namespace)
        if count:
            self.checkpoint_now()
        return count

    async def aclose(self) -> None:
        """``close()`` for a server on its event loop: a remote log settles its records
        there (their completions must run before the files are finished)."""
        if not self.remote:
            self.close()
            return
        if self._closed_backend:
            return
        self._close_stores()
        await self.log.aclose()
        self._finish_all(lost=True)  # still unsettled after the log closed: untrusted
        self._closed_backend = True
        os.close(self._lock_fd)

    def _close_stores(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for store in list(self._open.values()):
            store.close()

    def _finish_all(self, *, lost: bool) -> None:
        """Close every connection at shutdown. Records whose completions never ran are
        treated as lost when ``lost``: the file is rolled back (a local log replays the
        durable ones at the next start; a remote one restores them)."""
        for entry in list(self._entries.values()):
            entry.store = None
            if entry.inflight:
                entry.poisoned = entry.poisoned or lost
                entry.inflight = 0
            self._finish(entry)

    def close(self) -> None:
        if self._closed_backend:
            return
        self._close_stores()
        log = self.log
        failed = False
        if isinstance(log, LocalCommitLog):
            log.wait_durable(log.appended)
            failed = log.failed is not None
        self._finish_all(lost=failed)
        if isinstance(log, LocalCommitLog):
            assert self.data_dir is not None
            _sync_filesystem(self.data_dir)
            log.checkpoint(log.appended)
        log.close()
        self._closed_backend = True
        os.close(self._lock_fd)


def _remove(path: Path, *suffixes: str) -> None:
    """Delete ``path`` with each suffix (``""`` for the file itself), where they exist."""
    for suffix in suffixes:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _wal_checkpoint(entry: _Entry) -> None:
    # The store's authorizer refuses pragmas it does not know; this one is ours.
    conn = entry.conn
    conn.set_authorizer(None)
    try:
        # RESTART, not TRUNCATE: the next commits overwrite the WAL's blocks.
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    finally:
        if entry.store is not None:
            conn.set_authorizer(entry.store._authorize)


def _default_pool() -> int:
    """Connections the file-descriptor limit allows (3 each, a quarter kept for sockets)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_OPEN
    return max(16, min(_MAX_OPEN, soft * 3 // 4 // 3))


def _lock(data_dir: Path) -> int:
    fd = os.open(data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUseError(
            f"the data directory {data_dir} is in use by another stateroom process; stop it "
            "or give this one another directory (--persist-to)"
        ) from None
    return fd


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_malloc_trim = getattr(_libc, "malloc_trim", None)


def _trim_heap() -> None:
    if _malloc_trim is not None:
        _malloc_trim(0)


def _sync_filesystem(directory: Path) -> None:
    """Make every write to the filesystem holding ``directory`` durable (one syscall)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _syncfs is not None and _syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)
