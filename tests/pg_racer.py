"""One of two processes racing for the same objects through ``PostgresCommitLog``.

    python tests/pg_racer.py DSN ME SECONDS OBJECTS

Keeps stealing (``acquire()``) objects ``r0`` … ``r{OBJECTS-1}`` at random and appending
records to the ones it believes it owns, 16 in flight at a time, until SECONDS pass;
a ``FencedError`` means another process stole the object: it stops writing there until
it steals it back. Each record's page starts with ``ME:n:epoch``. Prints one JSON line:
the tags acknowledged and the tags refused. ``tests/test_postgres_log.py`` audits them
against the database.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
import time

from stateroom.storage.log import FencedError, LogRecord, Pending
from stateroom.storage.postgres_log import PostgresCommitLog

PAGE = 512
NS = "ns"


def _frames(payload: bytes) -> bytes:
    return struct.pack(">IIII", 1, 1, 1, 2) + bytes(8) + payload.ljust(PAGE, b"\0")


async def _settled(pending: Pending) -> BaseException | None:
    future: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    pending.add_callback(lambda error: future.done() or future.set_result(error))
    return await future


async def race(dsn: str, me: int, seconds: float, count: int) -> dict[str, list[str]]:
    rng = random.Random(me)
    objects = [f"r{i}" for i in range(count)]
    log = PostgresCommitLog(dsn)
    await log.start()
    acked: list[str] = []
    refused: list[str] = []
    owned: dict[str, int] = {}
    inflight: list[tuple[str, str, int, Pending]] = []

    async def settle() -> None:
        for tag, oid, epoch, pending in inflight:
            error = await _settled(pending)
            if error is None:
                acked.append(tag)
                continue
            if not isinstance(error, FencedError):
                raise error
            refused.append(tag)
            if owned.get(oid) == epoch:
                del owned[oid]  # stolen: write there again only after stealing it back
        inflight.clear()

    try:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline and n < 5000:
            oid = rng.choice(objects)
            if oid not in owned or rng.random() < 0.05:
                owned[oid] = await log.acquire(NS, oid)
            epoch = owned[oid]
            tag = f"{me}:{n}:{epoch}"
            n += 1
            record = LogRecord(NS, oid, epoch, PAGE, _frames(tag.encode()))
            inflight.append((tag, oid, epoch, log.append(record)))
            if len(inflight) >= 16:
                await settle()
        await settle()
    finally:
        await log.aclose()
    return {"acked": acked, "refused": refused}


def main() -> None:
    dsn, me, seconds, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    result = asyncio.run(race(dsn, me, seconds, count))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
