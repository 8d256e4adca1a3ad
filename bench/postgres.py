"""PostgreSQL commit log benchmark (issue 20): acknowledged appends per second.

    .venv/bin/python -m bench.postgres                    # a throw-away server, ~30 s
    .venv/bin/python -m bench.postgres --dsn postgresql://user@host/db --duration 5

Writers (32 by default, each with one record in flight) append records of one 4 KiB
page (a small SQLite commit) to 1, 10 and 100 objects, and count the records
acknowledged per second:

- **group commit**: ``PostgresCommitLog``: one statement (one transaction) per batch
  of whatever was queued while the previous batch was in flight;
- **one commit each**: plain asyncpg, every record its own ``INSERT`` in its own
  transaction, writers spread over a pool of 16 connections (PostgreSQL still
  shares WAL flushes between concurrent commits).

Without ``--dsn`` it starts the test suite's throw-away server (``tests/postgres.py``:
``fsync=on``, ``synchronous_commit=on``) and stops it at the end. Prints a Markdown
table for ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stateroom.storage.log import LogRecord, Pending
from stateroom.storage.postgres_log import PostgresCommitLog

logger = logging.getLogger("bench.postgres")

PAGE = 4096
OBJECT_COUNTS = (1, 10, 100)
NS = "bench"


def _frames(n: int) -> bytes:
    header = struct.pack(">IIII", 1, 1, 1, 2) + bytes(8)
    return header + n.to_bytes(8, "big") * (PAGE // 8)


async def _acked(pending: Pending) -> bool:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    pending.add_callback(lambda error: future.done() or future.set_result(error is None))
    return await future


async def group_commit(dsn: str, objects: int, writers: int, duration: float) -> dict[str, Any]:
    """Acknowledged appends/s through ``PostgresCommitLog``."""
    log = PostgresCommitLog(dsn, snapshot_records=1 << 30)  # no compaction while measuring
    await log.start()
    try:
        names = [f"g{objects}-{i}" for i in range(objects)]
        epochs = {name: await log.acquire(NS, name) for name in names}
        stop = time.monotonic() + duration
        counts = [0] * writers

        async def writer(w: int) -> None:
            n = 0
            while time.monotonic() < stop:
                name = names[(w + n * writers) % objects]
                record = LogRecord(NS, name, epochs[name], PAGE, _frames(n))
                if await _acked(log.append(record)):
                    counts[w] += 1
                n += 1

        batches = log.batches
        started = time.monotonic()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.monotonic() - started
        batches = log.batches - batches
    finally:
        await log.aclose()
    acked = sum(counts)
    return {
        "acked_per_s": acked / elapsed,
        "records_per_transaction": acked / max(batches, 1),
    }


async def one_commit_each(
    dsn: str, objects: int, writers: int, duration: float, connections: int = 16
) -> dict[str, Any]:
    """Acknowledged inserts/s, one transaction per record, plain asyncpg."""
    import asyncpg

    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(
            "CREATE TABLE IF NOT EXISTS bench_plain (object_id text, seq bigint, frames bytea)"
        )
        await setup.execute("TRUNCATE bench_plain")
        with contextlib.suppress(asyncpg.PostgresError):  # as the commit log's own table
            await setup.execute("ALTER TABLE bench_plain ALTER COLUMN frames SET COMPRESSION lz4")
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    try:
        stop = time.monotonic() + duration
        counts = [0] * writers

        async def writer(w: int) -> None:
            n = 0
            while time.monotonic() < stop:
                name = f"p{objects}-{(w + n * writers) % objects}"
                await pool.execute(
                    "INSERT INTO bench_plain VALUES ($1, $2, $3)", name, n, _frames(n)
                )
                counts[w] += 1
                n += 1

        started = time.monotonic()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    return {"acked_per_s": sum(counts) / elapsed, "records_per_transaction": 1.0}


async def run(dsn: str, duration: float, writers: int) -> list[dict[str, Any]]:
    """One row per object count: both ways, side by side."""
    rows = []
    for objects in OBJECT_COUNTS:
        group = await group_commit(dsn, objects, writers, duration)
        plain = await one_commit_each(dsn, objects, writers, duration)
        rows.append({"objects": objects, "group": group, "plain": plain})
        logger.info("%d objects: group %s, plain %s", objects, group, plain)
    return rows


def table(rows: list[dict[str, Any]], writers: int) -> str:
    lines = [
        f"| objects ({writers} writers) | group commit: acked appends/s | records per "
        "transaction | plain asyncpg, one commit each: acked inserts/s | ratio |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        group, plain = row["group"]["acked_per_s"], row["plain"]["acked_per_s"]
        lines.append(
            f"| {row['objects']} | {group:,.0f} | {row['group']['records_per_transaction']:.1f} "
            f"| {plain:,.0f} | {group / plain:.1f}x |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _throwaway_server() -> Iterator[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from postgres import PostgresServer, new_database

    with PostgresServer() as server:
        yield new_database(server)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="an existing database (default: a throw-away server)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--writers", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.ExitStack() as stack:
        dsn = args.dsn or stack.enter_context(_throwaway_server())
        rows = asyncio.run(run(dsn, args.duration, args.writers))
    load = os.getloadavg()[0]
    sys.stdout.write(f"{table(rows, args.writers)}\n\nload average at the end: {load:.2f}\n")


if __name__ == "__main__":
    main()
