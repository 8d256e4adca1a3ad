"""stateroom's pytest plugin (``stateroom.pytest_plugin``), used the way a project uses it.

These tests take its fixtures from the installed ``pytest11`` entry point, as any project
with stateroom installed does; the ``pytester`` ones run user-style test files in a
separate pytest process, which proves the entry point and the per-test isolation.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from stateroom.api.state import DurableObjectState
from stateroom.pytest_plugin import ServedApp
from stateroom.runtime.options import RuntimeOptions
from stateroom.storage.backend import StorageBackend
from stateroom.storage.sqlite import SqliteBackend
from stateroom.testing import (
    TestClient,
    VirtualTimeLoop,
    list_object_ids,
    run_alarm,
    run_in_durable_object,
)
from support import ROOT

pytest_plugins = ["pytester"]

ECHO = "examples/websocket-server"
HIBERNATION = "examples/websocket-hibernation"
STORAGE = "tests/apps/storage"
KITCHEN = "tests/apps/kitchen"


@pytest.mark.stateroom_app(ECHO)
async def test_in_process_websocket(stateroom_app: TestClient) -> None:
    ws = await stateroom_app.websocket("/websocket")
    ws.send("hi")
    assert await ws.receive() == "[Durable Object]: hi"
    response = await stateroom_app.fetch("/getCurrentConnections")
    assert "1 WebSocket client" in await response.text()


@pytest.mark.stateroom_app(ECHO)
async def test_server_on_a_free_port(stateroom_server: ServedApp) -> None:
    assert stateroom_server.port != 0
    async with websockets.connect(stateroom_server.ws_url + "/websocket") as ws:
        await ws.send("over a socket")
        assert await ws.recv() == "[Durable Object]: over a socket"

        def get() -> str:
            with urllib.request.urlopen(stateroom_server.url + "/getCurrentConnections") as r:
                return str(r.read().decode())

        # A blocking client runs in a thread: the server is on the test's loop.
        assert "1 WebSocket client" in await asyncio.to_thread(get)
        # The server and the in-process client share one runtime.
        stub = stateroom_server.client.env.WEBSOCKET_SERVER.getByName("foo")
        count = await run_in_durable_object(stub, lambda obj, _: obj.currentlyConnectedWebSockets)
        assert count == 1


@pytest.mark.stateroom_app(KITCHEN)
async def test_run_in_durable_object(stateroom_app: TestClient) -> None:
    stub = stateroom_app.env.COUNTER.getByName("c")
    assert await stub.increment(5) == 5

    def read(instance: Any, state: DurableObjectState) -> int:
        assert state.id.equals(stub.id)
        return int(instance.value)

    assert await run_in_durable_object(stub, read) == 5

    async def bump(instance: Any, state: DurableObjectState) -> str:
        instance.value += 1
        await asyncio.sleep(0)
        return "bumped"

    assert await run_in_durable_object(stub, bump) == "bumped"
    assert await stub.increment() == 7  # the same live instance

    def boom(instance: Any, state: DurableObjectState) -> None:
        raise LookupError("from inside")

    with pytest.raises(LookupError, match="from inside"):
        await run_in_durable_object(stub, boom)


@pytest.mark.stateroom_app(KITCHEN)
async def test_run_in_durable_object_takes_its_turn(
    stateroom_app: TestClient, stateroom_clock: VirtualTimeLoop
) -> None:
    # /block holds the object's input gate for 0.5 s (blockConcurrencyWhile): an event
    # run in the object waits for it, and the virtual clock ends it without waiting.
    stub = stateroom_app.env.COUNTER.getByName("b")
    blocked = asyncio.ensure_future(stateroom_app.fetch("/counter/b/block"))
    await stateroom_clock.settle()
    inside = asyncio.ensure_future(run_in_durable_object(stub, lambda obj, state: "ran"))
    await stateroom_clock.settle()
    assert not blocked.done() and not inside.done()
    await stateroom_clock.advance(0.5)
    assert await (await blocked).text() == "unblocked"
    assert await inside == "ran"


@pytest.mark.stateroom_app(KITCHEN)
async def test_run_in_durable_object_after_a_reset(
    stateroom_app: TestClient, stateroom_clock: VirtualTimeLoop
) -> None:
    # The object is reset while the event waits for its turn: the next instance runs it.
    stub = stateroom_app.env.COUNTER.getByName("r")
    blocked = asyncio.ensure_future(stateroom_app.fetch("/counter/r/block"))
    await stateroom_clock.settle()
    inside = asyncio.ensure_future(
        run_in_durable_object(stub, lambda obj, state: (obj.generation, state.id.hex))
    )
    await stateroom_clock.settle()
    assert stateroom_app.worker is not None
    host = stateroom_app.worker.namespaces["COUNTER"].hosts[stub.id.hex]
    assert host.instance is not None
    first = host.instance.generation
    host.reset("reset by the test")
    await stateroom_clock.advance(1)
    generation, hex_id = await inside
    assert generation != first and hex_id == stub.id.hex
    blocked.cancel()


@pytest.mark.stateroom_app(STORAGE)
async def test_run_alarm(stateroom_app: TestClient) -> None:
    stub = stateroom_app.env.STORE.getByName("main")
    assert await run_alarm(stub) is False  # none set
    assert await (await stateroom_app.fetch("/s/alarm-set?ms=3600000")).text() == "set"
    assert await run_alarm(stub) is True
    log = json.loads(await (await stateroom_app.fetch("/s/alarm-log")).text())
    assert [(entry["retry"], entry["isRetry"]) for entry in log] == [(0, False)]
    assert json.loads(await (await stateroom_app.fetch("/s/alarm-get")).text()) is None
    assert await run_alarm(stub) is False  # it ran: deleted


@pytest.mark.stateroom_app(STORAGE)
async def test_run_alarm_that_raises(stateroom_app: TestClient) -> None:
    stub = stateroom_app.env.STORE.getByName("main")
    await stateroom_app.fetch("/s/alarm-set?ms=3600000&fail=1")
    with pytest.raises(RuntimeError, match="alarm failed on purpose"):
        await run_alarm(stub)
    # Still set; the next run succeeds and clears it.
    assert json.loads(await (await stateroom_app.fetch("/s/alarm-get")).text()) is not None
    assert await run_alarm(stub) is True
    assert await run_alarm(stub) is False


@pytest.mark.stateroom_app(STORAGE)
async def test_list_object_ids(stateroom_app: TestClient) -> None:
    ns = stateroom_app.env.STORE
    assert list_object_ids(ns) == []
    for name in ("a", "b"):
        await stateroom_app.fetch(f"/s/put?k=x&v=1&obj={name}")
    await stateroom_app.fetch("/legacy/put?k=x&v=1&obj=c")
    ids = list_object_ids(ns)
    assert sorted(i.hex for i in ids) == sorted(ns.idFromName(n).hex for n in ("a", "b"))
    assert [i.hex for i in list_object_ids(stateroom_app.env.LEGACY)] == [
        stateroom_app.env.LEGACY.idFromName("c").hex
    ]


@pytest.mark.stateroom_app(STORAGE)
async def test_alarm_fires_when_the_clock_moves(
    stateroom_app: TestClient, stateroom_clock: VirtualTimeLoop
) -> None:
    await stateroom_app.fetch("/s/alarm-set?ms=60000")
    await stateroom_clock.advance(59)
    assert json.loads(await (await stateroom_app.fetch("/s/alarm-log")).text()) == []
    await stateroom_clock.advance(2)
    log = json.loads(await (await stateroom_app.fetch("/s/alarm-log")).text())
    assert [entry["retry"] for entry in log] == [0]


async def test_the_clock_alone(stateroom_clock: VirtualTimeLoop) -> None:
    # A timer the test just started counts from the present, then fires when due.
    sleeper = asyncio.ensure_future(asyncio.sleep(100))
    await stateroom_clock.advance(99)
    assert not sleeper.done()
    await stateroom_clock.advance(1)
    assert sleeper.done()
    with pytest.raises(ValueError):
        await stateroom_clock.advance(-1)


@pytest.fixture
def stateroom_options() -> RuntimeOptions:
    return RuntimeOptions(hibernation_timeout=30.0, idle_timeout=30.0)


@pytest.mark.stateroom_app(HIBERNATION)
async def test_hibernation_when_the_clock_moves(
    stateroom_app: TestClient, stateroom_clock: VirtualTimeLoop
) -> None:
    ws = await stateroom_app.websocket("/websocket")
    ws.send("before")
    assert await ws.receive() == "[Durable Object]: before"
    stub = stateroom_app.env.WEBSOCKET_HIBERNATION_SERVER.getByName("foo")
    assert stateroom_app.worker is not None
    host = stateroom_app.worker.namespaces["WEBSOCKET_HIBERNATION_SERVER"].hosts[stub.id.hex]
    await stateroom_clock.advance(29)
    assert host.instance is not None  # the override's 30 s have not passed
    await stateroom_clock.advance(2)
    assert host.instance is None  # hibernated, its socket still open
    ws.send("after")
    assert await ws.receive() == "[Durable Object]: after"
    assert host.instance is not None  # woken by the message


class TestOnFiles:
    """``stateroom_backend`` overridden: SQLite files in the test's temporary folder."""

    @pytest.fixture
    def stateroom_backend(self, tmp_path: Path) -> Iterator[StorageBackend]:
        backend = SqliteBackend(tmp_path / "data")
        yield backend
        backend.close()

    @pytest.mark.stateroom_app(STORAGE)
    async def test_files(self, stateroom_app: TestClient, tmp_path: Path) -> None:
        await stateroom_app.fetch("/s/put?k=x&v=1&obj=on-disk")
        hex_id = stateroom_app.env.STORE.idFromName("on-disk").hex
        assert (tmp_path / "data" / "Store" / f"{hex_id}.sqlite3").is_file()
        assert [i.hex for i in list_object_ids(stateroom_app.env.STORE)] == [hex_id]


