"""The PostgreSQL commit log: records, snapshots and epochs in one database.

Tables (created idempotently by ``start()``; every name starts with ``stateroom_``):

* ``stateroom_objects (namespace, object_id) -> epoch, seq, since_records, since_bytes``:
  the fence. ``acquire()`` steals it in one committed statement
  (``INSERT … ON CONFLICT DO UPDATE SET epoch = epoch + 1 RETURNING epoch``); ``seq``
  is the object's last record number; the two ``since_*`` counters say how much was
  written since its newest snapshot (what triggers compaction).
* ``stateroom_records (namespace, object_id, seq) -> epoch, committed_at, page_size,
  frames``: each accepted commit's WAL frames (``wal.py``), numbered per object.
* ``stateroom_snapshots (namespace, object_id, seq) -> page_size, image, created_at``:
  the whole database after record ``seq``.

**Group commit.** ``append()`` (on the loop's thread) only queues the record and
returns its ``Pending``. One flusher task takes everything queued and writes it in
ONE statement, hence one implicit transaction and one round trip: the records travel
as arrays (``unnest``), the batch's object rows are locked in key order
(``FOR NO KEY UPDATE``, which an ``acquire()`` waits for), each record's epoch is
compared with its object's current one, and the accepted records are inserted with
their per-object numbers. One batch is in flight at a time, so each object's records
commit in append order; while it is in flight, the next batch gathers. Pendings
resolve on the loop once the statement has returned, i.e. after ``COMMIT``.

**Fencing.** A record whose epoch is not its object's current epoch is refused
(``FencedError``), and so is every later record of that epoch; other objects'
records in the batch commit. An ``acquire()`` that lands while a batch holds the
object's row waits for it, so a superseded activation can never have a record
accepted after its successor's ``acquire()`` returned.

**Faults.** Unreachable at ``start()``: ``StorageError`` naming the URL (without its
password). A lost connection fails the batch in flight and everything queued with
``LogUnavailableError`` (retryable); the flusher reconnects by itself, with backoff,
on the next append. When the connection drops after the batch was sent and before
its result arrived, the outcome is unknown: its records *may have committed*, and
they are still failed (nothing is reported durable that may not be). So that a later
record never lands on top of one whose fate is unknown, a failed record also fails
every later record of the same activation (object and epoch) until ``acquire()``
gives the object a new epoch; the activation must then rebuild its state with
``restore()``, which is the truth, rather than trust its local copy.

**Snapshots and retention.** After a batch, an object whose records since its newest
snapshot exceed its database's size (or ``snapshot_records`` records) is queued for
compaction: a background task reads the snapshot and the records after it, applies
them with ``wal.apply`` in a worker thread and stores the new image. Every record
keeps its ``committed_at``. A periodic sweep deletes, per object, the records and
snapshots older than the newest snapshot that was itself made before the retention
window (``retention``, 30 days by default): every moment inside the window stays
reconstructible (point-in-time recovery), and restore stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from stateroom.storage.errors import StorageError
from stateroom.storage.log import (
    CommitLog,
    FencedError,
    LogRecord,
    LogUnavailableError,
    Pending,
    Restored,
)
from stateroom.storage.sqlite import empty_database
from stateroom.storage.wal import FRAME_HEADER, apply, image_frames

__all__ = ["PostgresCommitLog", "redact"]

logger = logging.getLogger(__name__)

_COMMIT_SIZE: Final = struct.Struct(">I")
_MAX_BATCH_RECORDS: Final = 4096
_MAX_BATCH_BYTES: Final = 32 * 1024 * 1024
_SCHEMA_LOCK: Final = 0x5374617465  # pg_advisory_xact_lock key for schema creation
_FENCES_KEPT: Final = 65536  # superseded epochs remembered locally (the database decides)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS stateroom_objects (
    namespace text NOT NULL,
    object_id text NOT NULL,
    epoch bigint NOT NULL,
    seq bigint NOT NULL DEFAULT 0,
    since_records bigint NOT NULL DEFAULT 0,
    since_bytes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, object_id)
);
CREATE TABLE IF NOT EXISTS stateroom_records (
    namespace text NOT NULL,
    object_id text NOT NULL,
    seq bigint NOT NULL,
    epoch bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    page_size integer NOT NULL,
    frames bytea NOT NULL,
    PRIMARY KEY (namespace, object_id, seq)
);
CREATE TABLE IF NOT EXISTS stateroom_snapshots (
    namespace text NOT NULL,
    object_id text NOT NULL,
    seq bigint NOT NULL,
    page_size integer NOT NULL,
    image bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, object_id, seq)
);
CREATE INDEX IF NOT EXISTS stateroom_snapshots_created_at ON stateroom_snapshots (created_at);
CREATE TABLE IF NOT EXISTS stateroom_alarms (
    namespace text NOT NULL,
    object_id text NOT NULL,
    alarm_ms bigint NOT NULL,
    name text,
    PRIMARY KEY (namespace, object_id)
);
CREATE TABLE IF NOT EXISTS stateroom_restores (
    namespace text NOT NULL,
    object_id text NOT NULL,
    seq bigint NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, object_id)
);
DO $$ BEGIN
    -- lz4 (PostgreSQL 14+, when built with it) compresses pages at a fraction of pglz's CPU.
    ALTER TABLE stateroom_records ALTER COLUMN frames SET COMPRESSION lz4;
    ALTER TABLE stateroom_snapshots ALTER COLUMN image SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN NULL;
END $$;
"""

