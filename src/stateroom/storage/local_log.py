"""The embedded commit log: segment files on the local disk, flushed in groups off the loop.

Layout, under ``<data_dir>/log/``: segment files named by the log position (bytes
ever appended) of their first record, ``00000000000000000000.log``, and a
``checkpoint`` file holding the position before which every record is reflected in
the objects' database files on stable storage (older segments are deleted).

A record is ``<length u32><crc32 u32><body>``; the body is
``<ns len u16><id len u16><page size u32><epoch u64><namespace><object id><frames>``.
A torn or corrupt record ends the log: recovery stops there and truncates it,
which is safe because nothing at or after it was ever acknowledged (a record is
acknowledged only once the flush that wrote it, and everything before it, is
synced).

``append()`` runs on the event loop's thread and only copies bytes into the
pending buffer; a writer thread (``_logwriter.c``, which never takes the GIL)
swaps the buffer, writes it, ``fdatasync``\\ s, publishes the durable position and
wakes the loop through an eventfd, where the batch's records settle. While it
syncs, new records gather for the next flush: the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from stateroom.storage.errors import StorageError
from stateroom.storage.log import CommitLog, LogRecord, LogUnavailableError, Pending, Restored

__all__ = ["LocalCommitLog"]

logger = logging.getLogger(__name__)

_PREFIX: Final = struct.Struct("<II")
_BODY: Final = struct.Struct("<HHIQ")
_SEGMENT_BYTES: Final = 64 * 1024 * 1024
_MAX_RECORD: Final = 1 << 31


def _segment_name(position: int) -> str:
    return f"{position:020d}.log"


def encode(record: LogRecord) -> bytes:
    """A record's bytes in the log (length, checksum, body)."""
    ns = record.namespace.encode()
    oid = record.object_id.encode()
    body = b"".join(
        (_BODY.pack(len(ns), len(oid), record.page_size, record.epoch), ns, oid, record.frames)
    )
    return _PREFIX.pack(len(body), zlib.crc32(body)) + body


def decode(body: bytes) -> LogRecord:
    ns_len, oid_len, page_size, epoch = _BODY.unpack_from(body)
    start = _BODY.size
    ns = body[start : start + ns_len].decode()
    oid = body[start + ns_len : start + ns_len + oid_len].decode()
    return LogRecord(ns, oid, epoch, page_size, body[start + ns_len + oid_len :])