# -- through pytest itself: the entry point, isolation, configuration, refusals -----------

USER_TESTS = """
import pytest
from stateroom.testing import list_object_ids, run_in_durable_object

async def test_writes(stateroom_app, stateroom_clock):
    await stateroom_app.fetch("/s/put?k=x&v=1&obj=first")
    ws = await stateroom_app.websocket("/s/ws?obj=sockets")
    ws.send("m")
    assert await ws.receive() == "m:1"
    assert len(list_object_ids(stateroom_app.env.STORE)) == 2
    await stateroom_clock.advance(11)  # the test ends with its object hibernated
    host = stateroom_app.worker.namespaces["STORE"].hosts[
        stateroom_app.env.STORE.idFromName("sockets").hex
    ]
    assert host.instance is None and host.hibernation.sockets

async def test_starts_empty(stateroom_app):
    # The previous test's objects, their data and their sockets are gone.
    assert list_object_ids(stateroom_app.env.STORE) == []
    ws = await stateroom_app.websocket("/s/ws?obj=sockets")
    ws.send("m")
    assert await ws.receive() == "m:1"

def test_sync_is_refused(stateroom_app):
    pass
"""


def test_user_tests_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nstateroom_app = {ROOT / STORAGE}\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*stateroom_app need an `async def` test*"])