# One statement, so one implicit transaction and one round trip per batch. The rows
# are locked in key order (two logs' batches cannot deadlock on each other); a record
# is accepted only if its epoch is its object's current one.
_BATCH: Final = """
WITH b AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bytea[])
        WITH ORDINALITY AS b(namespace, object_id, epoch, page_size, frames, ord)
), c AS (
    SELECT namespace, object_id, epoch, count(*) AS n,
           sum(octet_length(frames))::bigint AS bytes
    FROM b GROUP BY namespace, object_id, epoch
), locked AS MATERIALIZED (
    SELECT o.namespace, o.object_id, o.epoch FROM stateroom_objects o
    WHERE (o.namespace, o.object_id) IN (SELECT namespace, object_id FROM c)
    ORDER BY o.namespace, o.object_id
    FOR NO KEY UPDATE
), bumped AS (
    UPDATE stateroom_objects o
    SET seq = o.seq + c.n, since_records = o.since_records + c.n,
        since_bytes = o.since_bytes + c.bytes
    FROM locked l JOIN c ON c.namespace = l.namespace AND c.object_id = l.object_id
                         AND c.epoch = l.epoch
    WHERE o.namespace = l.namespace AND o.object_id = l.object_id
    RETURNING o.namespace, o.object_id, o.epoch, o.seq - c.n AS base,
              o.since_records, o.since_bytes
), inserted AS (
    INSERT INTO stateroom_records (namespace, object_id, seq, epoch, page_size, frames)
    SELECT b.namespace, b.object_id,
           u.base + row_number() OVER (PARTITION BY b.namespace, b.object_id ORDER BY b.ord),
           b.epoch, b.page_size, b.frames
    FROM b JOIN bumped u ON u.namespace = b.namespace AND u.object_id = b.object_id
                        AND u.epoch = b.epoch
    RETURNING 1
)
SELECT namespace, object_id, epoch, since_records, since_bytes FROM bumped
"""

_ACQUIRE: Final = """
INSERT INTO stateroom_objects AS o (namespace, object_id, epoch) VALUES ($1, $2, 1)
ON CONFLICT (namespace, object_id) DO UPDATE SET epoch = o.epoch + 1
RETURNING epoch
"""

# One statement sees one snapshot of the database (even in READ COMMITTED): the newest
# image and the records after it, consistent with each other, in one round trip. The
# image comes first (kind 0); then the records in order.
_READ: Final = """
WITH s AS (
    SELECT seq, page_size, image FROM stateroom_snapshots
    WHERE namespace = $1 AND object_id = $2 ORDER BY seq DESC LIMIT 1
)
SELECT 0 AS kind, seq, 0::bigint AS epoch, page_size, image AS data FROM s
UNION ALL
SELECT 1, r.seq, r.epoch, r.page_size, r.frames FROM stateroom_records r
WHERE r.namespace = $1 AND r.object_id = $2
  AND r.seq > coalesce((SELECT seq FROM s), 0)
ORDER BY kind, seq
"""

_SAVE_SNAPSHOT: Final = """
WITH s AS (
    INSERT INTO stateroom_snapshots (namespace, object_id, seq, page_size, image)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
)
UPDATE stateroom_objects o SET
    since_records = (SELECT count(*) FROM stateroom_records r
                     WHERE r.namespace = $1 AND r.object_id = $2 AND r.seq > $3),
    since_bytes = (SELECT coalesce(sum(octet_length(frames)), 0) FROM stateroom_records r
                   WHERE r.namespace = $1 AND r.object_id = $2 AND r.seq > $3)
WHERE o.namespace = $1 AND o.object_id = $2
"""

