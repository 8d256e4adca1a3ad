"""``stateroom serve --storage postgresql://…``: servers whose objects live in PostgreSQL.

A real PostgreSQL started by the suite (``tests/postgres.py``), real servers, real
clients. The audits: every acknowledged write is there after ``kill -9`` of the server
*and the loss of its local disk*; two servers racing for the same objects never both
have a write accepted in the same stretch (each accepted write is checked against the
database's record of which activation wrote it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from postgres import PostgresServer, new_database
from support import ROOT, fetch, keep_putting, kill9_while_putting, serve, wait_until

APP = ROOT / "tests" / "apps" / "storage"


def test_acknowledged_writes_survive_kill_9_and_a_wiped_disk(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """SIGKILL under concurrent writers, the local data folder deleted before every
    restart: what was acknowledged comes back from PostgreSQL."""
    dsn = new_database(postgres_server)
    data = tmp_path / "data"
    acked: list[str] = []
    lock = threading.Lock()
    rounds = 3
    for round_no in range(rounds):
        with serve(APP, "--persist-to", str(data), "--storage", dsn) as srv:
            kill9_while_putting(
                srv, ["o0", "o1"], f"r{round_no}", acked, lock, random.randint(20, 150)
            )
        shutil.rmtree(data)  # the machine's disk is gone: only PostgreSQL remains
    with serve(APP, "--persist-to", str(data), "--storage", dsn) as srv:
        stored: set[str] = set()
        for obj in ("o0", "o1"):
            stored |= set(json.loads(fetch(srv, f"/store/keys?obj={obj}")[1]))
    missing = [k for k in acked if k not in stored]
    assert len(acked) > rounds * 20
    assert missing == []


def test_two_servers_never_both_accept_writes_for_one_object(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Two servers on one database take the same objects from each other again and
    again (each activation steals the object's epoch). Every write either server
    acknowledged is in the database, and the accepted records of an object never
    interleave two activations: once a newer epoch has a record, no older one does."""
    dsn = new_database(postgres_server)
    acked: list[str] = []
    lock = threading.Lock()
    with (
        serve(APP, "--persist-to", str(tmp_path / "a"), "--storage", dsn) as a,
        serve(APP, "--persist-to", str(tmp_path / "b"), "--storage", dsn) as b,
    ):
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=keep_putting, args=(srv, f"race{w % 3}", f"{name}w{w}", acked, lock, stop)
            )
            for w, (name, srv) in enumerate([("a", a), ("b", b)] * 3)
        ]
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= 300, timeout=60)
        stop.set()
        for t in threads:
            t.join(10)
    rows = asyncio.run(_records(dsn))
    by_object: dict[str, list[int]] = {}
    for object_id, _seq, epoch in rows:
        by_object.setdefault(object_id, []).append(epoch)
    for object_id, epochs in by_object.items():
        # Records in commit order (seq): their epochs never go back.
        assert epochs == sorted(epochs), f"{object_id}: an older activation wrote after a newer"
    assert len({e for epochs in by_object.values() for e in epochs}) > 3  # they did race
    with serve(APP, "--persist-to", str(tmp_path / "c"), "--storage", dsn) as srv:
        stored: set[str] = set()
        for obj in ("race0", "race1", "race2"):
            stored |= set(json.loads(fetch(srv, f"/store/keys?obj={obj}")[1]))
    assert [k for k in acked if k not in stored] == []


async def _records(dsn: str) -> list[tuple[str, int, int]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT object_id, seq, epoch FROM stateroom_records ORDER BY object_id, seq"
        )
    finally:
        await conn.close()
    return [(r["object_id"], r["seq"], r["epoch"]) for r in rows]


def test_unreachable_database_at_start_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match=r"cannot use PostgreSQL at postgresql://nobody@") as err,
        serve(
            APP,
            "--persist-to",
            str(tmp_path / "data"),
            "--storage",
            "postgresql://nobody:secret@127.0.0.1:1/none",
        ),
    ):
        pass
    assert "secret" not in str(err.value)  # the password never reaches a log