def test_marker_relative_to_the_test_file(pytester: pytest.Pytester) -> None:
    app = pytester.mkdir("app")
    for name in ("worker.py", "wrangler.toml"):
        (app / name).write_text((ROOT / ECHO / name).read_text())
    pytester.makepyfile(
        test_marker="""
import pytest

@pytest.mark.stateroom_app("app")
async def test_echo(stateroom_app):
    ws = await stateroom_app.websocket("/websocket")
    ws.send("x")
    assert await ws.receive() == "[Durable Object]: x"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_no_app_configured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_none="async def test_it(stateroom_app):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*stateroom: which application?*"])


def test_the_plugin_is_registered(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("stateroom")
    assert plugin is not None
    assert Path(plugin.__file__).name == "pytest_plugin.py"


def test_the_example_test_file(pytester: pytest.Pytester) -> None:
    """examples/websocket-hibernation/test_worker.py, as its README section runs it."""
    example = ROOT / HIBERNATION / "test_worker.py"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(example))
    result.assert_outcomes(passed=3)


def test_the_readme_example(pytester: pytest.Pytester) -> None:
    """The example of README's "Testing with pytest", run from the repository's root."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing with pytest", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"tests/apps/storage"', repr(str(ROOT / STORAGE)))
    pytester.makepyfile(test_readme=code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
