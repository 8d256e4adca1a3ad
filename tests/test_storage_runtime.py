"""Storage, gates and alarms through the real server: what an application observes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from support import RunningServer, fetch, kill9_while_putting, serve, wait_until

APP = "tests/apps/storage"


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve(
        APP, "--alarm-retry-delay", "0.05", "--idle-timeout", "0.3", "--log-level", "debug"
    ) as server:
        yield server


def test_kv_and_sql(srv: RunningServer) -> None:
    assert fetch(srv, "/store/put?obj=kv&k=b&v=2") == (200, "ok")
    assert fetch(srv, "/store/put?obj=kv&k=a&v=1") == (200, "ok")
    assert fetch(srv, "/store/get?obj=kv&k=a") == (200, '"1"')
    assert fetch(srv, "/store/keys?obj=kv") == (200, '["a", "b"]')
    assert json.loads(fetch(srv, "/store/sql?obj=kv&name=x")[1]) == [{"id": 1, "name": "x"}]
    assert json.loads(fetch(srv, "/store/sql?obj=kv&name=y")[1])[-1] == {"id": 2, "name": "y"}


def test_sql_refused_for_key_value_classes(srv: RunningServer) -> None:
    status, body = fetch(srv, "/legacy/x")
    assert status == 200 and body.startswith("SQL is not enabled for Legacy")


def test_storage_survives_eviction(srv: RunningServer) -> None:
    fetch(srv, "/store/put?obj=evicted&k=kept&v=yes")
    srv.wait_for_log(r"Evicting idle object", timeout=10)
    wait_until(lambda: fetch(srv, "/store/get?obj=evicted&k=kept") == (200, '"yes"'))


@pytest.mark.parametrize("kind", ["txn-incr", "block-incr"])
def test_input_gate_serialises_read_modify_write(srv: RunningServer, kind: str) -> None:
    # Each request reads n, really suspends (asyncio.sleep), then writes n + 1. Without the
    # input gate the 20 requests interleave and updates are lost.
    obj = f"gate-{kind}"
    results: list[str] = []

    def one() -> None:
        results.append(fetch(srv, f"/store/{kind}?obj={obj}")[1])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(int(r) for r in results) == list(range(1, 21))
    assert fetch(srv, f"/store/get?obj={obj}&k=n") == (200, "20")


def test_constructor_block_concurrency_while_runs_before_the_first_event(
    srv: RunningServer,
) -> None:
    object_id = fetch(srv, "/store/id?obj=loader")[1]
    assert fetch(srv, "/store/incr?obj=loader") == (200, "1")
    srv.wait_for_log(rf"Evicting idle object {object_id}")
    # The next request constructs the object; its constructor's blockConcurrencyWhile()
    # loads "n" (after a real suspension) before this request is let in.
    assert fetch(srv, "/store/loaded?obj=loader") == (200, "1")


def test_failed_commit_discards_the_response_and_resets(srv: RunningServer) -> None:
    status, body = fetch(srv, "/store/badcommit?obj=bad")
    assert status == 500 and "released before commit" not in body
    # The write that shared the failed transaction is gone too, and the object works again.
    assert fetch(srv, "/store/get?obj=bad&k=before-bad-commit") == (200, "null")
    assert fetch(srv, "/store/put?obj=bad&k=after&v=1") == (200, "ok")


def test_failed_commit_discards_websocket_messages(srv: RunningServer) -> None:
    async def run() -> None:
        async with websockets.connect(f"{srv.ws_url}/store/ws?obj=wsgate") as ws:
            await ws.send("a")
            assert await asyncio.wait_for(ws.recv(), 10) == "a:1"
            resets = srv.output().count("Resetting Durable Object")
            await ws.send("bad")  # its write fails at COMMIT: its reply must never leave
            # (A message handled before that commit would see its uncommitted write and
            # have its reply discarded too, as on Cloudflare; so wait for the reset.)
            await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: wait_until(lambda: srv.output().count("Resetting Durable Object") > resets),
            )
            await ws.send("b")
            assert await asyncio.wait_for(ws.recv(), 10) == "b:2"  # "bad" was rolled back

    asyncio.run(run())


def test_alarm_fires(srv: RunningServer) -> None:
    assert fetch(srv, "/store/alarm-set?obj=al&ms=50") == (200, "set")
    wait_until(lambda: json.loads(fetch(srv, "/store/alarm-log?obj=al")[1]) != [])
    # Inside alarm(), getAlarm() is null: the running alarm no longer counts as set.
    assert json.loads(fetch(srv, "/store/alarm-log?obj=al")[1]) == [
        {"retry": 0, "isRetry": False, "get": None}
    ]
    wait_until(lambda: fetch(srv, "/store/alarm-get?obj=al") == (200, "null"))


def test_alarm_set_from_inside_alarm_is_seen_and_fires(srv: RunningServer) -> None:
    assert fetch(srv, "/store/alarm-set?obj=again&ms=10&again=50") == (200, "set")
    wait_until(lambda: len(json.loads(fetch(srv, "/store/alarm-log?obj=again")[1])) == 2)
    assert json.loads(fetch(srv, "/store/alarm-log?obj=again")[1]) == [
        {"retry": 0, "isRetry": False, "get": None, "getAfterSet": True},
        {"retry": 0, "isRetry": False, "get": None},
    ]
    wait_until(lambda: fetch(srv, "/store/alarm-get?obj=again") == (200, "null"))


def test_alarm_wakes_an_evicted_object(srv: RunningServer) -> None:
    object_id = fetch(srv, "/store/id?obj=sleeper")[1]
    assert fetch(srv, "/store/alarm-set?obj=sleeper&ms=1500") == (200, "set")
    srv.wait_for_log(rf"Evicting idle object {object_id}")  # gone from memory first
    wait_until(lambda: json.loads(fetch(srv, "/store/alarm-log?obj=sleeper")[1]) != [])


def test_alarm_retries_with_backoff(srv: RunningServer) -> None:
    assert fetch(srv, "/store/alarm-set?obj=retry&ms=10&fail=2") == (200, "set")
    wait_until(lambda: len(json.loads(fetch(srv, "/store/alarm-log?obj=retry")[1])) == 3)
    log = json.loads(fetch(srv, "/store/alarm-log?obj=retry")[1])
    assert log == [
        {"retry": 0, "isRetry": False, "get": None},
        {"retry": 1, "isRetry": True, "get": None},
        {"retry": 2, "isRetry": True, "get": None},
    ]
    wait_until(lambda: fetch(srv, "/store/alarm-get?obj=retry") == (200, "null"))


def test_alarm_survives_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with serve(APP, "--persist-to", data) as first:
        assert fetch(first, "/store/alarm-set?obj=restart&ms=700") == (200, "set")
        os.kill(first.pid, signal.SIGKILL)  # no chance to fire, no clean shutdown
        first.proc.wait()
    with serve(APP, "--persist-to", data) as second:
        wait_until(lambda: json.loads(fetch(second, "/store/alarm-log?obj=restart")[1]) != [])
        # The object was woken by its alarm, by id: its name came back from its storage.
        assert fetch(second, "/store/alarm-name?obj=restart") == (200, '"restart"')


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    """Kill the server with SIGKILL again and again under concurrent writes: every write
    whose response arrived must be there afterwards."""
    data = str(tmp_path / "data")
    acked: list[str] = []
    lock = threading.Lock()
    rounds = 4
    for round_no in range(rounds):
        with serve(APP, "--persist-to", data) as srv:
            kill9_while_putting(
                srv, ["durable"], f"r{round_no}", acked, lock, random.randint(20, 200)
            )
    with serve(APP, "--persist-to", data) as srv:
        stored = set(json.loads(fetch(srv, "/store/keys?obj=durable")[1]))
    missing = [k for k in acked if k not in stored]
    assert len(acked) > rounds * 20
    assert missing == []


@pytest.mark.parametrize("storage", ["--in-memory", "--persist-to"])
def test_alarm_survives_a_code_reload(tmp_path: Path, storage: str) -> None:
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).parent / "apps" / "storage", app)
    args = [storage] if storage == "--in-memory" else [storage, str(tmp_path / "data")]
    with serve(app, *args, command="dev") as srv:
        assert fetch(srv, "/store/alarm-set?obj=reload&ms=1500") == (200, "set")
        source = app / "worker.py"
        source.write_text(source.read_text() + "\n# edited\n")
        srv.wait_for_log(r"reloaded")
        wait_until(lambda: json.loads(fetch(srv, "/store/alarm-log?obj=reload")[1]) != [])


@pytest.mark.parametrize("store", ["local", "files"])
def test_a_damaged_file_fails_its_object_only(tmp_path: Path, store: str) -> None:
    """A database file overwritten on disk: that object's requests fail, the log says
    which file is damaged and what to do; every other object works."""
    data = tmp_path / "data"
    with serve(APP, "--persist-to", str(data), "--storage", store) as srv:
        assert fetch(srv, "/store/put?obj=good&k=x&v=1") == (200, "ok")
        assert fetch(srv, "/store/put?obj=bad&k=x&v=2") == (200, "ok")
        bad_id = fetch(srv, "/store/id?obj=bad")[1]
    with open(data / "Store" / f"{bad_id}.sqlite3", "r+b") as file:
        file.write(b"not sqlite" * 500)
    with serve(APP, "--persist-to", str(data), "--storage", store) as srv:
        assert fetch(srv, "/store/get?obj=bad&k=x")[0] == 500
        assert fetch(srv, "/store/get?obj=good&k=x") == (200, '"1"')
        srv.wait_for_log(rf"stored data of Store/{bad_id} is damaged .* move the file away")