# Per object, the base is the newest snapshot made before the window began: every
# moment inside the window is that snapshot plus later records, so older records and
# snapshots can go.
_SWEEP: Final = """
WITH base AS (
    SELECT namespace, object_id, max(seq) AS seq FROM stateroom_snapshots
    WHERE created_at <= now() - $1::interval GROUP BY namespace, object_id
), r AS (
    DELETE FROM stateroom_records x USING base
    WHERE x.namespace = base.namespace AND x.object_id = base.object_id AND x.seq <= base.seq
    RETURNING 1
), s AS (
    DELETE FROM stateroom_snapshots x USING base
    WHERE x.namespace = base.namespace AND x.object_id = base.object_id AND x.seq < base.seq
    RETURNING 1
)
SELECT (SELECT count(*) FROM r) AS records, (SELECT count(*) FROM s) AS snapshots
"""


# Alarms, where a restarted server finds them (objects have no local files to scan):
# written by the activation that owns the object (its epoch), or not at all.
_SET_ALARM: Final = """
INSERT INTO stateroom_alarms (namespace, object_id, alarm_ms, name)
SELECT $1, $2, $4, $5 FROM stateroom_objects
WHERE namespace = $1 AND object_id = $2 AND epoch = $3
ON CONFLICT (namespace, object_id) DO UPDATE SET alarm_ms = excluded.alarm_ms,
    name = coalesce(excluded.name, stateroom_alarms.name)
RETURNING 1
"""
_CLEAR_ALARM: Final = """
WITH owner AS (
    SELECT 1 FROM stateroom_objects WHERE namespace = $1 AND object_id = $2 AND epoch = $3
), d AS (
    DELETE FROM stateroom_alarms WHERE namespace = $1 AND object_id = $2
    AND EXISTS (SELECT 1 FROM owner)
)
SELECT count(*) FROM owner
"""
_ALL_ALARMS: Final = "SELECT namespace, object_id, alarm_ms, name FROM stateroom_alarms"

# Point-in-time recovery. A position is a record number (seq) of the object; the state
# at a position is the newest snapshot at or before it plus the records up to it.
_POSITION: Final = """
SELECT seq FROM stateroom_objects WHERE namespace = $1 AND object_id = $2
"""
_POSITION_AT: Final = """
SELECT (SELECT max(seq) FROM stateroom_records
        WHERE namespace = $1 AND object_id = $2 AND committed_at <= $3) AS at,
       (SELECT min(seq) FROM stateroom_records
        WHERE namespace = $1 AND object_id = $2) AS oldest,
       (SELECT max(seq) FROM stateroom_snapshots
        WHERE namespace = $1 AND object_id = $2 AND created_at <= $3) AS snapshot
"""
_SNAPSHOT_AT: Final = """
SELECT seq, page_size, image FROM stateroom_snapshots
WHERE namespace = $1 AND object_id = $2 AND seq <= $3 ORDER BY seq DESC LIMIT 1
"""
_RECORDS_BETWEEN: Final = """
SELECT seq, page_size, frames FROM stateroom_records
WHERE namespace = $1 AND object_id = $2 AND seq > $3 AND seq <= $4 ORDER BY seq
"""
_REQUEST_RESTORE: Final = """
INSERT INTO stateroom_restores (namespace, object_id, seq) VALUES ($1, $2, $3)
ON CONFLICT (namespace, object_id) DO UPDATE SET seq = excluded.seq, requested_at = now()
"""
_PENDING_RESTORE: Final = """
SELECT r.seq, o.epoch, o.seq AS current FROM stateroom_restores r
JOIN stateroom_objects o ON o.namespace = r.namespace AND o.object_id = r.object_id
WHERE r.namespace = $1 AND r.object_id = $2
FOR UPDATE OF o
"""
_RESTORED_RECORD: Final = """
WITH r AS (
    INSERT INTO stateroom_records (namespace, object_id, seq, epoch, page_size, frames)
    VALUES ($1, $2, $3, $4, $5, $6)
), d AS (
    DELETE FROM stateroom_restores WHERE namespace = $1 AND object_id = $2
)
UPDATE stateroom_objects SET seq = $3, since_records = since_records + 1,
    since_bytes = since_bytes + octet_length($6::bytea)
WHERE namespace = $1 AND object_id = $2
"""