class _ThreadWriter:
    """The pure-Python writer (``_logwriter.c``'s interface), for installs without C.

    It re-takes the GIL after every write and sync, which costs the event loop
    throughput; the C writer does not.
    """

    def __init__(self, fd: int, event_fd: int, position: int) -> None:
        self.fd = fd
        self._event_fd = event_fd
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._buffer: list[bytes] = []
        self.appended = position
        self._durable = position
        self._error = 0
        self._next_fd = -1
        self._rotate_at = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="stateroom-commit-log", daemon=True)
        self._thread.start()

    def append(self, data: bytes) -> int:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the commit log is closed")
            self._buffer.append(data)
            self.appended += len(data)
            self._wake.notify()
            return self.appended

    def rotate(self, fd: int) -> int:
        with self._lock:
            if self._next_fd >= 0:
                raise RuntimeError("a rotation is already pending")
            self._next_fd = fd
            self._rotate_at = self.appended
            self._wake.notify()
            return self._rotate_at

    def state(self) -> tuple[int, int, bool]:
        with self._lock:
            return self._durable, self._error, self._next_fd >= 0

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._stopping and self._next_fd < 0:
                    self._wake.wait()
                if not self._buffer and self._stopping and self._next_fd < 0:
                    return
                data = b"".join(self._buffer)
                self._buffer = []
                end = self.appended
                start = end - len(data)
                next_fd, rotate_at = self._next_fd, self._rotate_at
                self._next_fd = -1
                failed = self._error
            error = failed
            if not error:
                try:
                    head = len(data)
                    if next_fd >= 0 and start <= rotate_at < end:
                        head = rotate_at - start
                    _write_all(self.fd, data[:head])
                    os.fdatasync(self.fd)
                    if next_fd >= 0:
                        os.close(self.fd)
                        self.fd, next_fd = next_fd, -1
                        if head < len(data):
                            _write_all(self.fd, data[head:])
                            os.fdatasync(self.fd)
                except OSError as exc:
                    error = exc.errno or 5
            if next_fd >= 0:
                os.close(next_fd)
            with self._lock:
                if error:
                    self._error = self._error or error
                else:
                    self._durable = end
            with contextlib.suppress(OSError):
                os.eventfd_write(self._event_fd, 1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _new_writer(fd: int, event_fd: int, position: int) -> Any:
    if not os.environ.get("STATEROOM_PURE_PYTHON"):
        try:
            from stateroom.storage._logwriter import Writer  # type: ignore[import-not-found]

            return Writer(fd, event_fd, position)
        except ImportError:
            logger.warning("the commit log's C writer is not built; using a Python thread (slower)")
    return _ThreadWriter(fd, event_fd, position)


class LocalCommitLog(CommitLog):
    """Segment files in ``directory``; see the module docstring.

    Open it, call ``recover()`` once (records after the checkpoint, to replay), then
    ``start()``; ``checkpoint(position)`` after the objects' files hold everything
    before ``position`` on stable storage.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = _SEGMENT_BYTES):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._writer: Any = None
        self._event_fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        # (end position, pending) of records not yet durable, in log order.
        self._waiting: deque[tuple[int, Pending]] = deque()
        self._failed: BaseException | None = None
        self._segment_start = 0
        # Bytes ever appended (the next record's position) and synced.
        self.appended = 0
        self.durable = 0

    # -- recovery ---------------------------------------------------------------

    def _segments(self) -> list[int]:
        found = []
        for path in self.directory.glob("*.log"):
            if path.stem.isdigit():
                found.append(int(path.stem))
        return sorted(found)

    def read_checkpoint(self) -> int:
        try:
            return int((self.directory / "checkpoint").read_text().strip() or "0")
        except FileNotFoundError:
            return 0

    def recover(self) -> list[tuple[int, LogRecord]]:
        """``(position, record)`` of every intact record after the checkpoint, in order.

        Truncates a torn tail. Afterwards ``appended`` is the end of the intact log.
        """
        return list(self._scan(self.read_checkpoint(), repair=True))

    @classmethod
    def reader(cls, directory: str | os.PathLike[str]) -> LocalCommitLog:
        """A log to read only (``records_after``), e.g. beside a running server."""
        log = cls.__new__(cls)
        log.directory = Path(directory)
        return log

    def records_after(self, position: int) -> Iterator[tuple[int, LogRecord]]:
        """Intact records from ``position`` on, read only (a torn tail just ends them)."""
        return self._scan(position, repair=False)

    def _scan(self, checkpoint: int, *, repair: bool) -> Iterator[tuple[int, LogRecord]]:
        segments = self._segments()
        end = checkpoint
        for index, start in enumerate(segments):
            path = self.directory / _segment_name(start)
            if index + 1 < len(segments) and segments[index + 1] <= checkpoint:
                continue
            with open(path, "r+b" if repair else "rb") as file:
                data = file.read()
                offset = max(0, checkpoint - start)
                while offset + _PREFIX.size <= len(data):
                    length, crc = _PREFIX.unpack_from(data, offset)
                    body_start = offset + _PREFIX.size
                    body = data[body_start : body_start + length]
                    if len(body) < length or zlib.crc32(body) != crc or length < _BODY.size:
                        break
                    yield start + offset, decode(body)
                    offset = body_start + length
                end = start + offset
                if offset < len(data):
                    if not repair:
                        return
                    logger.warning(
                        "commit log %s: %d bytes after position %d are torn or corrupt "
                        "(never acknowledged); cutting them off",
                        path,
                        len(data) - offset,
                        end,
                    )
                    file.truncate(offset)
                    file.flush()
                    os.fsync(file.fileno())
                    # Later segments cannot hold acknowledged records either.
                    for later in segments[index + 1 :]:
                        (self.directory / _segment_name(later)).unlink()
                    break
        if repair:
            self.appended = self.durable = max(end, checkpoint)

    def checkpoint(self, position: int) -> None:
        """Everything before ``position`` is on stable storage in the objects' files:
        record it (atomically, synced) and delete the segments wholly before it.

        Safe from any thread.
        """
        tmp = self.directory / "checkpoint.tmp"
        with open(tmp, "w") as file:
            file.write(f"{position}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.directory / "checkpoint")
        _fsync_dir(self.directory)
        segments = self._segments()
        for index, start in enumerate(segments[:-1]):
            if segments[index + 1] > position:
                break
            (self.directory / _segment_name(start)).unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------------

    def start(self) -> None:
        """Open a fresh segment at the end of the log and start the writer."""
        fd = self._create_segment(self.appended)
        self._segment_start = self.appended
        self._event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._writer = _new_writer(fd, self._event_fd, self.appended)

    def _create_segment(self, position: int) -> int:
        path = self.directory / _segment_name(position)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        # Its directory entry must be durable before any record in it is acknowledged.
        os.fsync(fd)
        _fsync_dir(self.directory)
        return fd

    @property
    def failed(self) -> BaseException | None:
        """The write error that stopped the log, or None."""
        return self._failed

    def append(self, record: LogRecord) -> Pending:
        if self._failed is not None:
            raise LogUnavailableError(f"the commit log cannot write: {self._failed}")
        data = encode(record)
        if len(data) >= _MAX_RECORD:
            raise StorageError(f"a commit of {len(data)} bytes is too large for the log")
        writer = self._writer
        end = writer.append(data)
        self.appended = end
        pending = Pending()
        pending.position = end - len(data)
        self._waiting.append((end, pending))
        if end - self._segment_start >= self.segment_bytes and not writer.state()[2]:
            self._segment_start = writer.rotate(self._create_segment(end))
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self.wait_durable(end)  # no event loop: durable before returning
                return pending
            loop.add_reader(self._event_fd, self._on_event)
        return pending

    def _on_event(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._event_fd)
        self._settle()

    def _settle(self) -> None:
        durable, errno, _rotating = self._writer.state()
        self.durable = durable
        waiting = self._waiting
        while waiting and waiting[0][0] <= durable:
            waiting.popleft()[1].resolve(None)
        if errno and self._failed is None:
            self._failed = OSError(errno, os.strerror(errno))
            logger.error("commit log write failed: %s", self._failed)
        if self._failed is not None and waiting:
            failure = LogUnavailableError(
                f"the commit log could not make a write durable ({self._failed}); "
                "check the disk holding the data directory"
            )
            while waiting:
                waiting.popleft()[1].resolve(failure)

    def wait_durable(self, position: int) -> None:
        """Block until everything before ``position`` is synced or the log failed;
        then settle what waits (on the calling thread: the loop's, or none)."""
        if self._writer is None:
            return
        while True:
            durable, errno, _rotating = self._writer.state()
            if durable >= position or errno:
                break
            select.select([self._event_fd], [], [], 1.0)
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._event_fd)
        self._settle()

    async def acquire(self, namespace: str, object_id: str) -> int:
        return 0  # one process owns a local data directory (its lock file): nothing to fence

    async def restore(self, namespace: str, object_id: str) -> Restored | None:
        return None

    def close(self) -> None:
        writer = self._writer
        if writer is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._event_fd)
        writer.close()
        self._settle()
        os.close(writer.fd)
        os.close(self._event_fd)
        self._writer = None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