def test_point_in_time_recovery(tmp_path: Path, postgres_server: PostgresServer) -> None:
    """Cloudflare's API: write, bookmark, write, restore, abort: the first value is back;
    the undo bookmark brings the second back; a bookmark for a past moment restores the
    state at that moment."""
    dsn = new_database(postgres_server)
    with serve(APP, "--persist-to", str(tmp_path / "data"), "--storage", dsn) as srv:
        assert fetch(srv, "/store/put?obj=p&k=v&v=first") == (200, "ok")
        status, first = fetch(srv, "/store/bookmark?obj=p")
        assert status == 200 and len(first) == 16
        time.sleep(0.05)  # a moment strictly between the two writes, by the database's clock
        between = int(time.time() * 1000)
        time.sleep(0.05)
        assert fetch(srv, "/store/put?obj=p&k=v&v=second") == (200, "ok")
        assert fetch(srv, "/store/put?obj=p&k=w&v=only-second") == (200, "ok")
        status, second = fetch(srv, "/store/bookmark?obj=p")
        assert status == 200 and second > first  # ordered as strings, like time

        assert fetch(srv, f"/store/restore?obj=p&b={first}")[0] == 500  # ctx.abort()
        undo = fetch(srv, "/store/undo?obj=p")[1]
        assert fetch(srv, "/store/get?obj=p&k=v") == (200, '"first"')
        assert fetch(srv, "/store/get?obj=p&k=w") == (200, "null")
        assert undo >= second

        assert fetch(srv, f"/store/restore?obj=p&b={undo}")[0] == 500
        assert fetch(srv, "/store/get?obj=p&k=v") == (200, '"second"')
        assert fetch(srv, "/store/get?obj=p&k=w") == (200, '"only-second"')

        status, then = fetch(srv, f"/store/bookmark?obj=p&ms={between}")
        assert status == 200, then
        assert fetch(srv, f"/store/restore?obj=p&b={then}")[0] == 500
        assert fetch(srv, "/store/get?obj=p&k=v") == (200, '"first"')
        # A write after a restore builds on the restored state, and survives a restart.
        assert fetch(srv, "/store/put?obj=p&k=after&v=restore") == (200, "ok")
    with serve(APP, "--persist-to", str(tmp_path / "other"), "--storage", dsn) as srv:
        assert fetch(srv, "/store/get?obj=p&k=v") == (200, '"first"')
        assert fetch(srv, "/store/get?obj=p&k=after") == (200, '"restore"')


def test_bookmarks_on_the_local_store_say_what_to_do(tmp_path: Path) -> None:
    with serve(APP, "--persist-to", str(tmp_path / "data")) as srv:
        status, body = fetch(srv, "/store/bookmark?obj=p")
    assert status == 500 and "--storage postgresql://" in body


def test_losing_the_database_fails_writes_retryably_and_recovers(tmp_path: Path) -> None:
    """PostgreSQL killed mid-run: writes fail (the error is retryable, nothing that
    depended on them leaves), reads of live objects keep working, and once the database
    is back, writes work again by themselves; every acknowledged write is there."""
    with PostgresServer() as pg:  # its own server: this test kills it
        dsn = new_database(pg)
        with serve(APP, "--persist-to", str(tmp_path / "data"), "--storage", dsn) as srv:
            assert fetch(srv, "/store/put?obj=f&k=before&v=1") == (200, "ok")
            assert fetch(srv, "/store/put?obj=live&k=x&v=kept") == (200, "ok")
            pg.kill9()
            status, _body = fetch(srv, "/store/put?obj=f&k=during&v=2")
            assert status == 500
            srv.wait_for_log(r"PostgreSQL at .* is unavailable|LogUnavailableError")
            # A live object that only reads keeps answering from its own copy...
            assert fetch(srv, "/store/get?obj=live&k=x") == (200, '"kept"')
            # ...an object that must first be activated waits for the database: an error.
            assert fetch(srv, "/store/get?obj=g&k=x")[0] == 500
            pg.restart()
            acked = []
            for i in range(100):  # bounded: the log reconnects with backoff
                status, _ = fetch(srv, f"/store/put?obj=f&k=after{i}&v={i}")
                if status == 200:
                    acked.append(f"after{i}")
                    break
                time.sleep(0.1)
            assert acked, "writes did not recover after the database came back"
            keys = set(json.loads(fetch(srv, "/store/keys?obj=f")[1]))
            assert "before" in keys and acked[0] in keys


def test_alarms_survive_a_restart_on_another_disk(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """An alarm set on the PostgreSQL store fires after kill -9 and a wiped data folder
    (the restarted server finds it in the database, not in files), with ctx.id.name."""
    dsn = new_database(postgres_server)
    data = tmp_path / "data"
    with serve(APP, "--persist-to", str(data), "--storage", dsn) as srv:
        assert fetch(srv, "/store/alarm-set?obj=wake&ms=1500") == (200, "set")
        assert fetch(srv, "/store/alarm-set?obj=second&ms=1500") == (200, "set")
        assert fetch(srv, "/store/alarm-get?obj=second")[0] == 200
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait()
    shutil.rmtree(data)
    with serve(APP, "--persist-to", str(data), "--storage", dsn) as srv:
        srv.wait_for_log(r"re-armed 2 alarms of Store")
        wait_until(lambda: json.loads(fetch(srv, "/store/alarm-log?obj=wake")[1]) != [])
        assert fetch(srv, "/store/alarm-name?obj=wake") == (200, '"wake"')
        wait_until(lambda: json.loads(fetch(srv, "/store/alarm-log?obj=second")[1]) != [])