def _PAGE_SIZE_OF(image: bytes) -> int:
    """A SQLite image's page size, from its header (1 means 65536)."""
    if len(image) < 100:
        return 4096
    size = int.from_bytes(image[16:18], "big")
    return 65536 if size == 1 else size


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What a lost or confused connection raises (asyncpg is imported only when used)."""
    import asyncpg
    from asyncpg.exceptions import InternalClientError

    return (
        TimeoutError,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        InternalClientError,  # a connection left mid-operation by an earlier failure
    )


def redact(dsn: str) -> str:
    """``dsn`` without its password (URL or ``key=value`` form), for messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme and parts.netloc:
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{host}" if user else host
        query = re.sub(r"(?i)(^|&)password=[^&]*", r"\1password=***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return re.sub(r"(?i)\bpassword\s*=\s*('[^']*'|\S+)", "password=***", dsn)


def _image_bytes(record: LogRecord) -> int:
    """The database's size after the record's commit (its last frame commits)."""
    frame = FRAME_HEADER + record.page_size
    if record.page_size <= 0 or len(record.frames) < frame:
        return 0
    (pages,) = _COMMIT_SIZE.unpack_from(record.frames, len(record.frames) - frame + 4)
    return int(pages) * record.page_size


def _connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (rather than a refused statement)."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        # The server answered: the statement failed and rolled back, but an
        # administrator shutdown or a crash also ends the session.
        return getattr(exc, "sqlstate", "").startswith(("57P", "08"))
    return True  # OSError, asyncpg.InterfaceError, a timeout: the connection is unusable


def _server_settings(conn: Any) -> dict[str, str]:
    """Session settings for every later connection, given the server's version.

    PostgreSQL 14+ then ends a statement whose client went away (a batch that timed
    out) rather than letting it commit later. Sent at connection start, so that a
    pool's ``RESET ALL`` keeps them.
    """
    if conn.get_server_version().major >= 14:
        return {"client_connection_check_interval": "1000"}
    return {}


class PostgresCommitLog(CommitLog):
    """Records, snapshots and epochs in PostgreSQL; see the module docstring.

    Use, all on one event loop::

        log = PostgresCommitLog("postgresql://user@host:5432/db")
        await log.start()                   # connect, create tables; StorageError if unreachable
        epoch = await log.acquire(ns, oid)  # every activation, before reading its state
        restored = await log.restore(ns, oid)   # snapshot + records after it (the truth)
        pending = log.append(LogRecord(ns, oid, epoch, page_size, frames))  # returns at once
        ...
        await log.aclose()                  # flush, wait, release (close() if no loop runs)

    ``retention``: how long every moment stays rebuildable (records and snapshots are
    kept until a snapshot made before the window covers them). ``snapshot_records``:
    records since the last snapshot that trigger a new one (so do more bytes than the
    database's size, past 64 KiB). ``sweep_interval``: seconds between retention
    sweeps. ``connect_timeout``, ``statement_timeout``: seconds; a batch without an
    answer by then fails (its outcome unknown). ``reconnect_max_delay``: the longest
    backoff between reconnection attempts.

    After a record fails (``LogUnavailableError``) or is refused (``FencedError``), the
    same activation's later records fail too: the object must be reset, take a new
    epoch with ``acquire()`` and rebuild from ``restore()``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        retention: timedelta = timedelta(days=30),
        snapshot_records: int = 1000,
        sweep_interval: float = 600.0,
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
        reconnect_max_delay: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.url = redact(dsn)
        self.retention = retention
        self.snapshot_records = snapshot_records
        self.sweep_interval = sweep_interval
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Any = None  # the flusher's connection
        self._pool: Any = None  # acquire, restore, compaction
        self._settings: dict[str, str] | None = None  # server_settings, once the version is known
        self._queue: list[tuple[LogRecord, Pending]] = []
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._to_compact: dict[tuple[str, str], None] = {}
        self._compact_wake: asyncio.Event | None = None
        self._next_position = 0
        self._settled_position = -1  # every record before this + 1 is settled
        self._idle: asyncio.Event | None = None
        # Local knowledge that saves a round trip and keeps order after a failure:
        # epochs at or below these are refused without asking the database.
        self._fenced: dict[tuple[str, str], int] = {}
        self._broken: dict[tuple[str, str], int] = {}
        self._next_attempt = 0.0
        self._backoff = 0.0
        self._closing = False
        self._closed = False
        self._closer: asyncio.Task[None] | None = None
        # Whether the background compactor has work (queued or running).
        self.compacting = False
        # Every object's alarm as of start and since (what a restarted server re-arms),
        # and the write of each object's latest alarm change (they go in order).
        self.alarms: dict[tuple[str, str], tuple[int, str | None]] = {}
        self._alarm_notes: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Counters, for tests and benchmarks.
        self.batches = 0
        self.committed_records = 0

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the tables if missing, start the flusher and the compactor.

        Raises ``StorageError`` naming the URL when the database cannot be reached.
        """
        import asyncpg

        if self._loop is not None:
            return
        try:
            conn = await self._connect()
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                    await conn.execute(SCHEMA)
            except BaseException:
                await conn.close()
                raise
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=4,
                timeout=self.connect_timeout,
                command_timeout=self.statement_timeout,
                server_settings=self._settings,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StorageError(
                f"cannot use PostgreSQL at {self.url}: {e or type(e).__name__}. Check that the "
                "server runs and accepts connections there, and the user, password and database "
                "in the URL (--storage)"
            ) from None
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._compact_wake = asyncio.Event()
        await self._load_alarms()
        self._flusher = self._loop.create_task(self._flush_loop(), name="stateroom-pg-flusher")
        self._compactor = self._loop.create_task(self._compact_loop(), name="stateroom-pg-compact")
        logger.info("commit log on PostgreSQL at %s", self.url)

    async def _connect(self) -> Any:
        import asyncpg

        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            command_timeout=self.statement_timeout,
            server_settings=self._settings,
        )
        if self._settings is None:  # the first connection: now the server's version is known
            self._settings = _server_settings(conn)
            if self._settings:
                await conn.close()
                return await self._connect()
        return conn

    async def aclose(self) -> None:
        """Flush everything appended, wait until it is settled, and release the log."""
        if self._closed:
            return
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._flusher is not None:
            await self._flusher
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        self._closed = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            self._conn = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None

    def close(self) -> None:
        """``aclose()`` for synchronous callers: waits when the loop is not running;
        on the loop's own thread it can only schedule it (await ``aclose()`` there)."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            self._closed = True
            return
        if loop.is_running():
            self._closing = True
            self._closer = loop.create_task(self.aclose())
        else:
            loop.run_until_complete(self.aclose())

    # -- appending ----------------------------------------------------------------------

    def append(self, record: LogRecord) -> Pending:
        if self._wake is None:
            raise StorageError("the PostgreSQL commit log is not started: await start() first")
        if self._closing:
            raise LogUnavailableError("the PostgreSQL commit log is closed")
        pending = Pending()
        pending.position = self._next_position
        self._next_position += 1
        self._queue.append((record, pending))
        assert self._idle is not None
        self._idle.clear()
        self._wake.set()
        return pending

    async def flush(self) -> None:
        """Wait until every record appended so far is settled (durable or failed)."""
        while self._idle is not None and not self._idle.is_set():
            await self._idle.wait()

    async def _flush_loop(self) -> None:
        wake = self._wake
        idle = self._idle
        assert wake is not None and idle is not None
        while True:
            if not self._queue:
                idle.set()
                if self._closing:
                    return
                wake.clear()
                await wake.wait()
                continue
            batch = self._take()
            try:
                await self._flush(batch)
            except Exception as exc:  # a bug: never leave a Pending unsettled
                logger.exception("the PostgreSQL commit log's flusher failed")
                error = LogUnavailableError(f"the commit log failed: {exc!r}")
                for record, pending in batch:
                    self._mark_broken(record)
                    pending.resolve(error)

    def _take(self) -> list[tuple[LogRecord, Pending]]:
        queue = self._queue
        count = 0
        size = 0
        for record, _pending in queue:
            count += 1
            size += len(record.frames)
            if count >= _MAX_BATCH_RECORDS or size >= _MAX_BATCH_BYTES:
                break
        batch = queue[:count]
        del queue[:count]
        return batch

    def _local_refusal(self, record: LogRecord) -> BaseException | None:
        key = (record.namespace, record.object_id)
        fenced = self._fenced.get(key)
        if fenced is not None and record.epoch <= fenced:
            return FencedError(
                f"epoch {record.epoch} of {record.namespace}/{record.object_id} was superseded: "
                "another activation owns the object"
            )
        broken = self._broken.get(key)
        if broken is not None and record.epoch <= broken:
            return LogUnavailableError(
                f"an earlier write of {record.namespace}/{record.object_id} (epoch "
                f"{record.epoch}) failed; the object must be reset (acquire a new epoch) "
                "before it writes again"
            )
        return None

    def _mark_broken(self, record: LogRecord) -> None:
        key = (record.namespace, record.object_id)
        if self._broken.get(key, -1) < record.epoch:
            self._broken[key] = record.epoch

    async def _ensure_connection(self) -> Any:
        """The flusher's connection, reconnecting when the backoff allows; else raise."""
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        self._conn = None
        now = time.monotonic()
        if now < self._next_attempt:
            raise LogUnavailableError(
                f"PostgreSQL at {self.url} is unreachable; reconnecting in "
                f"{self._next_attempt - now:.1f} s"
            )
        try:
            conn = await self._connect()
        except Exception as exc:
            self._backoff = min(max(self._backoff * 2, 0.05), self.reconnect_max_delay)
            self._next_attempt = time.monotonic() + self._backoff
            logger.warning(
                "commit log: PostgreSQL at %s unreachable (%s); next attempt in %.2f s",
                self.url,
                exc,
                self._backoff,
            )
            raise LogUnavailableError(f"PostgreSQL at {self.url} is unreachable: {exc}") from None
        if self._backoff:
            logger.info("commit log: reconnected to PostgreSQL at %s", self.url)
        self._backoff = 0.0
        self._conn = conn
        return conn

    async def _flush(self, batch: list[tuple[LogRecord, Pending]]) -> None:
        outcome: list[BaseException | None] = [None] * len(batch)
        send: list[int] = []
        for index, (record, _pending) in enumerate(batch):
            refusal = self._local_refusal(record)
            if refusal is not None:
                outcome[index] = refusal
            else:
                send.append(index)
        lost: BaseException | None = None
        if send:
            lost = await self._write(batch, send, outcome)
        self.batches += 1
        for index, (_record, pending) in enumerate(batch):
            pending.resolve(outcome[index])
        if lost is not None:
            # Whatever was queued behind a lost connection fails too (retryable), after
            # the batch: each object's records settle in append order.
            queued, self._queue = self._queue, []
            for record, pending in queued:
                self._mark_broken(record)
                pending.resolve(lost)

    async def _write(
        self,
        batch: list[tuple[LogRecord, Pending]],
        send: list[int],
        outcome: list[BaseException | None],
    ) -> BaseException | None:
        """Send the batch; fill ``outcome``. The failure when the connection is gone."""
        records = [batch[i][0] for i in send]
        args = (
            [r.namespace for r in records],
            [r.object_id for r in records],
            [r.epoch for r in records],
            [r.page_size for r in records],
            [r.frames for r in records],
        )
        rows: Sequence[Any] = ()
        failure: BaseException | None = None
        for attempt in range(3):
            try:
                conn = await self._ensure_connection()
            except LogUnavailableError as exc:
                failure = exc
                break
            try:
                rows = await conn.fetch(_BATCH, *args)
                failure = None
                break
            except Exception as exc:
                if not _connection_lost(exc):
                    sqlstate = getattr(exc, "sqlstate", "")
                    failure = LogUnavailableError(
                        f"PostgreSQL at {self.url} refused the commit: {exc}"
                    )
                    if sqlstate in ("40P01", "40001") and attempt < 2:
                        continue  # deadlock or serialization: rolled back, retry
                    logger.error("commit log: a batch was refused: %s", exc)
                    break
                # The connection is gone, maybe after the server committed.
                logger.warning(
                    "commit log: connection to PostgreSQL at %s lost during a commit of %d "
                    "records (%s); they fail, though they may have committed",
                    self.url,
                    len(records),
                    exc,
                )
                self._drop_connection()
                failure = LogUnavailableError(
                    f"the connection to PostgreSQL at {self.url} was lost during the commit "
                    f"({exc or type(exc).__name__}): not acknowledged (it may still have committed)"
                )
                break
        if failure is not None:
            for index in send:
                self._mark_broken(batch[index][0])
                outcome[index] = failure
            return failure if self._conn is None else None
        accepted: dict[tuple[str, str], tuple[int, int, int]] = {}
        for row in rows:
            accepted[(row[0], row[1])] = (row[2], row[3], row[4])
        last: dict[tuple[str, str], LogRecord] = {}
        for index in send:
            record = batch[index][0]
            key = (record.namespace, record.object_id)
            hit = accepted.get(key)
            if hit is not None and hit[0] == record.epoch:
                last[key] = record
                self.committed_records += 1
                continue
            self._fence(key, record.epoch)
            outcome[index] = FencedError(
                f"epoch {record.epoch} of {record.namespace}/{record.object_id} is not the "
                "object's current epoch (superseded, or never acquired): another activation "
                "owns the object"
            )
        for key, record in last.items():
            _epoch, since_records, since_bytes = accepted[key]
            if since_records >= self.snapshot_records or since_bytes > max(
                _image_bytes(record), 64 * 1024
            ):
                self._queue_compaction(key)
        return None

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
        self._next_attempt = 0.0  # the first reconnection is immediate

    # -- epochs and restore ------------------------------------------------------------

    async def acquire(self, namespace: str, object_id: str) -> int:
        epoch = int(await self._query("fetchval", _ACQUIRE, namespace, object_id))
        key = (namespace, object_id)
        # This process's own older activations are superseded now: refuse them locally.
        self._fence(key, epoch - 1)
        self._broken.pop(key, None)
        return epoch

    def _fence(self, key: tuple[str, str], epoch: int) -> None:
        """Remember that epochs up to ``epoch`` of the object are superseded."""
        fenced = self._fenced
        if epoch <= 0 or fenced.get(key, 0) >= epoch:
            return
        fenced.pop(key, None)
        fenced[key] = epoch
        if len(fenced) > _FENCES_KEPT:
            del fenced[next(iter(fenced))]  # the oldest; the database still refuses it

    async def restore(self, namespace: str, object_id: str) -> Restored:
        snapshot, rows = await self._read(namespace, object_id)
        records = [
            LogRecord(namespace, object_id, row["epoch"], row["page_size"], row["data"])
            for row in rows
        ]
        return Restored(snapshot["data"] if snapshot is not None else b"", records)

    async def _read(self, namespace: str, object_id: str) -> tuple[Any, list[Any]]:
        """The newest snapshot row (or None) and the records after it, consistently."""
        rows = list(await self._query("fetch", _READ, namespace, object_id))
        if rows and rows[0]["kind"] == 0:
            return rows[0], rows[1:]
        return None, rows

    async def _query(self, method: str, sql: str, *args: Any) -> Any:

        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                try:
                    return await getattr(conn, method)(sql, *args)
                except Exception as exc:
                    if _connection_lost(exc):
                        conn.terminate()  # the pool opens a new one next time
                    raise
        except _lost_errors() as e:
            raise LogUnavailableError(f"PostgreSQL at {self.url} is unavailable: {e}") from None

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StorageError("the PostgreSQL commit log is not started: await start() first")
        return self._pool

    # -- alarms -------------------------------------------------------------------------

    def note_alarm(
        self, namespace: str, object_id: str, epoch: int, when_ms: int | None, name: str | None
    ) -> Pending | None:
        pending = Pending()
        key = (namespace, object_id)
        previous = self._alarm_notes.get(key)

        async def write() -> None:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous  # one object's alarm rows are written in order
            try:
                if when_ms is None:
                    owned = await self._query("fetchval", _CLEAR_ALARM, namespace, object_id, epoch)
                else:
                    owned = await self._query(
                        "fetchval", _SET_ALARM, namespace, object_id, epoch, when_ms, name
                    )
            except StorageError as exc:
                pending.resolve(exc)
                return
            if not owned:
                pending.resolve(
                    FencedError(f"{namespace}/{object_id}: another activation took the object")
                )
                return
            if when_ms is None:
                self.alarms.pop(key, None)
            else:
                self.alarms[key] = (when_ms, name)
            pending.resolve(None)

        task = asyncio.get_running_loop().create_task(write())
        self._alarm_notes[key] = task
        task.add_done_callback(
            lambda done: (
                self._alarm_notes.pop(key, None) if self._alarm_notes.get(key) is done else None
            )
        )
        return pending

    def stored_alarms(self, namespace: str) -> list[tuple[str, int, str | None]] | None:
        return [
            (object_id, when, name)
            for (ns, object_id), (when, name) in self.alarms.items()
            if ns == namespace
        ]

    async def _load_alarms(self) -> None:
        rows = await self._query("fetch", _ALL_ALARMS)
        self.alarms = {
            (row["namespace"], row["object_id"]): (int(row["alarm_ms"]), row["name"])
            for row in rows
        }

    # -- point-in-time recovery ------------------------------------------------------

    async def current_position(self, namespace: str, object_id: str) -> int:
        seq = await self._query("fetchval", _POSITION, namespace, object_id)
        return int(seq or 0)

    async def position_at(self, namespace: str, object_id: str, when_ms: int) -> int:
        when = datetime.fromtimestamp(when_ms / 1000, UTC)
        row = await self._query("fetchrow", _POSITION_AT, namespace, object_id, when)
        at, oldest, snapshot = row["at"], row["oldest"], row["snapshot"]
        if at is None and oldest is not None and oldest > 1 and snapshot is None:
            raise ValueError(
                f"{when.isoformat()} is before {namespace}/{object_id}'s retained history "
                f"(the retention window is {self.retention})"
            )
        return int(at if at is not None else (snapshot or 0))

    async def request_restore(self, namespace: str, object_id: str, position: int) -> int:
        current = await self.current_position(namespace, object_id)
        if position > current:
            raise ValueError(f"bookmark {position:016x} is in the future of this object")
        await self._state_at(namespace, object_id, position)  # still reconstructible?
        await self._query("execute", _REQUEST_RESTORE, namespace, object_id, position)
        return current

    async def _state_at(self, namespace: str, object_id: str, position: int) -> bytes:
        """The object's database image at ``position``."""
        snapshot = await self._query("fetchrow", _SNAPSHOT_AT, namespace, object_id, position)
        base = 0 if snapshot is None else int(snapshot["seq"])
        rows = await self._query("fetch", _RECORDS_BETWEEN, namespace, object_id, base, position)
        expected = position - base
        if len(rows) != expected:
            raise ValueError(
                f"bookmark {position:016x} of {namespace}/{object_id} is older than its "
                f"retained history (the retention window is {self.retention})"
            )
        image = bytearray(b"" if snapshot is None else snapshot["image"])

        def build() -> bytes:
            for row in rows:
                apply(image, row["frames"], row["page_size"])
            return bytes(image)

        return await asyncio.get_running_loop().run_in_executor(None, build)

    async def take_restore(self, namespace: str, object_id: str, epoch: int) -> Restored | None:

        pool = self._require_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_PENDING_RESTORE, namespace, object_id)
                if row is None:
                    return None
                if int(row["epoch"]) != epoch:
                    raise FencedError(
                        f"{namespace}/{object_id}: another activation took the object"
                    )
                image = await self._state_at(namespace, object_id, int(row["seq"]))
                if not image:  # before its first write: an empty database, not nothing
                    image = empty_database()
                page_size = _PAGE_SIZE_OF(image)
                seq = int(row["current"]) + 1
                await conn.execute(
                    _RESTORED_RECORD,
                    namespace,
                    object_id,
                    seq,
                    epoch,
                    page_size,
                    image_frames(image, page_size),
                )
        except _lost_errors() as e:
            raise LogUnavailableError(f"PostgreSQL at {self.url} is unavailable: {e}") from None
        logger.info(
            "restored %s/%s to bookmark %016x (now record %d)",
            namespace,
            object_id,
            int(row["seq"]),
            seq,
        )
        return Restored(image, [])

    # -- compaction and retention ------------------------------------------------------

    def _queue_compaction(self, key: tuple[str, str]) -> None:
        self._to_compact[key] = None
        self.compacting = True
        if self._compact_wake is not None:
            self._compact_wake.set()

    async def compact(self, namespace: str, object_id: str) -> bool:
        """Write a new snapshot of the object (its newest one plus the records after
        it); False when there was nothing to add."""
        snapshot, rows = await self._read(namespace, object_id)
        if not rows:
            return False
        base = bytes(snapshot["data"]) if snapshot is not None else b""

        def build() -> bytes:
            image = bytearray(base)
            for row in rows:
                apply(image, row["data"], row["page_size"])
            return bytes(image)

        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, build)
        top = rows[-1]
        await self._query(
            "execute", _SAVE_SNAPSHOT, namespace, object_id, top["seq"], top["page_size"], image
        )
        logger.debug(
            "commit log: snapshot of %s/%s at record %d (%d bytes, %d records applied)",
            namespace,
            object_id,
            top["seq"],
            len(image),
            len(rows),
        )
        return True

    async def sweep(self) -> tuple[int, int]:
        """Delete what the retention window no longer needs: (records, snapshots)."""
        row = await self._query("fetchrow", _SWEEP, self.retention)
        records, snapshots = int(row["records"]), int(row["snapshots"])
        if records or snapshots:
            logger.info(
                "commit log: retention deleted %d records and %d snapshots", records, snapshots
            )
        return records, snapshots

    async def _compact_loop(self) -> None:
        wake = self._compact_wake
        assert wake is not None
        next_sweep = time.monotonic() + self.sweep_interval
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, next_sweep - time.monotonic()))
            wake.clear()
            while self._to_compact:
                key = next(iter(self._to_compact))
                del self._to_compact[key]
                self.compacting = True
                try:
                    await self.compact(*key)
                except Exception as exc:  # a background task must not die of one object
                    logger.warning("commit log: snapshot of %s/%s failed: %s", *key, exc)
                    await asyncio.sleep(1.0)
                finally:
                    self.compacting = bool(self._to_compact)
                await asyncio.sleep(0)  # let the flusher and the objects run in between
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_interval
                try:
                    await self.sweep()
                except Exception as exc:  # retried at the next sweep
                    logger.warning("commit log: retention sweep failed: %s", exc)
